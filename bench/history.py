"""Regression tracking over a history (`bench history`): a series per case, hardware and gated metric, ordered by
commit, one point per run with its repetitions kept; change points found by Apache Otava (E-Divisive means with
a t-test significance step, the method of Fleming et al., "Hunter", ICPE 2023). Reads runs; never measures.

Labels in the manner of the PyTorch HUD: `regression` / `improvement` (a change point at p <= max_pvalue and at
least min_magnitude in size, its direction from the schema), `suspicious` (a weak change point Otava found at its
relaxed first-pass threshold but that did not survive), `insufficient data` (a series too short to judge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.caseid import case_label
from bench.compare import CASE_KEYS, case_rows
from bench.errors import BadInput
from bench.runs import Run
from bench.schema import GATED
from bench.stats import case_values

# Tuned on this machine's noise (README, Regression tracking: tests/benchmarks/history_rates.py measured them).
MAX_PVALUE = 0.001
MIN_MAGNITUDE = 0.03  # a change point smaller than 3% of the mean is not reported as a regression
MIN_POINTS = 5
WINDOW = 30  # Otava's sliding window (points)
SOFTWARE_KEYS = ("torch", "transformers", "vllm", "cuda_runtime")


@dataclass
class Point:
    """One run's value of one metric of one case: the median of its repetitions (kept), its commit."""

    run: str
    commit: str
    order: str  # commit time, else the run's start: what the series is sorted by
    value: float
    reps: list[float]
    software: str  # torch/transformers/... versions, to mark a software change on the series


@dataclass
class ChangePoint:
    """A step in a series: between the last good and the first bad point, its size, direction, p and label."""

    index: int
    last_good: str
    first_bad: str
    change_pct: float  # +: the metric went up
    pvalue: float
    label: str  # regression | improvement | suspicious


@dataclass
class Series:
    """One case's metric on one machine over commits."""

    case: str
    metric: str
    machine: str
    points: list[Point] = field(default_factory=list)
    change_points: list[ChangePoint] = field(default_factory=list)
    label: str = ""  # insufficient data, or the newest change point's label, or ok

    def software_changes(self) -> list[int]:
        """The indices where the software (torch, transformers, ...) differs from the point before."""
        return [i for i in range(1, len(self.points)) if self.points[i].software != self.points[i - 1].software]


def _machine(run: Run) -> str:
    cpu = str(run.fingerprint().get("cpu") or "-")
    return run.device_name if run.device_name == cpu else f"{run.device_name} / {cpu}"


def _software(run: Run) -> str:
    versions = run.fingerprint().get("versions") or {}
    return ", ".join(f"{k} {versions[k]}" for k in SOFTWARE_KEYS if versions.get(k))


def _commit(run: Run) -> tuple[str, str]:
    """(commit, the order key): the commit time where run.json has one, else the run's start time."""
    git = run.fingerprint().get("git") or {}
    commit = str(git.get("commit") or "")[:10] or "-"
    when = git.get("commit_time") or run.meta.get("start") or run.name
    return commit, f"{when}|{run.meta.get('start') or run.name}"


def build_series(runs: list[Run]) -> list[Series]:
    """Every (case, machine, gated metric) series, points ordered by commit; runs on different machines never mix."""
    table: dict[tuple[str, str, str], Series] = {}
    for run in runs:
        rows = case_rows(run)
        if rows.empty:
            continue
        commit, order = _commit(run)
        machine, software = _machine(run), _software(run)
        for _, row in rows.iterrows():
            label = case_label(row)
            for metric, column in GATED.items():
                value = row.get(metric)
                if value is None or pd.isna(value):
                    continue
                reps = list(case_values(run, row["case"], column.sample)) if column.sample else []
                series = table.setdefault((label, machine, metric), Series(label, metric, machine))
                series.points.append(Point(run.name, commit, order, float(np.median(reps) if reps else value),
                                           [float(r) for r in reps], software))
    for series in table.values():
        series.points.sort(key=lambda p: p.order)
    return sorted(table.values(), key=lambda s: (s.machine, s.case, s.metric))


def detect(series: Series, max_pvalue: float = MAX_PVALUE, min_magnitude: float = MIN_MAGNITUDE) -> Series:
    """Change points of one series by Otava, each labelled from the schema's direction."""
    try:
        from otava.analysis import compute_change_points
    except ImportError:
        raise BadInput("bench history needs Apache Otava: pip install -e '.[history]' (apache-otava)") from None
    values = [p.value for p in series.points]
    if len(values) < MIN_POINTS:
        series.label = "insufficient data"
        return series
    direction = GATED[series.metric].direction
    strong, weak = compute_change_points(values, window_len=WINDOW, max_pvalue=max_pvalue, min_magnitude=0.0)
    found = []
    for cp in strong:
        before, after = float(cp.stats.mean_1), float(cp.stats.mean_2)
        change = (after - before) / abs(before) * 100 if before else math.nan
        if not math.isfinite(change):
            continue
        worse = (change < 0) if direction > 0 else (change > 0)
        label = ("regression" if worse else "improvement") if abs(change) >= min_magnitude * 100 else "suspicious"
        found.append(ChangePoint(cp.index, series.points[cp.index - 1].commit, series.points[cp.index].commit,
                                 change, float(cp.stats.pvalue), label))
    strong_at = {c.index for c in strong}
    for cp in weak or []:
        if cp.index not in strong_at and 0 < cp.index < len(values):
            before, after = float(cp.stats.mean_1), float(cp.stats.mean_2)
            change = (after - before) / abs(before) * 100 if before else math.nan
            if math.isfinite(change) and abs(change) >= min_magnitude * 100:
                found.append(ChangePoint(cp.index, series.points[cp.index - 1].commit, series.points[cp.index].commit,
                                         change, float(cp.stats.pvalue), "suspicious"))
    series.change_points = sorted(found, key=lambda c: c.index)
    strong_found = [c for c in series.change_points if c.label in ("regression", "improvement")]
    series.label = strong_found[-1].label if strong_found else "ok"
    return series


def history(runs: list[Run], max_pvalue: float = MAX_PVALUE, min_magnitude: float = MIN_MAGNITUDE) -> list[Series]:
    """Every series with its change points."""
    if not (0 < max_pvalue < 1) or not (0 <= min_magnitude < 10):
        raise BadInput("--max-pvalue must be in (0, 1) and --min-change in [0, 1000%)")
    return [detect(s, max_pvalue, min_magnitude) for s in build_series(runs)]


def open_change_points(all_series: list[Series]) -> pd.DataFrame:
    """The change points, newest first: case, metric, change, p, label, the commit range."""
    rows = []
    for s in all_series:
        for c in s.change_points:
            rows.append({"case": s.case, "metric": s.metric, "change %": round(c.change_pct, 1), "p": c.pvalue,
                         "label": c.label, "commits": f"{c.last_good}..{c.first_bad}",
                         "_order": s.points[c.index].order, "machine": s.machine})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("_order", ascending=False).drop(columns=["_order"]).reset_index(drop=True)


def failing(all_series: list[Series], fail_on: str) -> list[Series]:
    """The series whose newest change point carries the label asked to fail on (a regression still open)."""
    return [s for s in all_series if s.label == fail_on]  # a series' label is its newest strong change point


def trend_page(all_series: list[Series]) -> str:
    """An HTML page: one small plot per case and metric, its repetitions' spread, change points marked with
    their commits, software changes dashed."""
    import html

    from bench.htmlreport import _svg

    figures = []
    rank = {"regression": 0, "suspicious": 1, "improvement": 2}  # what needs a look first
    for i, s in enumerate(sorted(all_series, key=lambda s: rank.get(s.label, 3))):
        if not s.points:
            continue

        def draw(ax: Any, s: Series = s) -> bool:
            x = np.arange(len(s.points))
            y = np.array([p.value for p in s.points])
            lo = np.array([min(p.reps) if p.reps else p.value for p in s.points])
            hi = np.array([max(p.reps) if p.reps else p.value for p in s.points])
            ax.fill_between(x, lo, hi, alpha=0.2, label="repetitions (min to max)")
            ax.plot(x, y, marker="o", label=f"{s.metric} (median of each run)")
            for c in s.change_points:
                colour = {"regression": "red", "improvement": "green"}.get(c.label, "orange")
                ax.axvline(c.index - 0.5, color=colour, linestyle="-")
                ax.annotate(f"{c.label} {c.change_pct:+.1f}%\n{c.last_good}..{c.first_bad}", (c.index - 0.5, y.max()),
                            fontsize=8, color=colour)
            for j in s.software_changes():
                ax.axvline(j - 0.5, color="grey", linestyle="--")
            ax.set_xticks(x, [p.commit[:7] for p in s.points], rotation=60, fontsize=7)
            ax.set_xlabel("commit (oldest first)")
            ax.set_ylabel(f"{s.metric} ({GATED[s.metric].unit})")
            ax.set_title(f"{s.case}: {s.metric} on {s.machine}", fontsize=10)
            return True

        svg = _svg(f"trend-{i}", draw)
        figures.append(f'<figure class="plot" id="trend-{i}" data-label="{html.escape(s.label)}">{svg}</figure>')
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>claimbench trend</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2em; }} figure.plot svg {{ max-width: 100%; height: auto; }}
</style></head><body><h1>claimbench trend</h1>
<p>{len(all_series)} series; red: regression, green: improvement, orange: suspicious, dashed grey: software changed.</p>
{''.join(figures)}</body></html>"""


__all__ = ["CASE_KEYS", "ChangePoint", "Point", "Series", "build_series", "detect", "failing", "history",
           "open_change_points", "trend_page"]
