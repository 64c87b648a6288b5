"""Workload kinds: one scenario class each (bench.core.plugins names them), looked up by the workload's `kind`."""

from __future__ import annotations

from bench.core.plugins import scenario_class
from bench.scenarios.base import CaseResult, Loaded, Scenario
from bench.spec.workload import Workload


def scenario_for(workload: Workload) -> Scenario:
    """A fresh scenario (with empty cross-case state) for the workload's kind."""
    return scenario_class(workload.kind)(workload)


__all__ = ["CaseResult", "Loaded", "Scenario", "scenario_for"]
