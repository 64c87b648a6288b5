"""Workload kinds: one scenario class each, looked up by the workload file's `kind`."""

from __future__ import annotations

from bench.scenarios.base import CaseResult, Loaded, Scenario
from bench.scenarios.capacity import CapacityScenario
from bench.scenarios.generate import GenerateScenario
from bench.scenarios.long_context import LongContextScenario
from bench.scenarios.micro import MatmulScenario, MembwScenario
from bench.scenarios.prefix_reuse import PrefixReuseScenario
from bench.spec.workload import KINDS, Workload

SCENARIOS: dict[str, type[Scenario]] = {
    cls.kind: cls
    for cls in (GenerateScenario, CapacityScenario, LongContextScenario, PrefixReuseScenario, MembwScenario, MatmulScenario)
}
assert set(SCENARIOS) == set(KINDS), "every workload kind needs a scenario"


def scenario_for(workload: Workload) -> Scenario:
    """A fresh scenario (with empty cross-case state) for the workload's kind."""
    return SCENARIOS[workload.kind](workload)


__all__ = ["SCENARIOS", "CaseResult", "Loaded", "Scenario", "scenario_for"]
