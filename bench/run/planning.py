"""From what was asked to what will run: a workload with its overrides applied and its cases checked (a plan),
the plans of a suite's steps, and running a suite into one results root. The CLI and the pytest plugin
both plan here, so bad input fails the same way, before any work starts, whoever asked."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import BadInput
from bench.core.noise import own_cores
from bench.engines import engine_names
from bench.engines.quant import check_available
from bench.engines.transformers_engine import resolve_path
from bench.hardware.devices import resolve_device
from bench.scenarios import scenario_for
from bench.spec.models import resolve_model
from bench.spec.workload import Case, Workload, apply_overrides, coerce, did_you_mean, load_workload


@dataclass
class Plan:
    """A workload ready to run: every override applied, its cases expanded and checked, on this device."""

    workload: Workload
    cases: list[Case]
    device: Any
    plan_keys: tuple[str, ...] | None = None  # the parameters a plan table names (None: every one)

    def compilations(self) -> int:
        """How many shapes the captured decode path will compile (one per model, dtype, weights, batch, total
        length and torch thread count, which torch.compile's guards hold too; a case repeating all of these
        reuses its graph)."""
        return len({(c["model"], c["dtype"], c["quant"], c["batch_size"], c["input_len"] + c["output_len"],
                     c["threads"])
                    for c in self.cases if c.params.get("engine") == "transformers" and "decode" in c.params
                    and resolve_path(c["decode"], c["compile"], self.device) == "captured"})

    def title(self) -> str:
        """The plan's heading: its cases, the device, and what compiling will cost."""
        n = self.compilations()
        said = f"; captured decode: {n} compilation(s), each in a warm-up, never timed" if n else ""
        return f"{self.workload.name}: {len(self.cases)} case(s) on {self.device} ({self.device.name}){said}"


def plan(workload: Workload, overrides: dict[str, Any], quick: bool, device: Any) -> Plan:
    """The workload with every override applied and its cases, each checked: bad input fails here,
    before any work starts."""
    for quant in overrides.get("quant", []):  # asked for on the command line: must be possible
        check_available(quant)
    workload = apply_overrides(workload, overrides, quick=quick, on_gpu=device.type == "cuda")
    p = workload.params
    _check_threads(p["threads"])
    models = {m: resolve_model(m, p["allow_download"], p["trust_remote_code"])  # bad names fail before any work
              for m in p["model"]}
    for spec in models.values():
        _ = spec.shape  # reads and checks config.json: a broken one is bad input, not a skipped row
    for engine in p["engine"]:
        if engine not in engine_names():
            raise BadInput(f"unknown engine '{engine[:80]}'" + (did_you_mean(engine, engine_names()) or
                                                                 f" (known: {', '.join(engine_names())})"))
    scenario = scenario_for(workload)
    cases = scenario.expand(lambda m: models[m].shape.max_position)
    if not cases:
        raise BadInput(f"workload '{workload.name}' expands to no cases")
    for case in cases:
        scenario.check(case)
    return Plan(workload, cases, device, scenario.plan_keys)


def _check_threads(asked: list[int]) -> None:
    """More torch threads than the cores this process may use share cores: the figure would measure the
    scheduler (threads=4096 on 2 cores ran at 0.3 tok/s and drove the load average to 70). Refused."""
    cores = own_cores()
    over = [t for t in asked if t > cores]
    if over:
        raise BadInput(f"threads={max(over)}: more than the {cores} core(s) this process may use (threads would "
                       f"share cores and the figure would measure the scheduler); at most threads={cores}, or 0 "
                       "for all of them")


def one_case(workload_name: str, overrides: dict[str, Any]) -> tuple[Any, Case, Any]:
    """(scenario, case, device) for a caller that runs exactly one case (the pytest plugin)."""
    loaded = load_workload(workload_name)
    overrides = {k: coerce(k, v, "claimbench_case") for k, v in overrides.items()}
    device = resolve_device(str(overrides.get("device", loaded.params["device"])))
    planned = plan(loaded, overrides, False, device)
    if len(planned.cases) != 1:
        raise BadInput(f"claimbench_case needs exactly one case; {workload_name} with {overrides} gives "
                       f"{len(planned.cases)} (fix every list-valued key)")
    return scenario_for(planned.workload), planned.cases[0], device


@dataclass
class SuitePlan:
    """Every step of a suite planned on one device, and the steps that do not run on it."""

    suite: Any
    steps: list[Plan]
    device: Any
    not_here: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return (f"{self.suite.name}: {len(self.steps)} workload(s), {sum(len(p.cases) for p in self.steps)} case(s) "
                f"on {self.device} ({self.device.name})")


def plan_suite(suite: Any, overrides: dict[str, Any], quick: bool, device: Any) -> SuitePlan:
    """Every step checked before the first one runs."""
    on_gpu = device.type == "cuda"
    planned, not_here = [], []
    for step in suite.steps:
        if not step.runs_on(device.type):
            not_here.append(f"{step.workload} (runs on {', '.join(step.devices)} only)")
            continue
        if step.missing():
            engine = {**step.params, **step.cpu}.get("engine", step.requires)
            engine = engine[0] if isinstance(engine, list) and engine else engine
            not_here.append(f"{step.workload} on {engine} ({step.missing()}: pip install -e \".[{step.requires}]\")")
            continue
        keys = {**step.overrides(on_gpu, quick), **overrides}
        planned.append(plan(load_workload(step.workload), keys, quick, device))
    return SuitePlan(suite, planned, device, not_here)


def run_suite(planned: SuitePlan, out: Path, console: Any, label: str | None,
              on_outcome: Callable[[Plan, Any], None]) -> tuple[Path, list[Any], float]:
    """Each step into one new results root, in order, stopping at an interruption; on_outcome(plan, outcome)
    after each step. Returns the root, the outcomes and the seconds taken."""
    from bench.run.session import run_session
    from bench.store.results import new_run_dir

    root = new_run_dir(out, planned.suite.name)  # a new directory for the suite's runs, never an existing one
    console.print(f"[bold]{planned.title}[/] -> {root}")
    for note in planned.not_here:
        console.print(f"not on this device: {note}", markup=False)
    start = time.monotonic()
    outcomes = []
    for step in planned.steps:
        outcome = run_session(step.workload, step.cases, planned.device, root, console, label=label)
        outcomes.append(outcome)
        on_outcome(step, outcome)
        if outcome.interrupted:
            break
    return root, outcomes, time.monotonic() - start
