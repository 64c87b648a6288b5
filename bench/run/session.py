"""One run's lifecycle: run directory, telemetry, idle baseline, ceilings, the runner loop, run.json.

Every finished case is written before the next starts; a Ctrl-C (or any exit) still
closes the sampler, completes run.json and keeps every finished row.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from bench.core import clock
from bench.core.errors import first_line
from bench.core.process_env import hold_interrupts
from bench.core.schema import ENERGY_EXTRAS, result_columns
from bench.engines import engine_class
from bench.hardware.canary import measure
from bench.hardware.ceilings import fill_missing, latest_ceiling
from bench.hardware.devices import Device
from bench.run.fingerprint import fingerprint
from bench.run.runner import Runner
from bench.scenarios import scenario_for
from bench.spec.workload import Case, Workload
from bench.store.results import RunWriter
from bench.telemetry.base import Backend
from bench.telemetry.power_cap import PowerCap
from bench.telemetry.probe import probe_backend
from bench.telemetry.sampler import Sampler


class CaseStepColumn(ProgressColumn):
    """The step, while a call generates its token count, then the case; cut with an ellipsis at the end,
    so the elapsed time, the count of cases and what is happening stay whole in a narrow terminal."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1))
        self.tokens = 0  # set per token by the runner's on_token (a plain store: it runs inside the timed loop)
        self.of = 0

    def on_token(self, count: int, _when: float) -> None:
        self.tokens = count

    def render(self, task: Task) -> Text:
        step = str(task.fields.get("step", ""))
        if self.tokens:
            step += f" token {self.tokens}/{self.of}"
        return Text(f"{step} · {task.description}" if step else task.description)


@dataclass
class Outcome:
    """What a session leaves: its run directory, its rows, and whether it was cut short."""

    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    interrupted: str = ""  # "", "interrupted" (Ctrl-C) or "terminated" (SIGTERM)


def server_info(workload: Workload) -> dict[str, Any] | None:
    """The server an engine of the workload talks to, for run.json (None when every engine is in-process)."""
    for name in workload.params["engine"]:
        info = engine_class(name).server_info(workload.params)
        if info is not None:
            return info
    return None


def needs_ceiling(workload: Workload) -> bool:
    """A workload that runs a model on this machine's device: its rows need the roofline."""
    return scenario_for(workload).uses_model and any(
        engine_class(name).on_local_device for name in workload.params["engine"])


def run_session(workload: Workload, cases: list[Case], device: Device, root: Path, console: Console,
                label: str | None = None, telemetry: Backend | None = None,
                allow_power_limit: bool = False) -> Outcome:
    """Run the cases into a new run directory under `root`; KeyboardInterrupt ends it cleanly. telemetry: a
    backend to read instead of this machine's own (a Ray cluster's nodes). allow_power_limit: the user's leave
    to change the cards' power limit for the cases that ask (put back when the run ends)."""
    backend, tried = (telemetry, []) if telemetry is not None else probe_backend(device.type)
    scenario = scenario_for(workload)
    declared = scenario.declared_columns()
    if backend.energy_method == "none":
        declared -= set(ENERGY_EXTRAS)  # nothing could fill them; the contract's energy columns say why
    writer = RunWriter(root, workload.name, result_columns(declared))
    sampler = Sampler(backend, hz=workload.params["telemetry_hz"])
    warnings: list[str] = []
    ceiling = latest_ceiling(root, device.name, warnings)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if needs_ceiling(workload):
        ceiling = fill_missing(ceiling, device)
    t0 = clock.now()
    writer.write_meta(
        command=sys.argv, workload=workload.to_dict(), cases=len(cases),
        fingerprint=fingerprint(device, backend), telemetry_probe=tried,
        ceiling={"bandwidth_bytes_s": ceiling.bandwidth, "flops": ceiling.flops, "source": ceiling.source},
        start=datetime.now(timezone.utc).isoformat(), end=None, complete=False,
        errors_before=backend.error_counts(), server=server_info(workload), **backend.meta(),
    )
    if label:
        writer.write_meta(label=label)
    console.print(f"[bold]{workload.name}[/]: {len(cases)} case(s) on {device} ({device.name}); "
                  f"telemetry: {backend.name} ({backend.energy_reason()}) -> {writer.path}")
    outcome = Outcome(writer.path)
    canary: dict[str, Any] = {}
    power_cap = PowerCap(backend)
    for line in power_cap.restore_left():  # a killed run's cap first: this run's figures are the card's own
        console.print(f"[yellow]warning:[/] {line}")
    try:
        sampler.start()
        idle: dict[str, float] = {}
        sampler.case = "idle"
        if any(workload.params["telemetry"]) and workload.params["idle_seconds"] > 0:
            idle = sampler.idle_baseline(workload.params["idle_seconds"])
            writer.write_meta(idle_power_w=idle)
        canary = _canary(workload, device, sampler, writer, "start", {})
        steps = CaseStepColumn()
        with Progress(TimeElapsedColumn(), MofNCompleteColumn(), BarColumn(bar_width=10), steps, console=console,
                      transient=True, expand=True) as progress:
            task = progress.add_task(workload.name, total=len(cases), step="")

            def on_progress(case: Case, step: str) -> None:
                steps.tokens, steps.of = 0, case["output_len"] if "output_len" in case.params else 0
                progress.update(task, description=f"case {case.index}: {scenario.label(case)}", step=step)

            runner = Runner(workload, device, sampler, writer.run_id, ceiling, idle, on_progress, steps.on_token,
                            power_cap if allow_power_limit else None)
            for result in runner.run(cases):
                writer.append_case(result.row, result.samples, result.telemetry, t0, result.warnings)
                outcome.rows.append(result.row)
                progress.advance(task)
        if canary:  # only after every case finished: never after a crash (an OOM'd device measures nothing)
            _canary(workload, device, sampler, writer, "end", canary)
    except KeyboardInterrupt as exc:
        hold_interrupts()  # a second Ctrl-C must not cut the saving of what finished
        outcome.interrupted = "terminated" if exc.__class__.__name__ == "Terminated" else "interrupted"
    finally:
        for line in power_cap.restore():  # whatever ended the run: the cards' own limits back
            console.print(f"[red]error:[/] {line}")
        sampler.stop()
        writer.write_meta(end=datetime.now(timezone.utc).isoformat(), complete=not outcome.interrupted,
                          interrupted=bool(outcome.interrupted), ended_by=outcome.interrupted or "completion",
                          finished_cases=writer.cases_written(),
                          errors_after=backend.error_counts(), **backend.meta())
        writer.close()
        backend.close()
    return outcome


def _canary(workload: Workload, device: Device, sampler: Sampler, writer: RunWriter, when: str,
            canary: dict[str, Any]) -> dict[str, Any]:
    """The machine's speed now (bench.hardware.canary), into run.json's `canary` (a run on this machine's device only)."""

    seconds = workload.params.get("canary_seconds", 0.0)
    if not seconds or not needs_ceiling(workload):
        return canary
    sampler.case = f"canary-{when}"
    try:
        taken: dict[str, Any] = measure(device, seconds)
    except Exception as exc:  # noqa: BLE001 - a canary that fails leaves the run's figures standing
        taken = {"error": first_line(exc)}
    canary = {**canary, when: taken}
    writer.write_meta(canary=canary)
    return canary
