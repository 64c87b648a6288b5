"""Put runs side by side (`bench compare`) and gate regressions (`bench check`). Reads results; never measures."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.cost import usd_per_mtok_rented
from bench.errors import BadInput
from bench.runs import Run, case_label, ok_rows, param_text, with_case_params
from bench.schema import CASE_KEYS as SCHEMA_CASE_KEYS
from bench.schema import CASE_PARAMS, GATED

CASE_KEYS = [*SCHEMA_CASE_KEYS, *CASE_PARAMS]

# metric -> (direction: +1 higher is better / -1 lower is better, samples.csv column or None), from the schema.
METRICS: dict[str, tuple[int, str | None]] = {name: (c.direction, c.sample) for name, c in GATED.items()}
FINGERPRINT_KEYS = ["device", "driver", "cuda", "torch", "transformers", "vllm", "python", "cpu", "host"]


def fingerprint_summary(run: Run) -> dict[str, str]:
    """The fingerprint fields that decide whether two runs are comparable."""
    fp = run.fingerprint()
    versions = fp.get("versions", {}) or {}
    accel = (fp.get("accelerators") or [{}])[0] or {}
    return {
        "device": run.device_name,
        "driver": str(accel.get("driver") or ""),
        "cuda": str(versions.get("cuda_runtime") or accel.get("cuda_driver") or ""),
        "torch": str(versions.get("torch") or ""),
        "transformers": str(versions.get("transformers") or ""),
        "vllm": str(versions.get("vllm") or ""),
        "python": str(fp.get("python") or ""),
        "cpu": str(fp.get("cpu") or ""),
        "host": str(fp.get("host") or ""),
    }


def fingerprint_differences(runs: list[Run]) -> list[tuple[str, list[str]]]:
    """Fields whose values differ between runs, with each run's value."""
    summaries = [fingerprint_summary(r) for r in runs]
    return [(k, [s[k] for s in summaries]) for k in FINGERPRINT_KEYS if len({s[k] for s in summaries}) > 1]


def _ok(run: Run) -> pd.DataFrame:
    df = with_case_params(run, ok_rows(run))
    for key in CASE_KEYS:
        if key not in df.columns:
            df[key] = np.nan
    return df


def compare_table(runs: list[Run], metrics: list[str] | None = None, price_per_hour: float | None = None
                  ) -> pd.DataFrame:
    """One row per case present in the first run and any other; per metric each run's value and ratio to the first."""
    if len(runs) < 2:
        raise BadInput("compare needs at least two runs")
    unknown = [m for m in metrics or [] if m not in METRICS]
    if unknown:
        raise BadInput(f"--metrics: unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRICS)})")
    metrics = metrics or [m for m in METRICS if any(m in r.results.columns and r.results[m].notna().any()
                                                    for r in runs)]
    frames = []
    for i, run in enumerate(runs):
        df = _ok(run)
        if price_per_hour is not None and "output_tok_s" in df:
            df["usd_per_mtok"] = [usd_per_mtok_rented(t, price_per_hour) for t in df["output_tok_s"]]
        cols = [m for m in [*metrics, "usd_per_mtok"] if m in df.columns]
        df = df[CASE_KEYS + cols].drop_duplicates(CASE_KEYS, keep="last")
        frames.append(df.rename(columns={m: f"{m} [{i}]" for m in cols}))
    table = frames[0]
    for frame in frames[1:]:
        table = table.merge(frame, on=CASE_KEYS, how="left")
    if price_per_hour is not None:
        metrics = [*metrics, "usd_per_mtok"]
    for m in metrics:
        base = f"{m} [0]"
        for i in range(1, len(runs)):
            col = f"{m} [{i}]"
            if base in table and col in table:
                table[f"{m} x{i}/0"] = table[col] / table[base]
    ordered = CASE_KEYS + [c for m in metrics for c in table.columns if c.startswith(f"{m} [") or
                           c.startswith(f"{m} x")]
    table = table[[c for c in ordered if c in table.columns]]
    value_cols = [c for c in table.columns if c not in CASE_KEYS]
    table = table.dropna(how="all", subset=value_cols)
    # A case parameter at its default in every row says nothing; one that varies or is set stays.
    quiet = [k for k, default in CASE_PARAMS.items() if set(table[k]) <= {param_text(default), ""}]
    return table.drop(columns=quiet).reset_index(drop=True)


# --- regression gate -------------------------------------------------------------------------

DEFAULT_TOLERANCE_PCT = 10.0
DEFAULT_ALPHA = 0.01
FEW = 5  # below this many repetitions on either side, a rank test cannot reach alpha: require no overlap


@dataclass
class Finding:
    """One metric of one case, baseline against candidate: ok, regression or inconclusive, and why."""

    case: str
    metric: str
    baseline: float
    candidate: float
    worse_pct: float
    p_value: float
    verdict: str  # ok | regression | inconclusive
    note: str
    reps: tuple[int, int] = (0, 0)
    detectable_pct: float = math.nan  # the smallest slowdown the rule would have flagged with this noise

    @property
    def regression(self) -> bool:
        return self.verdict == "regression"


def _samples_for(run: Run, case: Any, column: str) -> np.ndarray:
    s = run.samples
    if s.empty or column not in s.columns or "case" not in s.columns:
        return np.array([])
    values = pd.to_numeric(s.loc[s["case"] == case, column], errors="coerce").dropna()
    return values.to_numpy(dtype=float)


def judge(xb: np.ndarray, xc: np.ndarray, direction: int, tol_pct: float, alpha: float
          ) -> tuple[str, float, float, str]:
    """(verdict, worse %, p, note) for one metric from its per-repetition values.

    Fail when the median is worse than the tolerance AND the slowdown is consistent:
    with fewer than 5 repetitions on either side every candidate repetition is worse
    than every baseline one; with 5 or more a one-sided Mann-Whitney test gives p < alpha.
    """
    from scipy.stats import mannwhitneyu

    b, c = float(np.median(xb)), float(np.median(xc))
    worse = -direction * (c - b) / abs(b) * 100 if b else math.nan  # positive = got worse
    if math.isnan(worse) or worse <= tol_pct:
        return "ok", worse, math.nan, ""
    n = min(len(xb), len(xc))
    if n < FEW:
        consistent = (xc.max() < xb.min()) if direction > 0 else (xc.min() > xb.max())
        p = math.nan
        why = "every candidate repetition worse than every baseline one" if consistent else \
            "the repetitions overlap"
    else:
        alternative = "less" if direction > 0 else "greater"  # candidate worse than baseline
        p = float(mannwhitneyu(xc, xb, alternative=alternative).pvalue)
        consistent = p < alpha
        why = f"Mann-Whitney p={p:.2g}" + ("" if consistent else f" >= alpha {alpha:g}")
    if consistent:
        return "regression", worse, p, f"worse by {worse:.1f}% ({why})"
    more = max(FEW, 2 * n)
    return "inconclusive", worse, p, (f"worse by {worse:.1f}% but not consistent ({why}, {len(xb)} vs {len(xc)} "
                                      f"repetitions): rerun both with --set min_reps={more}")


def _key(row: Any) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in CASE_KEYS)


def detectable_pct(xb: np.ndarray, xc: np.ndarray, direction: int, tol_pct: float, alpha: float) -> float:
    """The smallest uniform slowdown (%) of the candidate that `judge` would call a regression, keeping the
    spread of both sides as measured (the candidate re-centred on the baseline); inf if none would do."""
    if not len(xb) or not len(xc) or np.median(xc) == 0:
        return math.nan
    centred = xc * (np.median(xb) / np.median(xc))

    def flagged(pct: float) -> bool:
        factor = 1 + pct / 100
        shifted = centred / factor if direction > 0 else centred * factor
        return judge(xb, shifted, direction, tol_pct, alpha)[0] == "regression"

    lo, hi = tol_pct, 1000.0
    if not flagged(hi):
        return math.inf
    while hi - lo > 0.5:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if flagged(mid) else (mid, hi)
    return hi


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
    history: dict[tuple[str, ...], list[tuple[Run, pd.Series]]] = {}
    for run in baselines:
        for _, row in _ok(run).iterrows():
            history.setdefault(_key(row), []).append((run, row))
    findings = []
    for _, crow in _ok(candidate).iterrows():
        past = history.get(_key(crow))
        if not past:
            continue
        label = case_label(crow)
        for metric, (direction, sample_col) in METRICS.items():
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
            xb = np.concatenate([_samples_for(run, r["case"], sample_col) for run, r in past]) if sample_col \
                else np.array([])
            xc = _samples_for(candidate, crow["case"], sample_col) if sample_col else np.array([])
            floor = math.nan
            if len(xb) and len(xc):
                verdict, worse, p, note = judge(xb, xc, direction, tol, alpha)
                floor = detectable_pct(xb, xc, direction, tol, alpha)
            else:
                verdict, worse, p, note = judge(np.array(values), np.array([float(c)]), direction, tol, alpha)
                if verdict != "ok":
                    verdict, note = "inconclusive", f"worse by {worse:.1f}% (no per-repetition samples: not gated)"
            findings.append(Finding(label, metric, b, float(c), worse, p, verdict, note, (len(xb), len(xc)), floor))
    return findings


def parse_percent(text: str, what: str) -> float:
    """'10' or '10%' -> 10.0; anything else (nan, inf, negative, not a number) is bad input."""
    raw = text.strip().removesuffix("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{what}: '{text}' is not a percentage (e.g. 10 or 10%)") from None
    if not math.isfinite(value) or value < 0:
        raise BadInput(f"{what}: '{text}' must be a finite percentage >= 0")
    return value


def parse_tolerances(items: list[str]) -> tuple[float, dict[str, float]]:
    """'10' or '10%' sets the default; 'metric=3' or 'metric=3%' sets one metric (percent)."""
    default, per_metric = DEFAULT_TOLERANCE_PCT, {}
    for item in items:
        if "=" in item:
            key, value = (x.strip() for x in item.split("=", 1))
            if key not in METRICS:
                raise BadInput(f"--tolerance {item}: unknown metric '{key}' (gated: {', '.join(METRICS)})")
            per_metric[key] = parse_percent(value, f"--tolerance {item}")
        else:
            default = parse_percent(item, f"--tolerance {item}")
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
        "detectable %": round(f.detectable_pct, 1),
        "note": f.note,
    } for f in findings])
