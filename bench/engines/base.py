"""The engine interface: load a model, generate with per-token timestamps, close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bench.core.metrics import Repetition
from bench.core.noise import NoiseWarning
from bench.engines.output_check import OutputCheck
from bench.hardware import devices
from bench.hardware.devices import Device
from bench.spec.models import ModelSpec


@dataclass(frozen=True)
class LoadOptions:
    """Everything an engine is told about a case, in one place (bench.engines.load_options builds it from
    the parameters declared load=True, and the engine's own declared options)."""

    dtype: torch.dtype
    compile: bool = False
    cache: str = "dynamic"  # "dynamic" | "static"
    seed: int = 0
    quant: str = "none"  # "none" | "int8" | "int4": weight-only quantization
    decode: str = "auto"  # "auto" | "generate" | "loop" | "captured" (transformers)
    prefix_caching: bool = False  # the scenario wants the engine to keep a prefix cache between requests
    engine: Mapping[str, Any] = field(default_factory=dict)  # the engine's own options (its OPTIONS keys)


class EngineUnavailable(Exception):
    """The engine cannot run here (not installed, no server); its cases become skipped rows."""


class Engine(ABC):
    """A way of running a model. Implementations keep the timing inside one generate call."""

    name: ClassVar[str]
    # False when the model runs in another process (vLLM's engine core, a server): torch's and
    # this process's memory counters then say nothing about it.
    in_process: ClassVar[bool] = True
    # False when what is measured is not this machine's device (a remote server, a timing model):
    # then this device's ceilings mean nothing for its rows and are not probed.
    on_local_device: ClassVar[bool] = True
    # results.csv columns beyond the scenario's that this engine's rows can fill (case_columns).
    columns: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def load(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        """Build or load the model on the device."""

    @abstractmethod
    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any = None,
                 reuse_prefix: int = 0) -> Repetition:
        """Run one batch of prompts for exactly output_len new tokens; return its timeline.

        The returned timestamps come from inside the call, with the device
        synchronised at the window edges. With reuse_prefix > 0 the first
        reuse_prefix tokens (the same in every prompt) come from a KV cache
        computed once, outside the timed window, as a prefix cache would.
        """

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Raise BadInput for settings this engine cannot run with (found before any work starts)."""

    @classmethod
    def server_info(cls, params: dict[str, Any]) -> dict[str, Any] | None:
        """For run.json: the server the engine talks to (None for an in-process engine)."""
        return None

    def reported_dtype(self, requested: str, resolved: str) -> str:
        """The dtype a row names: the one we loaded with, unless the engine cannot know it."""
        return resolved

    def materializes_attention_scores(self) -> bool:
        """True when attention builds the full (query x key) score matrix in memory (eager attention).

        Fused kernels (SDPA, flash, paged attention) never hold it, so memory grows
        linearly with the context instead of quadratically.
        """
        return False

    def weight_bytes(self) -> float | None:
        """Bytes the loaded weights take as stored (quantized ones included); None when the engine cannot
        know (the runner then takes parameters x element size)."""
        return None

    def peak_memory_bytes(self) -> float | None:
        """The engine's own peak memory for the last generate call, where it knows better than the
        device counters (None: the runner reads torch's or the process's peak)."""
        return None

    def peak_gb(self, cards: list[Device]) -> float:
        """Peak memory of the last call, in GB: the engine's own where it knows better, else torch's on the
        cards (summed over those the model spans) or the process's on the host; NaN for an engine in another
        process (torch and this process know nothing of its memory)."""

        own = self.peak_memory_bytes()
        if own is not None:
            return own / 1e9
        if not self.in_process:
            return float("nan")
        device_peaks = [devices.peak_memory_bytes(c) for c in cards]
        if any(x is None for x in device_peaks):
            return devices.host_peak_rss_bytes() / 1e9
        return sum(device_peaks) / 1e9

    def peak_memory_per_card(self) -> dict[str, float]:
        """Each card's peak memory in the last generate call where the model lives in processes of the
        engine's own (tensor-parallel ranks); {}: the runner reads the cards itself."""
        return {}

    def configure(self, options: dict[str, Any]) -> None:
        """A case's own engine options, before it runs (a model is loaded once for every case that shares
        its reload options; the others, such as a request rate, change from case to case)."""

    def placement_info(self) -> dict[str, Any]:
        """How the model spans cards: {'placement': 'layer-split' | 'tp' | ..., 'cards': ['cuda:0', ...],
        'devices': [Device, ...] (the cards this process can read the memory of)}; {} for one device."""
        return {}

    def decode_path(self) -> str:
        """Which decode path ran (transformers: generate, loop or captured); '' for an engine with its own."""
        return ""

    def engine_bound(self, device: Device, row: dict[str, Any]) -> list[NoiseWarning]:
        """An `engine-bound` warning for a row that measured the software more than the hardware: on an
        accelerator, decode below ENGINE_BOUND_MBU of the memory bandwidth. Engines add their own reasons."""
        return engine_bound_warning(self._bound_reasons(device, row), self.hardware_path)

    hardware_path: ClassVar[str] = "the transformers engine's decode=captured"  # what measures the hardware

    def _bound_reasons(self, device: Device, row: dict[str, Any]) -> list[str]:
        mbu = row.get("mbu")
        if device.type != "cpu" and self.on_local_device and isinstance(mbu, float) and mbu == mbu \
                and mbu < ENGINE_BOUND_MBU:
            return [f"decode reached {mbu:.0%} of the memory bandwidth"]
        return []

    @classmethod
    def memory_cards(cls, params: dict[str, Any], device: Device) -> list[Device] | None:
        """The cards whose memory must hold the case's weights, checked before loading (a host that runs out
        of memory kills the run, not just the case); None where this process does not hold them."""
        return [device] if cls.in_process else None

    def cache_used(self) -> str:
        """The KV cache the last call decoded with, where the engine decides it (static | dynamic | auto, when a
        measured choice made it: the row's detail says which); '' to leave the case's `cache` as asked."""
        return ""

    def compile_stats(self) -> tuple[float, int]:
        """(seconds spent compiling and capturing, frames compiled) since the previous call; (NaN, 0) for an
        engine that compiles nothing it can count."""
        return float("nan"), 0

    def case_columns(self, reps: list[Repetition]) -> dict[str, Any]:
        """After a case's timed repetitions: figures only the engine knows (a server's own metrics), named in
        `columns`; {} for an engine without any."""
        return {}

    def notes(self) -> list[str]:
        """Notes about the measurements since the previous call (one case's), for its row's detail; each call
        starts afresh, so one case's note never lands in a later case's row."""
        return []

    def check_output(self, input_ids: torch.Tensor, output_len: int, reuse_prefix: int = 0) -> OutputCheck:
        """After a case's timed repetitions: the timed path once more with its per-step logits kept, against an
        independent reference of the same positions (output_check.py). An engine without logits says why."""
        return OutputCheck.skipped(f"the {self.name} engine returns no logits to compare")

    def close(self) -> None:
        """Release the model and its memory."""


ENGINE_BOUND_MBU = 0.30  # decode this far below the memory bandwidth on an accelerator measures the engine


def engine_bound_warning(reasons: list[str], fix: str) -> list[NoiseWarning]:
    """The typed warning for a row whose figure measures the engine, with what to run for the hardware's."""
    if not reasons:
        return []
    return [NoiseWarning("engine-bound", f"{'; '.join(reasons)}: the figure measures the engine more than the "
                                         f"hardware; for the hardware's figure run {fix}")]
