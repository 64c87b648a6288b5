"""Regression tracking over a history (`bench history`): a series per case, hardware and gated metric, ordered by
commit, one point per run with its repetitions kept; change points found by Apache Otava (E-Divisive means with
a t-test significance step, the method of Fleming et al., "Hunter", ICPE 2023). Reads runs; never measures.

Labels in the manner of the PyTorch HUD: `regression` / `improvement` (a change point at p <= max_pvalue and at
least min_magnitude in size, its direction from the schema), `suspicious` (a weak change point Otava found at its
relaxed first-pass threshold but that did not survive), `insufficient data` (a series too short to judge), and
`machine-drift`: a regression that the machine's own canary (bench.hardware.canary) moved as much as, across the same step.
"""

from __future__ import annotations

import csv
import functools
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.compare import CASE_KEYS
from bench.core.caseid import case_label, param_text
from bench.core.errors import BadInput, first_line
from bench.core.params import CASE_PARAMS, IDENTITY
from bench.core.schema import GATED, SCHEMA_VERSION
from bench.hardware.canary import dtype as canary_matmul_dtype
from bench.hardware.canary import speed as canary_speed
from bench.store.results import read_meta, results_csv_path
from bench.store.runs import case_param_fills

# Tuned on this machine's noise (README, Regression tracking: tests/benchmarks/history_rates.py measured them).
MAX_PVALUE = 0.001
MIN_MAGNITUDE = 0.03  # a change point smaller than 3% of the mean is not reported as a regression
MIN_POINTS = 5
WINDOW = 30  # Otava's sliding window (points)
SOFTWARE_KEYS = ("torch", "transformers", "vllm", "cuda_runtime")
IDENTITY_TEXT = (*CASE_KEYS, *CASE_PARAMS)  # what makes a row's case label, with the metrics a label names
LABEL_IF_METRICS = tuple(sorted({p.label_if for p in IDENTITY.values() if p.label_if} - set(IDENTITY)))


@dataclass
class Point:
    """One run's value of one metric of one case: the median of its repetitions (kept), its commit."""

    run: str
    commit: str  # the commit's first 10 characters, else (a run made outside a git checkout) the run's name
    order: str  # commit time, else the run's start: what the series is sorted by
    value: float
    reps: list[float]
    software: str  # torch/transformers/... versions, to mark a software change on the series
    canary: float = math.nan  # the machine's speed index during the run (bench.hardware.canary), NaN when not taken
    canary_dtype: str = ""  # its matmul's dtype: canaries of two dtypes are not compared


@dataclass
class ChangePoint:
    """A step in a series: between the last good and the first bad point, its size, direction, p and label."""

    index: int
    last_good: str
    first_bad: str
    change_pct: float  # +: the metric went up
    pvalue: float
    label: str  # regression | improvement | suspicious | machine-drift
    machine_pct: float = math.nan  # the canary's change across the same step, where both sides have one


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


@dataclass
class RunRecord:
    """What a history needs of one run, read without pandas (a history holds thousands of runs): its ok rows
    (case parameters as text, gated metrics as numbers), its repetitions per case, run.json."""

    name: str
    path: Path
    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    samples: dict[str, dict[str, list[float]]]  # case -> samples.csv column -> one value per repetition
    device_name: str = "unknown"

    def fingerprint(self) -> dict[str, Any]:
        return self.meta.get("fingerprint", {}) or {}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """A CSV we wrote, as dicts, checked as read_results checks it: complete lines, one width."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({first_line(exc)})") from None
    if not text.strip():
        return []
    if not text.endswith("\n"):
        raise BadInput(f"{path}: last line is incomplete: truncated file")
    rows = list(csv.reader(text.splitlines()))
    header = rows[0]
    for number, row in enumerate(rows[1:], start=2):
        if row and len(row) != len(header):
            raise BadInput(f"{path}: line {number} has {len(row)} fields, the header {len(header)}: truncated")
    return [dict(zip(header, row)) for row in rows[1:] if row]


def _number(text: str, path: Path, column: str) -> float:
    """A numeric cell: empty is NaN; anything but a finite number is a corrupt file."""
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadInput(f"{path}: column {column}: {text[:80]!r} is not a finite number")
    return value


@functools.lru_cache(maxsize=4096)  # a history repeats a few dozen values thousands of times
def _text(value: str) -> str:
    try:
        return param_text(float(value))  # '8' and '8.0' are one batch size, as pandas reads them
    except ValueError:
        return param_text(value)


def read_record(spec: str | Path) -> RunRecord:
    """One run for a history (the light counterpart of runs.load_run; BadInput with the reason)."""
    path = results_csv_path(spec)
    results = _csv_rows(path)
    if not results or any(c not in results[0] for c in ("schema_version", "status", "workload", "model")):
        raise BadInput(f"{path}: no result rows, or not a claimbench results.csv")
    if any(_number(r["schema_version"], path, "schema_version") > SCHEMA_VERSION for r in results):
        raise BadInput(f"{path}: schema version newer than this claimbench understands ({SCHEMA_VERSION})")
    directory = path.parent
    meta = read_meta(directory / "run.json") if (directory / "run.json").is_file() else {}
    fills = case_param_fills(meta)
    rows = []
    for raw in results:
        if raw["status"] != "ok":
            continue
        row: dict[str, Any] = {k: _text(raw.get(k, "")) for k in CASE_KEYS}
        for name, (fill, varied) in fills.items():
            if name == "reuse" and name not in raw and varied and "ttft_speedup" in raw:
                row[name] = param_text(raw["ttft_speedup"] != "")  # an older prefix-reuse row
            else:
                row[name] = _text(raw.get(name, "")) or param_text(fill)
        row.update({m: _number(raw.get(m, ""), path, m) for m in (*GATED, *LABEL_IF_METRICS)})
        row["case"] = raw.get("case", "")
        rows.append(row)
    samples: dict[str, dict[str, list[float]]] = {}
    wanted = {c.sample for c in GATED.values() if c.sample}
    if (directory / "samples.csv").is_file():
        for raw in _csv_rows(directory / "samples.csv"):
            per_case = samples.setdefault(raw.get("case", ""), {})
            for column in wanted & raw.keys():
                value = _number(raw[column], directory / "samples.csv", column)
                if math.isfinite(value):
                    per_case.setdefault(column, []).append(value)
    names = [r.get("device_name") for r in results if r.get("device_name")]
    name = directory.name if path.name == "results.csv" else path.stem
    return RunRecord(name, directory, meta, rows, samples, names[0] if names else "unknown")


def _machine(run: RunRecord) -> str:
    cpu = str(run.fingerprint().get("cpu") or "-")
    return run.device_name if run.device_name == cpu else f"{run.device_name} / {cpu}"


def _software(run: RunRecord) -> str:
    versions = run.fingerprint().get("versions") or {}
    return ", ".join(f"{k} {versions[k]}" for k in SOFTWARE_KEYS if versions.get(k))


def _commit(run: RunRecord) -> tuple[str, str]:
    """(where the point is, the order key): the commit and its time where run.json has one, else the run's name
    and its start time (a run made outside a git checkout names no commit)."""
    git = run.fingerprint().get("git") or {}
    commit = str(git.get("commit") or "")[:10]
    when = (git.get("commit_time") if commit else None) or run.meta.get("start") or run.name
    return commit or run.name, f"{when}|{run.meta.get('start') or run.name}"


def without_commit(runs: list[RunRecord]) -> int:
    """How many runs name no commit (made outside a git checkout): their points are ordered by start time."""
    return sum(1 for run in runs if not str((run.fingerprint().get("git") or {}).get("commit") or ""))


def ordering(runs: list[RunRecord]) -> str:
    """What the series' x axis is, in words, for the terminal and the trend page."""
    missing = without_commit(runs)
    if not missing:
        return "commit (oldest first)"
    if missing == len(runs):
        return "run, by start time (the runs name no commit: made outside a git checkout)"
    return f"commit, else run start time ({missing} of {len(runs)} runs name no commit)"


def build_series(runs: list[RunRecord]) -> list[Series]:
    """Every (case, machine, gated metric) series, points ordered by commit; runs on different machines never mix."""
    table: dict[tuple[str, str, str], Series] = {}
    labels: dict[tuple[Any, ...], str] = {}  # one label per identity: thousands of runs share a few cases
    for run in runs:
        if not run.rows:
            continue
        commit, order = _commit(run)
        machine, software, canary = _machine(run), _software(run), canary_speed(run.meta)
        canary_dtype = canary_matmul_dtype(run.meta)
        for row in run.rows:
            identity = tuple(row[k] for k in IDENTITY_TEXT) + tuple(math.isfinite(row.get(m, math.nan))
                                                                     for m in LABEL_IF_METRICS)
            label = labels.get(identity) or labels.setdefault(identity, case_label(row))
            samples = run.samples.get(row["case"], {})
            for metric, column in GATED.items():
                value = row.get(metric)
                if value is None or math.isnan(value):
                    continue
                reps = samples.get(column.sample, []) if column.sample else []
                series = table.setdefault((label, machine, metric), Series(label, metric, machine))
                series.points.append(Point(run.name, commit, order, float(statistics.median(reps) if reps else value),
                                           [float(r) for r in reps], software, canary, canary_dtype))
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
    _machine_drift(series, found, [c.index for c in strong], direction, min_magnitude)
    strong_at = {c.index for c in strong}
    for cp in weak or []:
        if cp.index not in strong_at and 0 < cp.index < len(values):
            before, after = float(cp.stats.mean_1), float(cp.stats.mean_2)
            change = (after - before) / abs(before) * 100 if before else math.nan
            if math.isfinite(change) and abs(change) >= min_magnitude * 100:
                found.append(ChangePoint(cp.index, series.points[cp.index - 1].commit, series.points[cp.index].commit,
                                         change, float(cp.stats.pvalue), "suspicious"))
    series.change_points = sorted(found, key=lambda c: c.index)
    strong_found = [c for c in series.change_points if c.label in ("regression", "improvement", "machine-drift")]
    series.label = strong_found[-1].label if strong_found else "ok"
    return series


def _machine_drift(series: Series, found: list[ChangePoint], steps: list[int], direction: int,
                   min_magnitude: float) -> None:
    """A regression whose segments' canaries moved as much as the figure: relabelled machine-drift (the step
    left after dividing out the machine's change is under min_magnitude, or goes the other way)."""
    bounds = [0, *sorted(steps), len(series.points)]
    for c in found:
        if c.label != "regression" or c.index not in bounds:
            continue
        k = bounds.index(c.index)
        before = [p for p in series.points[bounds[k - 1]:c.index] if math.isfinite(p.canary)]
        after = [p for p in series.points[c.index:bounds[k + 1]] if math.isfinite(p.canary)]
        if not before or not after or len({p.canary_dtype for p in before + after}) > 1:
            continue
        before, after = [p.canary for p in before], [p.canary for p in after]
        c.machine_pct = (float(np.mean(after)) / float(np.mean(before)) - 1) * 100
        ratio = 1 + c.change_pct / 100  # the figure's after/before
        left = ratio / (1 + c.machine_pct / 100) if direction > 0 else ratio * (1 + c.machine_pct / 100)
        still_worse = (left - 1 < -min_magnitude) if direction > 0 else (left - 1 > min_magnitude)
        if not still_worse:
            c.label = "machine-drift"


def history(runs: list[RunRecord], max_pvalue: float = MAX_PVALUE, min_magnitude: float = MIN_MAGNITUDE) -> list[Series]:
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
                         "machine %": round(c.machine_pct, 1),
                         "_order": s.points[c.index].order, "machine": s.machine})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("_order", ascending=False).drop(columns=["_order"]).reset_index(drop=True)


def failing(all_series: list[Series], fail_on: str, strict: bool = False) -> list[Series]:
    """The series whose newest change point carries the label asked to fail on (a regression still open);
    strict: a regression the machine's drift explains too."""
    labels = {fail_on, "machine-drift"} if strict else {fail_on}
    return [s for s in all_series if s.label in labels]  # a series' label is its newest strong change point


__all__ = ["CASE_KEYS", "ChangePoint", "Point", "RunRecord", "Series", "build_series", "detect", "failing", "history",
           "open_change_points", "ordering", "read_record", "without_commit"]
