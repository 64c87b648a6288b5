"""Sustained, not peak: a steady decode load held for hold_seconds and cut into time slices, so a figure measured
in the first minute is checked over the last. Each repetition is one call of the case's batch; the slices group
them by when they ran. Per slice: decode tok/s, board power, clock, temperature and throttle reasons (from the
telemetry read meanwhile), energy per token. The row: the peak slice, the sustained figure (the median of the
last third of the slices), their ratio, the time until the throughput settled (within SETTLED of the sustained
figure from then on), and energy per token in the first and the last slice; a card that throttled gets the
typed `throttled` warning as any case does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench.core.caseid import case_text
from bench.core.figures import finite
from bench.core.metrics import Repetition, union_seconds
from bench.core.schema import NAN
from bench.scenarios.generate import GenerateScenario
from bench.spec.workload import Case, expand
from bench.telemetry.base import Reading

SETTLED = 0.02  # within 2% of the sustained figure from a slice on: the throughput has settled there


class SoakScenario(GenerateScenario):
    """The generate case held for hold_seconds; its repetitions grouped into soak_slices time slices."""

    kind = "soak"
    sample_each_repetition = True

    def expand(self, max_position_of: Callable[[str], int] | None = None) -> list[Case]:
        """Every case holds its load for hold_seconds: repetitions until then, and no sooner."""
        cases = expand(self.workload)
        for case in cases:
            hold = case.params["hold_seconds"]
            case.params.update(min_seconds=hold, max_seconds=hold, max_reps=1_000_000)
        return cases

    def over_time(self, case: Case, reps: Sequence[Repetition], samples: Sequence[dict[str, Any]],
                  series: dict[str, list[Reading]]) -> dict[str, Any]:
        slices = time_slices(reps, samples, series, case["soak_slices"])
        rates = [s["tok_s"] for s in slices]
        if len(slices) < 3:
            self.note(f"soak: {len(slices)} slice(s) of repetitions: too few to tell a sustained figure "
                      "(a longer hold_seconds, or a shorter call)")
            return {"soak_slices": slices_text(slices)}
        last = slices[-max(1, len(slices) // 3):]
        sustained = statistics.median(s["tok_s"] for s in last)
        watts = [s["power_w"] for s in last if s["power_w"] == s["power_w"]]
        peak = max(rates)
        return {
            "soak_peak_tok_s": peak, "soak_sustained_tok_s": sustained,
            "soak_sustained_ratio": sustained / peak if peak > 0 else NAN,
            "soak_settle_s": settle_time(slices, sustained),
            "soak_sustained_power_w": statistics.median(watts) if watts else NAN,
            "soak_energy_j_per_token_first": slices[0]["j_per_token"],
            "soak_energy_j_per_token_last": slices[-1]["j_per_token"],
            "soak_slices": slices_text(slices),
        }

    def answers(self, rows: list[dict[str, Any]]) -> list[str]:
        """Per case: the sustained figure against the peak, when it settled, and energy first and last."""
        lines = []
        for r in rows:
            sustained, peak = finite(r.get("soak_sustained_tok_s")), finite(r.get("soak_peak_tok_s"))
            if r.get("status") != "ok" or sustained is None or peak is None:
                continue
            settle = finite(r.get("soak_settle_s"))
            first, last = finite(r.get("soak_energy_j_per_token_first")), finite(r.get("soak_energy_j_per_token_last"))
            energy = f"; J/token {first:.3g} first, {last:.3g} last" if first is not None and last is not None else ""
            lines.append(f"{case_text(r)}: sustained {sustained:.1f} tok/s, {sustained / peak:.0%} of its peak "
                         f"{peak:.1f}" + (f", settled after {settle:.0f} s" if settle is not None else "") + energy
                         + (f"; throttled: {r['throttled']}" if _reasons(r.get("throttled")) else ""))
        return lines


def _reasons(throttled: Any) -> bool:
    """Whether a row's `throttled` names real reasons (not empty, not "unknown: why")."""
    return isinstance(throttled, str) and bool(throttled) and not throttled.startswith("unknown")


def time_slices(reps: Sequence[Repetition], samples: Sequence[dict[str, Any]], series: dict[str, list[Reading]],
                count: int) -> list[dict[str, Any]]:
    """The repetitions grouped into `count` equal spans of the hold (an empty span is left out): per slice its
    start (s after the first repetition), decode tok/s (its tokens over its decode time), energy per token, and
    the telemetry read inside it (power summed over the cards, the lowest clock, the highest temperature, the
    throttle reasons)."""
    if not reps:
        return []
    t0, t1 = reps[0].start, reps[-1].end
    width = (t1 - t0) / count if t1 > t0 else 1.0
    out = []
    for k in range(count):
        lo, hi = t0 + k * width, t0 + (k + 1) * width
        inside = [i for i, rep in enumerate(reps) if lo <= rep.start < hi or (k == count - 1 and rep.start == hi)]
        if not inside:
            continue
        tokens = sum(samples[i]["_decode_tokens"] for i in inside) if samples else 0
        seconds = sum(union_seconds(reps[i].decode_windows) for i in inside)
        joules = [samples[i].get("energy_decode_j", NAN) for i in inside] if samples else []
        readings = [r for rs in series.values() for r in rs if lo <= r.t < hi]
        power = _by_time(readings, "power_w", sum)
        out.append({
            "t": lo - t0, "tok_s": tokens / seconds if seconds > 0 else NAN,
            "j_per_token": sum(joules) / tokens if tokens and joules and all(j == j for j in joules) else NAN,
            "power_w": statistics.mean(power) if power else NAN,
            "clock_mhz": min((r.sm_clock_mhz for r in readings if r.sm_clock_mhz is not None), default=NAN),
            "temp_c": max((r.temp_c for r in readings if r.temp_c is not None), default=NAN),
            "throttle": sorted({x for r in readings for x in r.throttle}),
        })
    return out


def _by_time(readings: list[Reading], field: str, combine: Callable[[list[float]], float]) -> list[float]:
    """One value per instant over the cards (their power summed), from readings that have the field."""
    at: dict[float, list[float]] = {}
    for r in readings:
        value = getattr(r, field)
        if value is not None:
            at.setdefault(round(r.t, 2), []).append(value)
    return [combine(v) for v in at.values()]


def settle_time(slices: Sequence[dict[str, Any]], sustained: float) -> float:
    """Seconds from the start until the throughput stays within SETTLED of the sustained figure (the start of
    the first slice from which every later one does); NaN where it never settled."""
    for k, s in enumerate(slices):
        if all(abs(x["tok_s"] - sustained) <= SETTLED * sustained for x in slices[k:]):
            return s["t"]
    return NAN


def slices_text(slices: Sequence[dict[str, Any]]) -> str:
    """The slices for results.csv: 't s: tok/s, W, MHz, C[, throttle]' separated by ';' (empty where unread)."""
    def cell(value: float, fmt: str) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)

    return ";".join(f"{s['t']:.0f}s:{cell(s['tok_s'], '{:.1f}')}tok/s,{cell(s['power_w'], '{:.0f}')}W,"
                    f"{cell(s['clock_mhz'], '{:.0f}')}MHz,{cell(s['temp_c'], '{:.0f}')}C"
                    + (f",{'+'.join(s['throttle'])}" if s["throttle"] else "") for s in slices)
