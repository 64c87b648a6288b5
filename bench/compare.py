"""Put runs side by side (`bench compare`) and gate regressions (`bench check`). Reads results; never measures."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.cost import usd_per_mtok_rented
from bench.errors import BadInput
from bench.runs import Run

CASE_KEYS = ["workload", "model", "engine", "dtype", "batch_size", "input_len", "output_len"]

# metric -> (direction: +1 higher is better / -1 lower is better, samples.csv column or None)
METRICS: dict[str, tuple[int, str | None]] = {
    "decode_tok_s": (+1, "decode_tok_s"),
    "prefill_tok_s": (+1, "prefill_tok_s"),
    "output_tok_s": (+1, "output_tok_s"),
    "decode_tok_s_per_user": (+1, None),
    "ttft_ms_p50": (-1, "ttft_ms"),
    "tpot_ms_p50": (-1, "tpot_ms"),
    "e2e_ms_p50": (-1, "e2e_ms"),
    "itl_ms_p99": (-1, None),
    "peak_mem_gb": (-1, None),
    "power_w_mean": (-1, None),
    "energy_j_per_token": (-1, None),
    "tok_s_per_w": (+1, None),
    "bandwidth_gb_s": (+1, None),
    "tflops": (+1, None),
}
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
    df = run.results[run.results["status"] == "ok"].copy()
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
    return table.reset_index(drop=True)


def long_form(table: pd.DataFrame, n_runs: int) -> pd.DataFrame:
    """One row per case and metric, with each run's value and its ratio to run 0 (readable in a terminal)."""
    metrics = sorted({c.split(" [")[0] for c in table.columns if " [" in c},
                     key=lambda m: list(table.columns).index(f"{m} [0]") if f"{m} [0]" in table else 0)
    rows = []
    for _, r in table.iterrows():
        case = f"{r['model']} {r['dtype']} bs={r['batch_size']} in={r['input_len']} out={r['output_len']}"
        for m in metrics:
            values = [r.get(f"{m} [{i}]", np.nan) for i in range(n_runs)]
            if all(pd.isna(v) for v in values):
                continue
            row = {"workload": r["workload"], "case": case, "metric": m}
            row.update({f"[{i}]": values[i] for i in range(n_runs)})
            row.update({f"x{i}/0": r.get(f"{m} x{i}/0", np.nan) for i in range(1, n_runs)})
            rows.append(row)
    return pd.DataFrame(rows)


# --- regression gate -------------------------------------------------------------------------


@dataclass
class Finding:
    """One metric of one case, baseline against candidate."""

    case: str
    metric: str
    baseline: float
    candidate: float
    worse_pct: float
    p_value: float
    regression: bool
    note: str


def _samples_for(run: Run, row: pd.Series, column: str) -> np.ndarray:
    s = run.samples
    if s.empty or column not in s.columns or "case" not in s.columns:
        return np.array([])
    return s.loc[s["case"] == row["case"], column].dropna().to_numpy(dtype=float)


def check(baseline: Run, candidate: Run, tolerance_pct: dict[str, float], default_tol: float = 5.0,
          alpha: float = 0.05) -> list[Finding]:
    """Every shared case and metric: a regression is worse by more than the tolerance AND significant.

    Significance: one-sided Mann-Whitney U on the raw repetitions (samples.csv).
    Without raw samples a change cannot be told from noise and is reported, not failed.
    """
    from scipy.stats import mannwhitneyu

    base, cand = _ok(baseline), _ok(candidate)
    merged = base.merge(cand, on=CASE_KEYS, suffixes=("_b", "_c"))
    findings = []
    for _, row in merged.iterrows():
        label = f"{row['workload']} {row['model']} {row['dtype']} bs={row['batch_size']} " \
                f"in={row['input_len']} out={row['output_len']}"
        for metric, (direction, sample_col) in METRICS.items():
            b, c = row.get(f"{metric}_b"), row.get(f"{metric}_c")
            if b is None or c is None or pd.isna(b) or pd.isna(c) or b == 0:
                continue
            worse = -direction * (c - b) / abs(b) * 100  # positive = got worse
            tol = tolerance_pct.get(metric, default_tol)
            p = math.nan
            note = ""
            if sample_col:
                xb = _samples_for(baseline, pd.Series({"case": row["case_b"]}), sample_col)
                xc = _samples_for(candidate, pd.Series({"case": row["case_c"]}), sample_col)
                if len(xb) >= 2 and len(xc) >= 2:
                    alternative = "less" if direction > 0 else "greater"  # candidate worse than baseline
                    p = float(mannwhitneyu(xc, xb, alternative=alternative).pvalue)
                else:
                    note = "too few raw samples to test significance"
            else:
                note = "no raw samples for this metric: tolerance only, not gated"
            significant = not math.isnan(p) and p <= alpha
            regression = worse > tol and significant
            if worse > tol and not significant and not note:
                note = f"worse by {worse:.1f}% but not significant (p={p:.3f})"
            findings.append(Finding(label, metric, float(b), float(c), worse, p, regression, note))
    return findings


def parse_tolerances(items: list[str]) -> tuple[float, dict[str, float]]:
    """'5' sets the default; 'metric=3' sets one metric (percent)."""
    default, per_metric = 5.0, {}
    for item in items:
        try:
            if "=" in item:
                key, value = item.split("=", 1)
                if key not in METRICS:
                    raise BadInput(f"--tolerance {item}: unknown metric '{key}' (known: {', '.join(METRICS)})")
                per_metric[key] = float(value)
            else:
                default = float(item)
        except ValueError:
            raise BadInput(f"--tolerance {item}: expected PERCENT or METRIC=PERCENT") from None
    return default, per_metric


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """Findings as a table."""
    return pd.DataFrame([{
        "case": f.case, "metric": f.metric, "baseline": f.baseline, "candidate": f.candidate,
        "worse %": round(f.worse_pct, 2), "p": f.p_value, "regression": f.regression, "note": f.note,
    } for f in findings])


def plot_compare(table: pd.DataFrame, runs: list[Run], path: str) -> None:
    """Bar charts of the main metrics per case, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("decode_tok_s", "ttft_ms_p50", "tpot_ms_p50", "energy_j_per_token")
               if f"{m} [0]" in table.columns and table[f"{m} [0]"].notna().any()]
    if not metrics:
        raise BadInput("nothing to plot: the runs share no measured case")
    fig, axes = plt.subplots(len(metrics), 1, figsize=(10, 3 * len(metrics)), squeeze=False)
    labels = [f"{r.model} bs{r.batch_size} {r.input_len}/{r.output_len}" for r in table.itertuples()]
    x = np.arange(len(table))
    width = 0.8 / len(runs)
    for ax, metric in zip(axes[:, 0], metrics):
        for i, run in enumerate(runs):
            col = f"{metric} [{i}]"
            if col in table:
                ax.bar(x + i * width, table[col], width, label=f"[{i}] {run.device_name}")
        ax.set_title(metric)
        ax.set_xticks(x + width * (len(runs) - 1) / 2, labels, rotation=30, ha="right", fontsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot write plot {path}: {exc}") from None
    finally:
        plt.close(fig)


def format_table(df: pd.DataFrame, fmt: str) -> str:
    """markdown | csv | html text of a DataFrame (numbers to 4 significant digits)."""
    shown = df.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "html":
        return shown.to_html(index=False, escape=True)
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    sep = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.astype(str).values]
    return "\n".join([header, sep, *body])


def rows_for_rich(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Columns and stringified rows for a rich table."""
    cols = [str(c) for c in df.columns]
    rows = []
    for values in df.itertuples(index=False):
        rows.append(["" if (isinstance(v, float) and math.isnan(v)) else (f"{v:.4g}" if isinstance(v, float)
                                                                          else str(v)) for v in values])
    return cols, rows


def as_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df.to_dict(orient="records")
