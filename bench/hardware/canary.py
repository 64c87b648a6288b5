"""The machine's own speed at a run's start and end (a canary): the roofline probe's copy bandwidth and
matmul, a second or two, never cached. The matmul runs in the dtype a case gets by default (bf16, or fp32 on a
CPU without native bf16, where a bf16 product runs a fallback ~100x slower: the canary took 10 s, not 1); only
canaries of one dtype are compared. A shared runner that slowed down between two runs slows the canary as
much as the workload; `bench check` and `bench history` compare a figure's change with the canary's and call a
change the machine explains `machine-drift`, not a regression.

The canary's index is the geometric mean of bandwidth and FLOP/s (decode is bound by the one, prefill by the
other), averaged over the run's start and end; the change between runs is the ratio of the indices.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench.core import clock
from bench.core.schema import NAN


def measure(device: Any, seconds: float) -> dict[str, Any]:
    """Copy bandwidth (GB/s) and matmul TFLOP/s, the median repetition of each, in about `seconds`, and the
    matmul's dtype."""
    from bench.hardware.ceilings import PROBE_MB, PROBE_N
    from bench.hardware.devices import dtype_name, pick_dtype
    from bench.hardware.microbench import copy_bandwidth, matmul_flops

    start = clock.now()
    half = max(seconds / 2, 0.05)
    moved, times = copy_bandwidth(device, PROBE_MB.get(device.type, 1024), 1, 3, half, 1000)
    bandwidth = moved / statistics.median(times) / 1e9
    dtype, _ = pick_dtype("auto", device)
    flop, times = matmul_flops(device, PROBE_N.get(device.type, 8192), dtype, 1, 3, half, 1000)
    tflops = flop / statistics.median(times) / 1e12
    return {"bandwidth_gb_s": bandwidth, "tflops": tflops, "dtype": dtype_name(dtype),
            "seconds": clock.now() - start}


def dtype(meta: dict[str, Any]) -> str:
    """The dtype of a run's canary matmul ('bfloat16' for runs from before it was recorded: they all took bf16),
    '' without a canary."""
    canary = meta.get("canary") or {}
    if not isinstance(canary, dict):
        return ""
    taken = [s.get("dtype", "bfloat16") for s in (canary.get("start"), canary.get("end")) if isinstance(s, dict)]
    return str(taken[0]) if taken else ""


def _index(sample: Any) -> float:
    if not isinstance(sample, dict):
        return NAN
    values = [sample.get("bandwidth_gb_s"), sample.get("tflops")]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
               for v in values):
        return NAN
    return math.sqrt(values[0] * values[1])


def speed(meta: dict[str, Any]) -> float:
    """A run's canary index from run.json (NaN when it has none: an older run, a remote engine, canary off)."""
    canary = meta.get("canary") or {}
    if not isinstance(canary, dict):
        return NAN
    found = [i for i in (_index(canary.get("start")), _index(canary.get("end"))) if math.isfinite(i)]
    return statistics.fmean(found) if found else NAN


def machine_change_pct(baseline_speeds: list[float], candidate_speed: float) -> float:
    """How much faster (+) or slower (-) the machine was for the candidate than for the baseline(s), in %;
    NaN when either side has no canary. Pass only canaries of the candidate's dtype (`same_dtype`)."""
    known = [s for s in baseline_speeds if math.isfinite(s)]
    if not known or not math.isfinite(candidate_speed):
        return NAN
    return (candidate_speed / statistics.median(known) - 1) * 100


def same_dtype(metas: list[dict[str, Any]], candidate: dict[str, Any]) -> list[float]:
    """The canary indices of the runs whose canary matmul ran in the candidate's dtype (a bf16 and an fp32
    canary of one machine differ ~100x where bf16 has no native kernel: no machine change)."""
    want = dtype(candidate)
    return [speed(m) for m in metas if dtype(m) == want]


def divide_out(values: Any, machine_pct: float, direction: int) -> Any:
    """Figures as they would have been on the baseline's machine: a throughput (direction +1) scales with the
    machine's speed, a time (-1) inversely (a machine 20% slower explains a throughput 20% lower and a latency
    25% higher)."""
    machine = 1 + machine_pct / 100
    return values / machine if direction > 0 else values * machine
