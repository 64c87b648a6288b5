"""Microbenchmarks of the device's own ceilings: memory bandwidth and dense matmul FLOP/s.

Each returns per-repetition timings; the runner turns them into rows. Windows
are synchronised at both edges, and warm-up calls are not timed.
"""

from __future__ import annotations

import torch

from bench.core import clock
from bench.hardware.devices import Device, synchronize


def time_calls(fn, device: Device, warmup: int, min_reps: int, min_seconds: float, max_reps: int) -> list[float]:
    """Seconds per call of fn(), after warm-up, until both min_reps and min_seconds are met."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    start = clock.now()
    while len(times) < max_reps and (len(times) < min_reps or clock.now() - start < min_seconds):
        synchronize(device)
        t0 = clock.now()
        fn()
        synchronize(device)
        times.append(clock.now() - t0)
    return times


def copy_bandwidth(device: Device, megabytes: int, warmup: int, min_reps: int, min_seconds: float,
                   max_reps: int) -> tuple[float, list[float]]:
    """A large device-to-device copy: (bytes moved per call = read + write, seconds per call)."""
    n = megabytes * 1024 * 1024 // 4
    src = torch.ones(n, dtype=torch.float32, device=device.torch_device)
    dst = torch.empty_like(src)
    times = time_calls(lambda: dst.copy_(src), device, warmup, min_reps, min_seconds, max_reps)
    return 2.0 * src.numel() * src.element_size(), times


def matmul_flops(device: Device, n: int, dtype: torch.dtype, warmup: int, min_reps: int, min_seconds: float,
                 max_reps: int) -> tuple[float, list[float]]:
    """An n x n x n product: (FLOPs per call = 2 n^3, seconds per call)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device.torch_device, dtype)
    b = torch.randn(n, n, generator=gen).to(device.torch_device, dtype)
    out = torch.empty(n, n, device=device.torch_device, dtype=dtype)
    times = time_calls(lambda: torch.matmul(a, b, out=out), device, warmup, min_reps, min_seconds, max_reps)
    return 2.0 * n ** 3, times
