"""A deterministic engine: a simple timing model on a virtual clock, no compute and no waiting.

Like hyperfine's mock executor, it lets tests of the runner, the metrics, energy
attribution, the long-context bisection, SLO goodput and prefix reuse assert exact
numbers on a machine however busy. While it is loaded the harness clock is virtual
(bench/core/clock.py): only this engine's generate calls move it, so every duration the
harness measures is the model's.

Timing model, in seconds: TTFT = 0.005 + 1e-5 * batch * prompt tokens computed
(reused prefix tokens are free); each later token = 0.010 + 0.001 * batch.
With `--set sim_kv_tokens=N` a case whose batch * (input + output) exceeds N runs out
of memory, as a card would. Memory model: peak = 1 GB + 1 MB per token held
(batch * (input + output)), so a max_mem_gb budget gives exact over_budget edges. With `--set
sim_slow_after_s=S` every step after S seconds takes `sim_slow_factor` times as long: a card that throttles.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.core import clock
from bench.core.metrics import Repetition, batch_repetition
from bench.core.params import Param
from bench.engines.base import Engine, LoadOptions
from bench.hardware.devices import Device
from bench.spec.models import ModelSpec

# This engine's own workload keys (the loader merges them; --set reaches them like any key).
OPTIONS: dict[str, Param] = {
    "sim_kv_tokens": Param(int, 0, "simulated: batch * (input + output) tokens that fit (0: no limit)", minimum=0),
    "sim_slow_after_s": Param(float, 0.0, "simulated: after this many seconds on its clock every step takes "
                              "sim_slow_factor times as long, as a card that throttles (0: never)", minimum=0),
    "sim_slow_factor": Param(float, 1.25, "simulated: how much longer a step takes once slowed", minimum=1,
                             maximum=100),
}

TTFT_BASE_S = 0.005
PREFILL_S_PER_TOKEN = 1e-5
STEP_BASE_S = 0.010
STEP_S_PER_SEQUENCE = 0.001
BASE_BYTES = 1e9
BYTES_PER_TOKEN = 1e6


def ttft_s(batch: int, computed_tokens: int) -> float:
    """The model's time to first token."""
    return TTFT_BASE_S + PREFILL_S_PER_TOKEN * batch * computed_tokens


def step_s(batch: int) -> float:
    """The model's time per later token."""
    return STEP_BASE_S + STEP_S_PER_SEQUENCE * batch


class SimulatedEngine(Engine):
    """Timestamps from the timing model above; exact token counts; optional memory capacity."""

    name = "simulated"
    on_local_device = False

    @classmethod
    def memory_cards(cls, params: dict[str, Any], device: Any) -> None:
        """A timing model holds no weights."""
        return None

    def __init__(self) -> None:
        self.capacity_tokens = 0
        self.last_peak = BASE_BYTES
        self.slow_at, self.slow_factor = 0.0, 1.0

    def load(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        self.capacity_tokens = int(options.engine.get("sim_kv_tokens", 0))
        clock.use_virtual()
        after = float(options.engine.get("sim_slow_after_s", 0.0))
        self.slow_at = clock.now() + after if after > 0 else 0.0
        self.slow_factor = float(options.engine.get("sim_slow_factor", 1.25))

    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any = None,
                 reuse_prefix: int = 0) -> Repetition:
        batch, input_len = input_ids.shape
        if self.capacity_tokens and batch * (input_len + output_len) > self.capacity_tokens:
            raise torch.OutOfMemoryError(f"simulated: {batch} x {input_len + output_len} tokens exceed "
                                         f"sim_kv_tokens={self.capacity_tokens}")
        self.last_peak = BASE_BYTES + BYTES_PER_TOKEN * batch * (input_len + output_len)
        start = clock.now()
        times = [clock.advance(ttft_s(batch, input_len - reuse_prefix))]
        for _ in range(output_len - 1):
            slowed = self.slow_at and clock.now() >= self.slow_at
            times.append(clock.advance(step_s(batch) * (self.slow_factor if slowed else 1.0)))
            if on_token is not None:
                on_token(len(times), times[-1])
        return batch_repetition(start, times, batch, input_len)

    def peak_memory_bytes(self) -> float | None:
        return self.last_peak

    def close(self) -> None:
        clock.use_real()
