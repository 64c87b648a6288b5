"""What the telemetry sampler costs: the same case with the sampler on and off (the telemetry-overhead
workload interleaves them), paired trial by trial, as a slowdown with its 95% interval.

One pure function from result rows to figures, so the terminal, a benchmark script and a test read the same
numbers. A pair is one trial's on and off case of one case label; the interval is Student's t over the pairs'
slowdowns, so it is as wide as the run-to-run noise that the pairs show, and 'within noise' means it holds 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench.core.caseid import case_label

METRIC = "decode_tok_s"


@dataclass(frozen=True)
class SamplerCost:
    """The sampler's cost on one case: the mean slowdown (%) with it on, its 95% interval, how many pairs."""

    case: str
    slowdown_pct: float
    low_pct: float
    high_pct: float
    pairs: int

    @property
    def within_noise(self) -> bool:
        return self.low_pct <= 0.0 <= self.high_pct

    def text(self) -> str:
        if self.pairs < 2:
            return (f"{self.case}: the telemetry sampler costs {self.slowdown_pct:+.1f}% decode tok/s in one on/off "
                    "pair: more trials (--set trial=1,2,3) to tell it from noise")
        verdict = "within noise" if self.within_noise else "measurable"
        return (f"{self.case}: the telemetry sampler costs {self.slowdown_pct:+.1f}% decode tok/s (95% interval "
                f"{self.low_pct:+.1f}..{self.high_pct:+.1f}%, {self.pairs} on/off pairs): {verdict}")


def _tags(row: dict[str, Any]) -> dict[str, str]:
    text = row.get("tags")
    if not isinstance(text, str):
        return {}
    return dict(part.partition("=")[::2] for part in text.split(";") if "=" in part)


def sampler_costs(rows: list[dict[str, Any]]) -> list[SamplerCost]:
    """Per case label that ran with the sampler both on and off (ok rows only), its cost; [] when none did."""
    from scipy import stats


    pairs: dict[str, dict[str, dict[bool, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        value = row.get(METRIC)
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if row.get("status") != "ok" or not math.isfinite(value) or value <= 0:
            continue
        tags = _tags(row)
        pairs[case_label(row, workload=False)][tags.get("trial", "1")][tags.get("telemetry") != "off"] = value
    out = []
    for case, trials in pairs.items():
        slowdowns = [(1.0 - both[True] / both[False]) * 100.0 for both in trials.values() if len(both) == 2]
        if not slowdowns:
            continue
        mean = sum(slowdowns) / len(slowdowns)
        if len(slowdowns) > 1:
            sem = stats.sem(slowdowns)
            half = float(stats.t.ppf(0.975, len(slowdowns) - 1) * sem) if sem > 0 else 0.0
        else:
            half = math.inf
        out.append(SamplerCost(case, mean, mean - half, mean + half, len(slowdowns)))
    return out
