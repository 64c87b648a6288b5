"""Pure functions: energy counters with wraparound, power integration, window attribution."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

NAN = float("nan")

Window = tuple[float, float]


def unwrap_counter(raw: Sequence[float], wrap_at: float) -> list[float]:
    """Make a wrapping counter monotonic: add wrap_at each time a reading is lower than the last.

    Assumes at most one wrap between consecutive readings (RAPL wraps every
    minutes at the earliest; we sample many times a second).
    """
    out: list[float] = []
    offset = 0.0
    prev = None
    for value in raw:
        if prev is not None and value < prev:
            offset += wrap_at
        out.append(value + offset)
        prev = value
    return out


def _interp(times: Sequence[float], values: Sequence[float], t: float) -> float:
    """Linear interpolation inside the sampled range; NaN outside it (no extrapolation)."""
    if not times or t < times[0] or t > times[-1]:
        return NAN
    return float(np.interp(t, times, values))


def counter_energy(times: Sequence[float], counter_j: Sequence[float], window: Window) -> float:
    """Energy in [t0, t1] from a cumulative counter, interpolated at the window edges.

    NaN when the samples do not bracket the window.
    """
    t0, t1 = window
    e0, e1 = _interp(times, counter_j, t0), _interp(times, counter_j, t1)
    return e1 - e0


def integrate_power(times: Sequence[float], power_w: Sequence[float], window: Window) -> float:
    """Trapezoidal integral of timestamped power over [t0, t1], with the edges interpolated.

    NaN when the samples do not bracket the window.
    """
    t0, t1 = window
    if len(times) < 2 or t0 < times[0] or t1 > times[-1] or t1 < t0:
        return NAN
    inside = [(t, p) for t, p in zip(times, power_w) if t0 < t < t1]
    ts = [t0] + [t for t, _ in inside] + [t1]
    ps = [_interp(times, power_w, t0)] + [p for _, p in inside] + [_interp(times, power_w, t1)]
    return float(np.trapezoid(ps, ts))


def energy_over_windows(times: Sequence[float], counter_j: Sequence[float | None],
                        power_w: Sequence[float | None], windows: Sequence[Window]) -> tuple[float, str]:
    """Energy of one device summed over windows, by counter if it has one, else by power.

    Returns (joules, method) where method is 'counter', 'power' or 'none'.
    """
    if not windows:
        return NAN, "none"
    if counter_j and all(c is not None for c in counter_j):
        total = sum(counter_energy(times, counter_j, w) for w in windows)  # type: ignore[arg-type]
        if not math.isnan(total):
            return total, "counter"
    if power_w and all(p is not None for p in power_w):
        total = sum(integrate_power(times, power_w, w) for w in windows)  # type: ignore[arg-type]
        if not math.isnan(total):
            return total, "power"
    return NAN, "none"


def power_in_windows(times: Sequence[float], power_w: Sequence[float | None],
                     windows: Sequence[Window]) -> tuple[float, float]:
    """(time-weighted mean, max) of power samples in the windows; NaN when none fall inside.

    The mean integrates power over the windows and divides by their length,
    so a burst of samples in one window does not outweigh the rest.
    """
    pts = [(t, p) for t, p in zip(times, power_w) if p is not None]
    if not pts:
        return NAN, NAN
    ts, ps = [t for t, _ in pts], [p for _, p in pts]
    inside = [p for t, p in pts if any(a <= t <= b for a, b in windows)]
    energy = sum(integrate_power(ts, ps, w) for w in windows)
    duration = sum(b - a for a, b in windows)
    mean = energy / duration if duration > 0 and not math.isnan(energy) else NAN
    edges = [_interp(ts, ps, x) for w in windows for x in w]
    peak = max([*inside, *[e for e in edges if not math.isnan(e)]], default=NAN)
    return mean, peak


def merge_windows(windows: Sequence[Window]) -> list[Window]:
    """Sorted, with overlaps merged (energy must not be counted twice)."""
    out: list[Window] = []
    for a, b in sorted(windows):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
