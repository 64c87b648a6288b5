"""The regression gate (`bench check`): a candidate run against a baseline or a history of runs, per case and
gated metric, judged on one value per repetition (bench.analysis.stats.judge). Reads results; never measures; returns
a GateResult that bench.report.terminal prints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.compare import CASE_KEYS, case_rows, fingerprint_summary
from bench.analysis.stats import FEW, PROPORTIONAL_TO, case_values, detectable_pct, judge
from bench.core.caseid import case_label
from bench.core.errors import BadInput
from bench.core.noise import kinds
from bench.core.schema import GATED, NAN
from bench.hardware.canary import divide_out, machine_change_pct, same_dtype
from bench.hardware.canary import speed as canary_speed
from bench.store.runs import Run, find_runs, load_run

DEFAULT_TOLERANCE_PCT = 10.0
DEFAULT_ALPHA = 0.01
# metric -> (direction: +1 higher is better / -1 lower is better, samples.csv column or None), from the schema.
METRICS: dict[str, tuple[int, str | None]] = {name: (c.direction, c.sample) for name, c in GATED.items()}
# The figures a slower or faster machine moves (times and rates): only these can be explained by the machine's
# canary. Peak memory or power is not the machine's speed, and dividing a speed out of it means nothing.
SPEED_UNITS = ("tok/s", "ms")
# A baseline that differs from the candidate in one of these is a comparison, not a baseline.
HARDWARE_KEYS = ("device", "driver", "cuda", "torch", "transformers", "vllm", "cpu")
ALL_PAIRS = "every candidate repetition worse than every baseline one"
RANK_TEST = "Mann-Whitney"
OUTPUT_RULE = "output check"  # a candidate whose timed path decoded something other than the model fails


@dataclass
class Finding:
    """One metric of one case, baseline against candidate: ok, regression or inconclusive, and why."""

    case: str
    metric: str
    baseline: float
    candidate: float
    worse_pct: float
    p_value: float
    verdict: str  # ok | regression | machine-drift | inconclusive
    note: str
    reps: tuple[int, int] = (0, 0)
    detectable_pct: float = math.nan  # the smallest slowdown the rule would have flagged with this noise
    rule: str = ""  # the decision rule that judged it: ALL_PAIRS, RANK_TEST, or "" (no per-repetition values)
    machine_pct: float = math.nan  # how much faster (+) / slower (-) the canary says the machine was

    @property
    def regression(self) -> bool:
        return self.verdict == "regression"


def _key(row: Any) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in CASE_KEYS)


def check(baseline: Run | list[Run], candidate: Run, tolerance_pct: dict[str, float],
          default_tol: float = DEFAULT_TOLERANCE_PCT, alpha: float = DEFAULT_ALPHA,
          metrics: list[str] | None = None) -> list[Finding]:
    """Every case of the candidate found in the baseline(s), per gated metric (or those named),
    judged on one value per repetition.

    Several baseline runs (a history) pool their repetitions per case. A metric without
    per-repetition samples is judged on its row values: a change beyond the tolerance is
    then inconclusive, never a regression (one value cannot show consistency).
    """
    baselines = baseline if isinstance(baseline, list) else [baseline]
    machine = machine_change_pct(same_dtype([b.meta for b in baselines], candidate.meta), canary_speed(candidate.meta))
    history: dict[tuple[str, ...], list[tuple[Run, pd.Series]]] = {}
    for run in baselines:
        for _, row in case_rows(run).iterrows():
            history.setdefault(_key(row), []).append((run, row))
    findings = []
    for _, crow in case_rows(candidate).iterrows():
        past = history.get(_key(crow))
        label = case_label(crow)
        if "wrong-output" in kinds(crow.get("warnings")):  # faster at the wrong answer is no speed-up
            kld = crow.get("check_kld_mean")
            was = [float(r["check_kld_mean"]) for _, r in past or [] if not pd.isna(r.get("check_kld_mean", NAN))]
            findings.append(Finding(label, "check_kld_mean", float(np.median(was)) if was else NAN,
                                    NAN if kld is None or pd.isna(kld) else float(kld), NAN, NAN, "regression",
                                    "the timed path's output disagrees with the model (wrong-output)",
                                    rule=OUTPUT_RULE))
        if not past:
            continue
        for metric, (direction, _sample) in METRICS.items():
            if metrics and metric not in metrics:
                continue
            c = crow.get(metric)
            values = [float(r[metric]) for _, r in past if metric in r and not pd.isna(r[metric])]
            if c is None or pd.isna(c) or not values:
                continue
            b = float(np.median(values))
            if b == 0:
                continue
            tol = tolerance_pct.get(metric, default_tol)
            xb = np.concatenate([_per_repetition(run, r, metric) for run, r in past])
            xc = _per_repetition(candidate, crow, metric)
            floor, rule = math.nan, ""
            if len(xb) and len(xc):
                verdict, worse, p, note = judge(xb, xc, direction, tol, alpha)
                floor = detectable_pct(xb, xc, direction, tol, alpha)
                rule = ALL_PAIRS if min(len(xb), len(xc)) < FEW else RANK_TEST
                if verdict == "regression" and math.isfinite(machine) and GATED[metric].unit in SPEED_UNITS:
                    verdict, note = _drift(xb, xc, direction, tol, alpha, machine, note)
            else:
                verdict, worse, p, note = judge(np.array(values), np.array([float(c)]), direction, tol, alpha)
                if verdict != "ok":
                    verdict, note = "inconclusive", f"worse by {worse:.1f}% (no per-repetition samples: not gated)"
            findings.append(Finding(label, metric, b, float(c), worse, p, verdict, note, (len(xb), len(xc)), floor,
                                    rule, machine))
    return findings


def _per_repetition(run: Run, row: pd.Series, metric: str) -> np.ndarray:
    """One value per repetition of the row's case: samples.csv's column for the metric, or, for a metric in
    proportion to a sampled one (tok/s per user to decode tok/s), that column scaled by the row's ratio."""
    column = GATED[metric].sample
    scale = 1.0
    if column is None and metric in PROPORTIONAL_TO:
        base = PROPORTIONAL_TO[metric]
        column = GATED[base].sample if base in GATED else None
        base_value = pd.to_numeric(row.get(base), errors="coerce")
        if column is None or pd.isna(base_value) or not base_value:
            return np.array([])
        scale = float(row[metric]) / float(base_value)
    if column is None:
        return np.array([])
    return case_values(run, row["case"], column).to_numpy(dtype=float) * scale


def _drift(xb: np.ndarray, xc: np.ndarray, direction: int, tol: float, alpha: float, machine: float,
           note: str) -> tuple[str, str]:
    """A regression judged again with the machine's change (the canary's) divided out of the candidate: only
    when that is within the tolerance did the machine move as much as the figure (machine-drift); a change the
    machine explains only in part stays a regression (a noisy canary must not hide one)."""
    verdict, worse, _p, _note = judge(xb, divide_out(xc, machine, direction), direction, tol, alpha)
    if verdict != "ok":
        return "regression", f"{note}; the machine's canary moved {machine:+.1f}%, {worse:.1f}% worse without it"
    return "machine-drift", (f"{note}, and the machine's canary moved {machine:+.1f}% (bandwidth and FLOP/s probe): "
                             f"{worse:+.1f}% with it divided out; rerun both on a quiet machine")


def parse_percent(text: str, what: str) -> float:
    """'10' or '10%' -> 10.0; '-5%' -> -5.0 (the candidate must be 5% better); anything else (nan, inf, -100%
    or less, not a number) is bad input."""
    raw = text.strip().removesuffix("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{what}: '{text[:80]}' is not a percentage (e.g. 10 or 10%)") from None
    if not math.isfinite(value) or value <= -100:
        raise BadInput(f"{what}: '{text[:80]}' must be a finite percentage above -100 (how much worse a figure may "
                       "get; negative: how much better it must get)")
    return value


def parse_tolerances(items: list[str]) -> tuple[float, dict[str, float]]:
    """'10' or '10%' sets the default; 'metric=3' or 'metric=3%' sets one metric (percent)."""
    default, per_metric = DEFAULT_TOLERANCE_PCT, {}
    for item in items:
        if "=" in item:
            key, value = (x.strip() for x in item.split("=", 1))
            if key not in METRICS:
                raise BadInput(f"--tolerance {item[:80]}: unknown metric '{key[:80]}' (gated: {', '.join(METRICS)})")
            per_metric[key] = parse_percent(value, f"--tolerance {item[:80]}")
        else:
            default = parse_percent(item, f"--tolerance {item[:80]}")
    return default, per_metric


def parse_alpha(value: float) -> float:
    """A significance level in (0, 0.5]."""
    if not (math.isfinite(value) and 0 < value <= 0.5):
        raise BadInput(f"--alpha {value:g}: must be in (0, 0.5]")
    return value


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """Findings as a table."""
    return pd.DataFrame([{
        "case": f.case, "metric": f.metric, "baseline": f.baseline, "candidate": f.candidate,
        "worse %": round(f.worse_pct, 2), "p": f.p_value, "verdict": f.verdict, "reps": f"{f.reps[0]}/{f.reps[1]}",
        "detectable %": round(f.detectable_pct, 1), "machine %": round(f.machine_pct, 1),
        "note": f.note,
    } for f in findings])


# --- the gate as a whole ------------------------------------------------------------------------


@dataclass
class GateResult:
    """What `bench check` decided, for a printer to render and the CLI to turn into an exit code."""

    findings: list[Finding]
    baselines: list[Run]
    warnings: list[str] = field(default_factory=list)  # baselines on other hardware or software
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT

    @property
    def frame(self) -> pd.DataFrame:
        return findings_frame(self.findings)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "regression"]

    @property
    def drifted(self) -> list[Finding]:
        """Regressions the machine's own change explains (bench.hardware.canary)."""
        return [f for f in self.findings if f.verdict == "machine-drift"]

    @property
    def inconclusive(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "inconclusive"]

    def rerun_advice(self) -> int | None:
        """The min_reps that would let the rank test judge the inconclusive cases that have repetitions to
        add to (None when every inconclusive one lacks per-repetition values: more of them cannot help)."""
        counted = [max(f.reps) for f in self.inconclusive if f.rule]
        return max(FEW, 2 * max(counted)) if counted else None

    def rules(self) -> list[str]:
        """The decision rules that found the regressions."""
        return sorted({f.rule for f in self.regressions if f.rule})


def baseline_history(specs: list[str], candidate: Run, newest: int) -> list[Run]:
    """The baseline runs: each run given, and from each results root (searched at any depth) the newest runs
    of the candidate's workload on the candidate's device (a root may hold other workloads' runs: they share
    no case)."""

    def workloads(run: Run) -> set[str]:
        return set(run.results["workload"].dropna().astype(str))

    runs: list[Run] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir() and not (path / "results.csv").exists():
            same = [r for r in (load_run(d) for d in find_runs(path))
                    if r.device_name == candidate.device_name and r.path.resolve() != candidate.path.resolve()
                    and workloads(r) & workloads(candidate)]
            if not same:
                raise BadInput(f"{path}: no run of {', '.join(sorted(workloads(candidate)))} on "
                               f"{candidate.device_name} to use as a baseline")
            runs.extend(same[-newest:])
        else:
            run = load_run(spec)
            if run.path.resolve() == candidate.path.resolve():
                raise BadInput(f"--baseline {spec} is the candidate run itself: nothing to gate")
            runs.append(run)
    return runs


def hardware_policy(baselines: list[Run], candidate: Run, require_same: bool) -> list[str]:
    """A warning per baseline taken on other hardware or software; BadInput when that is not allowed."""
    mine = fingerprint_summary(candidate)
    warnings = []
    for base in baselines:
        theirs = fingerprint_summary(base)
        differ = [k for k in HARDWARE_KEYS if theirs[k] != mine[k]]
        if differ:
            pairs = ", ".join(f"{theirs[k] or '-'} vs {mine[k] or '-'}" for k in differ)
            text = f"baseline {base.name} differs from the candidate in {', '.join(differ)} ({pairs})"
            if require_same:
                raise BadInput(text)
            warnings.append(f"{text}: this is a comparison, not a baseline")
    return warnings


def gate(baseline_specs: list[str], candidate_spec: str, tolerances: list[str], alpha: float,
         metrics: list[str] | None, history: int, require_same_hardware: bool) -> GateResult:
    """The whole gate: inputs checked, the baseline history chosen, the hardware policy applied, every shared
    case judged. A gate that could compare nothing is bad input, never a pass."""
    default, per_metric = parse_tolerances(tolerances)
    alpha = parse_alpha(alpha)
    unknown = [m for m in metrics or [] if m not in METRICS]
    if unknown:
        raise BadInput(f"--metric: unknown or ungated metric(s) {', '.join(unknown)} (gated: {', '.join(METRICS)})")
    if history < 1:
        raise BadInput(f"--history {history}: must be at least 1")
    candidate = load_run(candidate_spec)
    baselines = baseline_history(baseline_specs, candidate, history)
    warnings = hardware_policy(baselines, candidate, require_same_hardware)
    findings = check(baselines, candidate, per_metric, default, alpha, metrics)
    if not findings:
        raise BadInput(_nothing_shared(baselines, candidate))
    if not any(f.rule for f in findings):
        raise BadInput(f"no gated metric has per-repetition values on both sides ({len(findings)} figure(s) of "
                       f"{len({f.case for f in findings})} case(s) matched, none with samples.csv repetitions): "
                       "nothing could be judged; rerun both with bench run, which writes samples.csv")
    return GateResult(findings, baselines, warnings, default)


def _nothing_shared(baselines: list[Run], candidate: Run) -> str:
    """Why no case of the candidate was found in the baselines, in one line."""
    def cases(run: Run) -> set[str]:
        return {case_label(row) for _, row in case_rows(run).iterrows()}

    mine = cases(candidate)
    theirs = set().union(*(cases(b) for b in baselines)) if baselines else set()
    if not mine:
        return f"the candidate {candidate.name} has no ok case to gate"
    if not theirs:
        return "the baseline has no ok case to gate against"
    return (f"the baseline and the candidate share no case: nothing was checked (candidate: "
            f"{'; '.join(sorted(mine)[:2])}{' ...' if len(mine) > 2 else ''}; baseline: "
            f"{'; '.join(sorted(theirs)[:2])}{' ...' if len(theirs) > 2 else ''})")
