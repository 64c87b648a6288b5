"""Energy, power, temperature and throttling of a case's measured windows, from the sampler's readings.

Prefill and decode windows are attributed separately; J/token is decode energy over
decode tokens. A figure that cannot be told is NaN with `energy_source` saying why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.core.metrics import Repetition, union_seconds
from bench.core.schema import NAN
from bench.telemetry.energy import merge_windows
from bench.telemetry.sampler import Sampler, summarise_windows

ENERGY_COLUMNS = ("energy_j", "energy_prefill_j", "energy_decode_j", "energy_j_per_token",
                  "energy_j_per_token_power", "power_w_mean", "power_w_max", "tok_s_per_w", "temp_c_max",
                  "energy_j_per_token_idle_sub")
MIN_READINGS = 5  # fewer readings inside the decode windows than this: J/token is interpolated


def energy_columns(sampler: Sampler, reps: Sequence[Repetition], samples: list[dict[str, Any]],
                   telemetry_on: bool, idle_power: dict[str, float],
                   cards: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """(columns, note) for one case; also fills each sample's prefill/decode energy. cards: the labels of the
    cards the case ran on (the others on the machine idle or serve someone else: not this case's energy);
    None or [] when that is not known, and then every card read counts."""
    empty: dict[str, Any] = {**dict.fromkeys(ENERGY_COLUMNS, NAN), "throttled": ""}
    if not telemetry_on:
        return {**empty, "energy_source": "none: telemetry off for this case"}, ""
    source = sampler.backend.energy_reason()
    if source.startswith("none"):
        return {**empty, **temps_and_throttle(sampler, reps), "energy_source": source}, ""
    series = sampler.series(reps[0].start, reps[-1].end)
    if cards:
        series = {d: rs for d, rs in series.items() if d in cards}
        idle_power = {d: w for d, w in idle_power.items() if d in cards}
    if not series:
        return empty, ""
    # The windows the throughput figures divide by (core.metrics): each request's own, merged where they overlap.
    pre = [w for r in reps for w in r.prefill_windows]
    dec = [w for r in reps for w in r.decode_windows]
    gap = sampler.backend.max_power_gap_s
    by_pre = summarise_windows(series, pre, gap)
    by_dec = summarise_windows(series, dec, gap)
    by_all = summarise_windows(series, pre + dec, gap)
    for s, rep in zip(samples, reps):
        s["energy_prefill_j"] = _sum(summarise_windows(series, rep.prefill_windows, gap), "energy_j")
        s["energy_decode_j"] = _sum(summarise_windows(series, rep.decode_windows, gap), "energy_j")
        s["energy_j_per_token"] = s["energy_decode_j"] / s["_decode_tokens"] if s["_decode_tokens"] else NAN
        # Both at once: a server's requests prefill while others decode, and that time counts once.
        both = rep.prefill_windows + rep.decode_windows
        span = union_seconds(both)
        s["power_w"] = _sum(summarise_windows(series, both, gap), "energy_j") / span / len(series) if span > 0 else NAN
    decode_tokens = sum(s["_decode_tokens"] for s in samples)
    decode_s = union_seconds(dec)
    e_dec, e_pre, e_all = _sum(by_dec, "energy_j"), _sum(by_pre, "energy_j"), _sum(by_all, "energy_j")
    e_dec_power = _sum(by_dec, "energy_power_j")
    methods = {s["method"] for s in by_all.values()}
    backend = sampler.backend
    if "power" in methods and backend.power_method and source == backend.energy_method:
        source = backend.power_method  # some window fell back from the counter to integrated power
    if methods == {"none"}:
        source = f"none: telemetry samples did not bracket the windows ({source})"
    elif "none" in methods:  # some cards fell silent (a cluster node's telemetry died): no total, the rest kept
        silent = sorted(d for d, s in by_all.items() if s["method"] == "none")
        why = backend.silent_reason(silent)
        source = (f"none: no readings around the windows from {', '.join(silent)}{f' ({why})' if why else ''}: "
                  f"the cards' total energy is not known ({source})")
    if "gap" in methods:
        source = (f"none: power readings more than {gap:g} s apart inside the measured windows "
                  f"(the tool fell behind): energy not resolved ({source})")
    idle = sum(idle_power.values()) if idle_power else NAN
    dec_power = e_dec / decode_s if decode_s > 0 else NAN
    reasons = sorted({x for s in by_all.values() for x in s["throttle"]})
    # Energy between two readings is interpolated; a decode time that spans few readings
    # (sensor period ~0.1-1 s) gives a per-token figure that the sensor did not really resolve.
    inside = min(_count_inside([r.t for r in rs], dec) for rs in series.values())
    note = (f"energy: only {inside} telemetry reading(s) inside the decode windows; J/token is "
            "interpolated, use the power workload for a resolved figure" if inside < MIN_READINGS else "")

    def per_token(joules: float) -> float:
        return joules / decode_tokens if decode_tokens else NAN

    return {
        "energy_j": e_all,
        "energy_prefill_j": e_pre,
        "energy_decode_j": e_dec,
        "energy_j_per_token": per_token(e_dec),
        "energy_j_per_token_power": per_token(e_dec_power),
        "energy_j_per_token_idle_sub": per_token(e_dec - idle * decode_s),
        "power_w_mean": _mean([s["power_w_mean"] for s in by_all.values()]),
        "power_w_max": _max([s["power_w_max"] for s in by_all.values()]),
        "tok_s_per_w": (decode_tokens / decode_s) / dec_power if dec_power and dec_power > 0 else NAN,
        "temp_c_max": _max([s["temp_c_max"] for s in by_all.values()]),
        "throttled": ";".join(reasons),
        "energy_source": source,
        "per_card": ";".join(
            f"{d}:mean={_fmt(s['power_w_mean'])}W,max={_fmt(s['power_w_max'])}W,energy={_fmt(s['energy_j'])}J,"
            f"temp={_fmt(s['temp_c_max'])}C" for d, s in sorted(by_all.items())),
    }, note


def temps_and_throttle(sampler: Sampler, reps: Sequence[Repetition]) -> dict[str, Any]:
    """Highest temperature and the throttle reasons over the case, where energy cannot be told."""
    summary = summarise_windows(sampler.series(reps[0].start, reps[-1].end), [(r.start, r.end) for r in reps])
    return {"temp_c_max": _max([s["temp_c_max"] for s in summary.values()]),
            "throttled": ";".join(sorted({x for s in summary.values() for x in s["throttle"]}))}


def telemetry_peak_mem_gb(sampler: Sampler, reps: Sequence[Repetition]) -> float:
    """Device memory in use at its highest during the case, from NVML/AMD SMI (for engines in another process)."""
    series = sampler.series(reps[0].start, reps[-1].end)
    used = [r.mem_used_gb for rs in series.values() for r in rs if r.mem_used_gb is not None]
    return max(used) if used else NAN


def _count_inside(times: list[float], windows: list[tuple[float, float]]) -> int:
    """How many of the times fall inside some window (a sweep of requests can bring thousands of windows)."""
    merged = np.asarray(merge_windows(windows), float).reshape(-1, 2)
    t = np.asarray(times, float)
    k = np.searchsorted(merged[:, 0], t, side="right") - 1  # the last window starting at or before each time
    return int(np.sum((k >= 0) & (t <= merged[np.maximum(k, 0), 1])))


def _sum(summary: dict[str, dict], key: str) -> float:
    vals = [s[key] for s in summary.values()]
    return float(sum(vals)) if vals and not any(math.isnan(v) for v in vals) else NAN


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else NAN


def _max(values: list[float]) -> float:
    return max((v for v in values if not math.isnan(v)), default=NAN)


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.1f}"
