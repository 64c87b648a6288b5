"""Pure functions: energy over measured windows from a counter or integrated power, power in windows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.core.schema import NAN

Window = tuple[float, float]
# Integrated power needs readings close together inside the windows: a longer gap (a tool that fell behind,
# a sensor that stalled) leaves energy unresolved rather than interpolated across it.
MAX_POWER_GAP_S = 2.0


def _cumulative_energy(times: np.ndarray, power: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Integral of the linearly interpolated power from times[0] to each x (x inside the range)."""
    cum = np.concatenate([[0.0], np.cumsum(np.diff(times) * (power[1:] + power[:-1]) / 2)])
    i = np.clip(np.searchsorted(times, x, side="right") - 1, 0, len(times) - 1)
    px = np.interp(x, times, power)
    return cum[i] + (x - times[i]) * (power[i] + px) / 2


def _bracketed(times: Sequence[float], windows: Sequence[Window]) -> bool:
    return bool(len(times)) and all(times[0] <= a <= b <= times[-1] for a, b in windows)


def energy_over_windows(times: Sequence[float], counter_j: Sequence[float | None],
                        power_w: Sequence[float | None], windows: Sequence[Window],
                        prefer: str = "counter", max_gap_s: float = MAX_POWER_GAP_S) -> tuple[float, str]:
    """Energy of one device summed over windows, by counter if it has one, else by power.

    Returns (joules, method) where method is 'counter', 'power', 'gap' (power readings more than
    max_gap_s apart inside the windows: not resolved) or 'none'.
    prefer="power" integrates the sampled power even where a counter exists, so the
    two methods can be set side by side. Vectorised: one pass over the samples for all windows.
    """
    if not windows or not _bracketed(times, windows):
        return NAN, "none"
    t = np.asarray(times, float)
    edges = np.asarray(windows, float)
    if prefer == "counter" and counter_j and all(c is not None for c in counter_j):
        at = np.interp(edges, t, np.asarray(counter_j, float))
        return float(np.sum(at[:, 1] - at[:, 0])), "counter"
    if len(t) >= 2 and power_w and all(p is not None for p in power_w):
        lo = max(int(np.searchsorted(t, edges[:, 0].min(), side="right")) - 1, 0)
        hi = min(int(np.searchsorted(t, edges[:, 1].max(), side="left")) + 1, len(t))
        if hi - lo >= 2 and float(np.max(np.diff(t[lo:hi]))) > max_gap_s:
            return NAN, "gap"
        at = _cumulative_energy(t, np.asarray(power_w, float), edges.ravel()).reshape(edges.shape)
        return float(np.sum(at[:, 1] - at[:, 0])), "power"
    return NAN, "none"


def power_in_windows(times: Sequence[float], power_w: Sequence[float | None],
                     windows: Sequence[Window]) -> tuple[float, float]:
    """(time-weighted mean, max) of power in the windows; NaN when it cannot be told.

    The mean integrates power over the windows and divides by their length,
    so a burst of samples in one window does not outweigh the rest. The max
    covers the samples inside the windows and the interpolated window edges.
    """
    pts = [(t, p) for t, p in zip(times, power_w) if p is not None]
    if len(pts) < 2 or not windows or not _bracketed([t for t, _ in pts], windows):
        return NAN, NAN
    t = np.array([x for x, _ in pts])
    p = np.array([y for _, y in pts])
    edges = np.asarray(windows, float)
    at = _cumulative_energy(t, p, edges.ravel()).reshape(edges.shape)
    duration = float(np.sum(edges[:, 1] - edges[:, 0]))
    mean = float(np.sum(at[:, 1] - at[:, 0]) / duration) if duration > 0 else NAN
    lo = np.searchsorted(t, edges[:, 0], side="left")
    hi = np.searchsorted(t, edges[:, 1], side="right")
    peak = float(np.max(np.interp(edges.ravel(), t, p)))
    for a, b in zip(lo, hi):
        if b > a:
            peak = max(peak, float(p[a:b].max()))
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
