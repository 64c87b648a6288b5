"""The interface every workload kind implements, and what it may read about the loaded model.

The runner owns the loop (load once, warm up, repeat, synchronise, yield rows); a
scenario owns what is particular to its kind: which cases it checks and expands,
how prompts are built, what it skips, the columns it adds, the state it carries
from case to case, and any extra cases it asks for (a bisection's probes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bench.core.errors import BadInput
from bench.core.kinds import KINDS
from bench.core.metrics import Repetition
from bench.core.noise import NoiseWarning
from bench.core.schema import MODEL_EXTRAS, ROW_EXTRAS
from bench.engines import Engine, engine_class
from bench.hardware import devices as dev
from bench.hardware.devices import Device
from bench.spec.models import ModelSpec
from bench.spec.workload import Case, Workload, expand
from bench.telemetry.base import Reading


@dataclass
class CaseResult:
    """What one case produced: its results row, its raw repetitions, and the telemetry taken meanwhile."""

    row: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    telemetry: list[tuple[Reading, str]] = field(default_factory=list)
    warnings: list[NoiseWarning] = field(default_factory=list)  # typed to the writer: kinds column + detail text


@dataclass(frozen=True)
class Loaded:
    """The model a case runs on, as the runner loaded it."""

    model: ModelSpec
    dtype: torch.dtype
    engine: Engine
    device: Device
    resident_at_start: float  # memory held when the case started (bytes)

    @property
    def bytes_per_element(self) -> int:
        """Bytes per element of activations and the KV cache (the model's dtype)."""
        return torch.finfo(self.dtype).bits // 8

    @property
    def cards(self) -> list[Device]:
        """The devices the model spans (several for a layer split; else the one device)."""
        return self.engine.placement_info().get("devices") or [self.device]

    def usable_bytes(self) -> float:
        """What the model's cards could hold at most now, summed (the host's on a CPU)."""

        return sum(dev.usable_memory_bytes(c) for c in self.cards)

    @property
    def weight_bytes(self) -> float:
        """Bytes of the weights as stored: quantized ones as the engine counts them, else params x dtype size."""
        known = self.engine.weight_bytes()
        return known if known is not None else float(self.model.shape.params * self.bytes_per_element)


# How the runner measures one case for a scenario that asks for extra cases.
Measure = Callable[[Case], CaseResult]


class Scenario:
    """One workload kind. The defaults describe plain model generation."""

    kind: ClassVar[str]
    uses_model: ClassVar[bool] = True  # False: measures the device itself (no engine, no model)
    prefix_caching: ClassVar[bool] = False  # whether engines may keep a prefix cache between requests
    # Read the telemetry between repetitions too (a soak's slices need readings in each, on any clock); the
    # sampler's own thread is enough where only the case's whole window counts.
    sample_each_repetition: ClassVar[bool] = False
    plan_keys: ClassVar[tuple[str, ...] | None] = None  # the parameters a --dry-run plan names (None: all declared)

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._notes: list[str] = []  # what the current case's columns left empty, and why

    def label(self, case: Case) -> str:
        """The case in words, for the progress line."""
        return case.label()

    def own_columns(self) -> set[str]:
        """The columns only this kind writes (its entry in bench/core/kinds.py)."""
        return {c.name for c in KINDS[self.kind].columns}

    def declared_columns(self) -> set[str]:
        """The results.csv columns beyond the DESIGN contract that this scenario's rows can fill."""
        engines = self.workload.params.get("engine") or []
        return {*ROW_EXTRAS, *MODEL_EXTRAS, *self.own_columns(),
                *(c for name in (engines if isinstance(engines, list) else [engines])
                  for c in engine_class(name).columns)}

    def expand(self, max_position_of: Callable[[str], int] | None = None) -> list[Case]:
        """The workload's cases, model-major."""
        return expand(self.workload)

    def check(self, case: Case) -> None:
        """Raise BadInput for a case no engine can measure (found before any work starts)."""
        if case["output_len"] < 2:
            raise BadInput(f"case {case.index}: output_len must be >= 2 (decode metrics need two tokens)")
        engine_class(case["engine"]).check_params(case.params)

    def prompts(self, loaded: Loaded, case: Case, prompts: torch.Tensor) -> torch.Tensor:
        """The prompt token ids of one repetition."""
        return prompts

    def reused_prefix(self, case: Case) -> int:
        """Prompt tokens whose KV cache is reused rather than recomputed."""
        return 0

    def skip(self, loaded: Loaded, case: Case, probing: bool) -> tuple[str, str] | None:
        """(status, detail) for a case not to run, or None."""
        return None

    def columns(self, loaded: Loaded, case: Case, row: dict[str, Any], reps: list[Repetition]) -> dict[str, Any]:
        """The columns that answer this kind's question."""
        return {}

    def over_time(self, case: Case, reps: Sequence[Repetition], samples: Sequence[dict[str, Any]],
                  series: dict[str, list[Reading]]) -> dict[str, Any]:
        """Columns from how the case's figures moved over its time (a soak's slices), given its repetitions,
        their samples (energy filled) and the telemetry read meanwhile; {} for a kind that does not ask."""
        return {}

    def notes(self) -> list[str]:
        """Notes the last `columns` call left for its row's detail (a figure left empty, and why); each call
        starts afresh."""
        said, self._notes = self._notes, []
        return said

    def note(self, text: str) -> None:
        """Say `text` in the current case's detail."""
        self._notes.append(text)

    def after(self, case: Case, row: dict[str, Any]) -> None:
        """Carry what later cases need (a finished row may also get columns here)."""

    def on_oom(self, case: Case) -> None:
        """A case ran out of memory."""

    def skip_before_load(self, case: Case) -> tuple[str, str] | None:
        """(status, detail) for a case not even to load its model for, or None."""
        return None

    def not_loaded(self, case: Case, row: dict[str, Any]) -> None:
        """A case whose model was not loaded (too big, out of memory, no engine): its row as it is written."""

    def follow_ups(self, case: Case, result: CaseResult, measure: Measure, next_index: int) -> Iterator[CaseResult]:
        """Extra cases to run after this one (measured through `measure`)."""
        return iter(())

    def answers(self, rows: list[dict[str, Any]]) -> list[str]:
        """What the run answers, a line per question, said before its table (none by default)."""
        return []

    def measure_device(self, device: Device, case: Case, row: dict[str, Any]) -> list[dict[str, Any]]:
        """For scenarios without a model: fill `row` and return the raw samples."""
        raise NotImplementedError
