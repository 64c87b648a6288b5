"""The device's ceilings for the roofline columns: measured in the results root, else from the datasheet."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.roofline import datasheet_peak

NAN = float("nan")


@dataclass(frozen=True)
class Ceiling:
    """The device's memory bandwidth (B/s) and 16-bit FLOP/s, and where the figures come from."""

    bandwidth: float = NAN
    flops: float = NAN
    source: str = ""


def latest_ceiling(root: Path, device_name: str) -> Ceiling:
    """The newest membw/matmul measurement of this device in `root`, else the datasheet, else unknown."""
    bandwidth = flops = NAN
    sources = []
    # A ceiling is the best the device did: the fastest repetition (a median taken while the machine
    # was busy once put a CPU's bound below what decode then reached). Older runs have only the median.
    for (column, fallback), unit, what in ((("bandwidth_best_gb_s", "bandwidth_gb_s"), 1e9, "bandwidth"),
                                           (("tflops_best", "tflops"), 1e12, "FLOP/s")):
        value, run = _latest_measurement(root, device_name, column)
        if value is None:
            value, run = _latest_measurement(root, device_name, fallback)
        column = fallback
        if value is not None:
            if column == "bandwidth_gb_s":
                bandwidth = value * unit
            else:
                flops = value * unit
            sources.append(f"{what} measured in {run}")
    peak = datasheet_peak(device_name)
    if peak is not None:
        if math.isnan(bandwidth):
            bandwidth = peak.bandwidth
            sources.append(f"bandwidth from {peak.source} ({peak.name})")
        if math.isnan(flops):
            flops = peak.flops16
            sources.append(f"FLOP/s from {peak.source} ({peak.name})")
    return Ceiling(bandwidth, flops, "; ".join(sources))


def _latest_measurement(root: Path, device_name: str, column: str) -> tuple[float | None, str]:
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
        values = pd.to_numeric(df[(df["device_name"] == device_name) & (df["status"] == "ok")][column],
                               errors="coerce")
        values = values[values.map(lambda v: math.isfinite(v) and v > 0)]
        if not values.empty:
            return float(values.max()), results.parent.name
    return None, ""
