"""Suites: a workload file that lists other workloads, run one after another into one results root.

`bench run --workload claims` is the bundled suite: every workload some claim needs, the
device's ceilings first, sized for the device present. Each step names a workload and may
add keys for every device ([step.params]), for a CPU ([step.cpu]), for a GPU ([step.gpu])
and for --quick ([step.quick]); `devices` limits a step to some device types, `requires` to machines
where an optional package is installed (a vllm step runs where vLLM is, and is said skipped elsewhere). The keys
apply in that order on top of the workload's own [gpu] / [quick] tables, and the user's
--set values last, so users can write their own suites the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import BadInput
from bench.spec.workload import read_workload_file, validate_params

SUITE_KEYS = {"name", "description", "kind", "step"}
STEP_KEYS = {"workload", "params", "cpu", "gpu", "quick", "devices", "requires"}


@dataclass(frozen=True)
class Step:
    """One workload of a suite and the keys the suite adds to it."""

    workload: str
    params: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ()  # device types it runs on (empty: every one)
    requires: str = ""  # a module that must be importable for the step to run (an optional extra: vllm)

    def overrides(self, on_gpu: bool, quick: bool) -> dict[str, Any]:
        """The suite's keys for this step on this device."""
        keys = dict(self.params)
        keys.update(self.gpu if on_gpu else self.cpu)
        if quick:
            keys.update(self.quick)
        return keys

    def runs_on(self, device_type: str) -> bool:
        return not self.devices or device_type in self.devices

    def missing(self) -> str:
        """Why the step cannot run on this machine ('' when it can): its required package is not installed."""
        import importlib.util

        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"{self.requires} is not installed"
        return ""


@dataclass(frozen=True)
class Suite:
    """A named list of steps."""

    name: str
    description: str
    steps: tuple[Step, ...]
    source: str


def load_suite(name_or_path: str) -> Suite | None:
    """The suite a workload name or file stands for, or None when it is a plain workload."""
    path, data = read_workload_file(name_or_path)
    if data.get("kind") != "suite":
        return None
    unknown = set(data) - SUITE_KEYS
    if unknown:
        raise BadInput(f"{path}: unknown key(s) in a suite: {', '.join(sorted(unknown))} "
                       f"(allowed: {', '.join(sorted(SUITE_KEYS))})")
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise BadInput(f"{path}: a suite needs at least one [[step]] with a workload")
    steps = [_step(raw, f"{path} step {i + 1}") for i, raw in enumerate(raw_steps)]
    return Suite(str(data.get("name", path.stem)), str(data.get("description", "")), tuple(steps), str(path))


def _step(raw: Any, where: str) -> Step:
    if not isinstance(raw, dict):
        raise BadInput(f"{where}: must be a table")
    unknown = set(raw) - STEP_KEYS
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(STEP_KEYS))})")
    workload = raw.get("workload")
    if not isinstance(workload, str) or not workload:
        raise BadInput(f"{where}: workload must name a workload")
    devices = raw.get("devices", [])
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise BadInput(f"{where}: devices must be a list of device types (cpu, cuda, ...)")
    requires = raw.get("requires", "")
    if not isinstance(requires, str) or not all(part.isidentifier() for part in requires.split(".") if requires):
        raise BadInput(f"{where}: requires must name a Python module (vllm)")
    tables = {k: validate_params(raw.get(k, {}), f"{where} [{k}]") for k in ("params", "cpu", "gpu", "quick")}
    return Step(workload, devices=tuple(devices), requires=requires, **tables)
