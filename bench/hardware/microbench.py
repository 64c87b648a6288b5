"""Microbenchmarks of the device's own ceilings: memory bandwidth and dense matmul FLOP/s.

Each returns per-repetition timings; the runner turns them into rows. Windows
are synchronised at both edges, and warm-up calls are not timed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bench.core import clock
from bench.core.metrics import enough_repetitions
from bench.hardware.devices import Device, synchronize

PROBE_SECONDS = 0.25  # a product this long is timed well enough to project a larger one from


class TooSlow(Exception):
    """The calls a case needs at least (warm-up + min_reps) would take longer than max_seconds here."""

    def __init__(self, calls: int, seconds_each: float, max_seconds: float, how: str) -> None:
        total = calls * seconds_each
        took = f"{total:.0f}" if total >= 10 else f"{total:.2g}"
        super().__init__(f"{calls} calls (warm-up + min_reps) would take ~{took} s here, past "
                         f"max_seconds={max_seconds:g} ({how})")


def time_calls(fn, device: Device, warmup: int, min_reps: int, min_seconds: float, max_reps: int,
               max_seconds: float = math.inf) -> list[float]:
    """Seconds per call of fn(), after warm-up, until both min_reps and min_seconds are met (and no longer
    than max_reps calls, or max_seconds once min_reps is met).

    Raises TooSlow when two warm-up calls show that warm-up and min_reps would pass max_seconds: a case is
    then given up after two calls, not after minutes of them."""
    calls = warmup + min_reps
    for i in range(warmup):
        t0 = clock.now()
        fn()
        synchronize(device)
        took = clock.now() - t0
        # A first call may pay for kernel selection or allocation: only a second one as slow gives up.
        if i < 2 and took * calls > max_seconds:
            again = took if i == 1 else _timed(fn, device)
            if again * calls > max_seconds:
                raise TooSlow(calls, again, max_seconds, f"a warm-up call took {again:.1f} s")
    times: list[float] = []
    start = clock.now()
    while not enough_repetitions(len(times), clock.now() - start, min_reps, min_seconds, max_reps, max_seconds):
        synchronize(device)
        t0 = clock.now()
        fn()
        synchronize(device)
        times.append(clock.now() - t0)
    return times


def _timed(fn, device: Device) -> float:
    t0 = clock.now()
    fn()
    synchronize(device)
    return clock.now() - t0


def copy_bandwidth(device: Device, megabytes: int, warmup: int, min_reps: int, min_seconds: float,
                   max_reps: int, max_seconds: float = math.inf) -> tuple[float, list[float]]:
    """A large device-to-device copy: (bytes moved per call = read + write, seconds per call)."""
    n = megabytes * 1024 * 1024 // 4
    src = torch.ones(n, dtype=torch.float32, device=device.torch_device)
    dst = torch.empty_like(src)
    times = time_calls(lambda: dst.copy_(src), device, warmup, min_reps, min_seconds, max_reps, max_seconds)
    return 2.0 * src.numel() * src.element_size(), times


def matmul_flops(device: Device, n: int, dtype: torch.dtype, warmup: int, min_reps: int, min_seconds: float,
                 max_reps: int, max_seconds: float = math.inf) -> tuple[float, list[float]]:
    """An n x n x n product: (FLOPs per call = 2 n^3, seconds per call)."""
    a, b, out = _operands(device, n, dtype)
    times = time_calls(lambda: torch.matmul(a, b, out=out), device, warmup, min_reps, min_seconds, max_reps,
                       max_seconds)
    return 2.0 * n ** 3, times


@dataclass(frozen=True)
class ProductCost:
    """What one n x n x n product costs here, projected from the largest size timed in the probe."""

    probed_n: int
    probed_seconds: float
    seconds: float  # one product at the size asked for

    @property
    def flops(self) -> float:
        """FLOP/s of the probed product."""
        return 2.0 * self.probed_n ** 3 / self.probed_seconds


def product_cost(device: Device, n: int, dtype: torch.dtype, budget: float = math.inf,
                 enough: float = PROBE_SECONDS) -> ProductCost:
    """One product at sizes doubling from 256 until one takes `enough` seconds, the size reaches n, or the
    projection is under a tenth of `budget` (the seconds one product at n may take), then scaled by n^3 to n.
    The last stop spares a card (and a CPU in fp32) all but one small product: a projection that far inside the
    budget is not what decides a skip, and time_calls still gives up on warm-up calls that pass it.

    Why: a 16-bit product on a CPU without native 16-bit kernels (AVX2 only) runs a slow fallback, ~100x
    below fp32; there one 2048^3 bf16 product took 57 s, and warm-up plus five repetitions 7 minutes a dtype.
    The probe costs a fraction of one product at n. Doubling, rather than one small size, keeps a fast card's
    launch overhead at 256 from being scaled up into a false projection; scaling by n^3 still underestimates a
    fallback whose speed falls with size (0.3 GFLOP/s at 2048 against 1.3 at 512 on that CPU)."""
    m = min(n, 256)
    while True:
        a, b, out = _operands(device, m, dtype)
        torch.matmul(a, b, out=out)  # the first call of a size pays for kernel selection, not the product
        synchronize(device)
        t0 = clock.now()
        torch.matmul(a, b, out=out)
        synchronize(device)
        took = max(clock.now() - t0, 1e-9)
        projected = took * (n / m) ** 3
        if took >= enough or m >= n or projected < budget / 10:
            return ProductCost(m, took, projected)
        m = min(2 * m, n)


def _operands(device: Device, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device.torch_device, dtype)
    b = torch.randn(n, n, generator=gen).to(device.torch_device, dtype)
    return a, b, torch.empty(n, n, device=device.torch_device, dtype=dtype)
