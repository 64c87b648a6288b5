"""The statistics every analysis shares: one value per repetition of a case, the regression gate's
decision rule, and the confidence intervals of verdicts. Reads runs; never measures. Light to import
(scipy is imported where it is used), so the measuring loop may read FEW from here."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench.core.schema import COLUMNS, GATE_MIN_REPS

if TYPE_CHECKING:
    from bench.store.runs import Run

FEW = GATE_MIN_REPS  # below this many repetitions on either side a rank test cannot reach alpha: no overlap
CONFIDENCE = 0.95
# Metrics derived from one sampled column in proportion (same repetitions, scaled by a constant of the case).
PROPORTIONAL_TO = {"decode_tok_s_per_user": "decode_tok_s", "mbu": "decode_tok_s", "mfu": "prefill_tok_s"}


def case_values(run: Run, case: Any, column: str) -> pd.Series:
    """One value per repetition of a case (samples.csv); empty when the run has none."""
    samples = run.samples
    if samples.empty or column not in samples.columns or "case" not in samples.columns or pd.isna(case):
        return pd.Series(dtype=float)
    return pd.to_numeric(samples.loc[samples["case"] == case, column], errors="coerce").dropna()


def per_repetition(metric: str) -> str | None:
    """The samples.csv column with one value per repetition of a metric, or None (then a gate cannot judge it
    and an interval comes, if at all, from the metric it is proportional to)."""
    return COLUMNS[metric].sample if metric in COLUMNS else None


def judge(xb: np.ndarray, xc: np.ndarray, direction: int, tol_pct: float, alpha: float
          ) -> tuple[str, float, float, str]:
    """(verdict, worse %, p, note) for one metric from its per-repetition values.

    Fail when the median is worse than the tolerance AND the slowdown is consistent: one repetition on
    either side is never consistent (inconclusive); with fewer than 5 every candidate repetition is worse
    than every baseline one; with 5 or more a one-sided Mann-Whitney test gives p < alpha.
    A negative tolerance asks for an improvement: the candidate is then judged against the
    baseline's repetitions moved by that much in the better direction (the target it must reach).
    """
    from scipy.stats import mannwhitneyu

    b, c = float(np.median(xb)), float(np.median(xc))
    worse = -direction * (c - b) / abs(b) * 100 if b else math.nan  # positive = got worse
    if math.isnan(worse) or worse <= tol_pct:
        return "ok", worse, math.nan, ""
    if tol_pct < 0:
        xb = xb * (1 - direction * tol_pct / 100)  # the target: tol_pct better than the baseline
    n = min(len(xb), len(xc))
    if n < 2:  # one value against one is no consistency: a single slow repetition would fail the gate
        return "inconclusive", worse, math.nan, (f"worse by {worse:.1f}% but one repetition cannot show a "
                                                 f"consistent change ({len(xb)} vs {len(xc)} repetitions): "
                                                 f"rerun both with --set min_reps={FEW}")
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



def confidence_interval(run: Run, row: pd.Series, metric: str) -> tuple[float, float] | None:
    """95% t-interval of the mean of the row's repetitions for this metric (samples.csv), or None.

    A metric derived in proportion from a sampled one (MBU from decode tok/s) gets that
    column's interval scaled by the row's ratio of the two.
    """
    from scipy import stats

    if metric == "ttft_speedup":
        return _speedup_interval(run, row)
    source = per_repetition(metric)
    scale = 1.0
    if source is None and metric in PROPORTIONAL_TO:
        base = PROPORTIONAL_TO[metric]
        source = COLUMNS[base].sample
        if not row.get(base) or pd.isna(row.get(base)) or pd.isna(row.get(metric)):
            return None
        scale = float(row[metric]) / float(row[base])
    if source is None:
        return None
    values = case_values(run, row.get("case"), source) * scale
    n = len(values)
    if n < 2:
        return None
    mean, sem = float(values.mean()), float(values.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sem
    return mean - half, mean + half


def _speedup_interval(run: Run, row: pd.Series) -> tuple[float, float] | None:
    """TTFT recomputing / TTFT reusing, from both cases' repetitions: the ratio of means with a
    95% interval from the standard error of its logarithm (delta method)."""
    from scipy import stats

    keys = [k for k in ("model", "engine", "dtype", "quant", "compile", "cache", "batch_size", "input_len",
                        "output_len", "prefix_len") if k in run.results.columns]
    same = (run.results[keys] == row[keys]).all(axis=1) & run.results["ttft_speedup"].isna()
    recompute = run.results[same & (run.results["status"] == "ok")]
    if recompute.empty:
        return None
    cold, warm = case_values(run, recompute.iloc[0]["case"], "ttft_ms"), case_values(run, row.get("case"), "ttft_ms")
    if len(cold) < 2 or len(warm) < 2 or cold.mean() <= 0 or warm.mean() <= 0:
        return None
    ratio = float(cold.mean() / warm.mean())
    se_log = math.sqrt(cold.var(ddof=1) / len(cold) / cold.mean() ** 2 + warm.var(ddof=1) / len(warm) / warm.mean() ** 2)
    t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, min(len(cold), len(warm)) - 1))
    return ratio * math.exp(-t * se_log), ratio * math.exp(t * se_log)
