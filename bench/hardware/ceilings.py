"""The device's ceilings for the roofline columns: measured in the results root, else from the datasheet."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core import cache, clock
from bench.core.noise import NoiseWarning
from bench.core.schema import NAN
from bench.hardware.roofline import above_the_bound, datasheet_peak


@dataclass(frozen=True)
class Ceiling:
    """The device's memory bandwidth (B/s) and 16-bit FLOP/s, and where the figures come from."""

    bandwidth: float = NAN
    flops: float = NAN
    source: str = ""
    # True where the figure is the datasheet's: a physical limit no measurement can pass. A measured or
    # probed figure is only what the device once did; going past it means the ceiling was measured low.
    bandwidth_physical: bool = False
    flops_physical: bool = False


def latest_ceiling(root: Path, device_name: str, warnings: list[str] | None = None) -> Ceiling:
    """The newest membw/matmul measurement of this device in `root`, else the datasheet, else unknown."""
    bandwidth = flops = NAN
    sources = []
    # A ceiling is the best the device did: the fastest repetition (a median taken while the machine
    # was busy once put a CPU's bound below what decode then reached). Older runs have only the median.
    for (column, fallback), unit, what in ((("bandwidth_best_gb_s", "bandwidth_gb_s"), 1e9, "bandwidth"),
                                           (("tflops_best", "tflops"), 1e12, "FLOP/s")):
        value, run = _latest_measurement(root, device_name, column, warnings)
        if value is None:
            value, run = _latest_measurement(root, device_name, fallback, warnings)
        column = fallback
        if value is not None:
            if column == "bandwidth_gb_s":
                bandwidth = value * unit
            else:
                flops = value * unit
            sources.append(f"{what} measured in {run}")
    peak = datasheet_peak(device_name)
    bandwidth_physical = flops_physical = False
    if peak is not None:
        if math.isnan(bandwidth):
            bandwidth, bandwidth_physical = peak.bandwidth, not math.isnan(peak.bandwidth)
            sources.append(f"bandwidth from {peak.source} ({peak.name})" if bandwidth_physical else
                           f"no bandwidth figure for {peak.name} ({peak.source})")
        if math.isnan(flops):
            flops, flops_physical = peak.flops16, not math.isnan(peak.flops16)
            sources.append(f"FLOP/s from {peak.source} ({peak.name})" if flops_physical else
                           f"no 16-bit FLOP/s figure for {peak.name} ({peak.source})")
    return Ceiling(bandwidth, flops, "; ".join(sources), bandwidth_physical, flops_physical)


def _latest_measurement(root: Path, device_name: str, column: str,
                        warnings: list[str] | None = None) -> tuple[float | None, str]:
    """Highest finite positive value of `column` in the newest run (by run id) on this device that measured it."""
    if not root.is_dir():
        return None, ""
    for results in sorted(root.glob("*/results.csv"), reverse=True):
        try:
            df = pd.read_csv(results)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, UnicodeDecodeError):
            continue
        if column not in df.columns or "device_name" not in df.columns or "status" not in df.columns:
            continue
        raw = df[(df["device_name"] == device_name) & (df["status"] == "ok")][column]
        values = pd.to_numeric(raw, errors="coerce")
        good = values.map(lambda v: math.isfinite(v) and v > 0)
        if warnings is not None and raw.notna().any() and not good[raw.notna()].all():
            bad = ", ".join(map(str, raw[raw.notna() & ~good].head(3)))
            warnings.append(f"ignored {column} = {bad} in {results}: a ceiling must be a finite positive number")
        values = values[good]
        if not values.empty:
            return float(values.max()), results.parent.name
    return None, ""


# The probe: short, so it can run before a first generate run; the best repetition is the ceiling.
PROBE_MB = {"cpu": 256}  # other devices: 1024
PROBE_N = {"cpu": 1024}  # other devices: 8192


def probe_key(device: Any) -> str:
    """Ceilings belong to one machine and device: host name, device name and torch version."""
    import platform

    import torch

    return f"{platform.node()}|{device.type}|{device.name}|torch {torch.__version__}"


def probed_ceiling(device: Any) -> tuple[Ceiling, float]:
    """Measure copy bandwidth and matmul FLOP/s in a few seconds: (ceiling, seconds taken). The matmul runs in
    the dtype a case gets by default there (bf16, or fp32 on a CPU without native bf16, where bf16 runs ~100x
    slower and would make every fp32 case's MFU exceed 1).

    Cached per machine (bench/core/cache.py), so a machine is probed once, not once per run.
    """
    from bench.hardware.devices import dtype_name, pick_dtype
    from bench.hardware.microbench import copy_bandwidth, matmul_flops

    dtype, _ = pick_dtype("auto", device)
    key = probe_key(device) + ("" if dtype_name(dtype) == "bfloat16" else f"|{dtype_name(dtype)}")
    hit = cache.load("ceilings", key)
    if isinstance(hit, dict) and _positive(hit.get("bandwidth")) and _positive(hit.get("flops")):
        return Ceiling(hit["bandwidth"], hit["flops"], f"probed {hit.get('when', '')} (cached for {key})"), 0.0
    start = clock.now()
    moved, times = copy_bandwidth(device, PROBE_MB.get(device.type, 1024), 1, 5, 0.5, 50)
    bandwidth = moved / min(times)
    flop, times = matmul_flops(device, PROBE_N.get(device.type, 8192), dtype, 1, 5, 0.5, 50)
    flops = flop / min(times)
    took = clock.now() - start
    from datetime import datetime, timezone

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cache.store("ceilings", key, {"bandwidth": bandwidth, "flops": flops, "when": when, "seconds": took})
    short = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}.get(dtype_name(dtype), dtype_name(dtype))
    return Ceiling(bandwidth, flops, f"probed {when} in {took:.1f} s (copy bandwidth, {short} matmul)"), took


def fill_missing(ceiling: Ceiling, device: Any) -> Ceiling:
    """The ceiling with any missing figure taken from the probe; measured and datasheet figures win."""
    if _positive(ceiling.bandwidth) and _positive(ceiling.flops):
        return ceiling
    probe, _ = probed_ceiling(device)
    bandwidth = ceiling.bandwidth if _positive(ceiling.bandwidth) else probe.bandwidth
    flops = ceiling.flops if _positive(ceiling.flops) else probe.flops
    parts = [ceiling.source] if ceiling.source else []
    missing = [w for w, v in (("bandwidth", ceiling.bandwidth), ("FLOP/s", ceiling.flops)) if not _positive(v)]
    parts.append(f"{' and '.join(missing)} {probe.source}")
    return Ceiling(bandwidth, flops, "; ".join(parts),
                   ceiling.bandwidth_physical and _positive(ceiling.bandwidth),
                   ceiling.flops_physical and _positive(ceiling.flops))


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def row_verdict(row: dict[str, Any], ceiling: Ceiling, budget_gb: float, dtype_reason: str,
                warnings: list[NoiseWarning]) -> tuple[str, str]:
    """ok, or error above a physical bound, or over_budget when the measured peak exceeds max_mem_gb;
    a bound passed because a ceiling was measured low adds a ceiling-low warning."""
    notes = [dtype_reason] if dtype_reason.startswith("auto") else []
    notes.append(f"roofline: {ceiling.source}" if ceiling.source
                 else "roofline: no ceiling known for this device (run --workload membw / matmul)")
    physical = {"bandwidth": ceiling.bandwidth_physical, "flops": ceiling.flops_physical}
    passed = above_the_bound(row)
    bugs = [what for figure, what in passed if physical[figure]]
    if bugs:
        return "error", f"{'; '.join(bugs)} (the datasheet's): a measurement bug; " + "; ".join(notes)
    for figure, what in passed:  # past a measured ceiling: the ceiling was measured low, not the row wrong
        workload = "membw" if figure == "bandwidth" else "matmul"
        warnings.append(NoiseWarning("ceiling-low", f"{what}, a {figure} ceiling measured on this machine, "
                                                    f"so that ceiling was measured low (busy at the time?): "
                                                    f"bench run --workload {workload} on a quiet machine"))
    budget = budget_gb
    if budget > 0 and row["peak_mem_gb"] > budget:
        predicted = row.get("predicted_peak_mem_gb")
        said = f" (predicted {predicted:.2f} GB)" if predicted is not None and predicted == predicted else ""
        return "over_budget", f"measured peak {row['peak_mem_gb']:.2f} GB exceeds max_mem_gb={budget:g}{said}"
    return "ok", "; ".join(notes)
