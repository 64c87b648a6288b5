"""Rendering of analysis results: markdown/csv/html text, rich cells, the comparison's long form and plot.

Formats and draws; never computes a metric (that is compare.py, verify.py and cost.py).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.errors import BadInput
from bench.runs import Run, case_label
from bench.runs import labels as run_labels
from bench.schema import COLUMNS


def num(value: object, digits: int = 4) -> str:
    """A figure for people: `digits` significant digits, but a number with more whole digits than that
    in full (131056 tokens, 135915 ms, never 1.311e+05); "" for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    v = float(value)  # type: ignore[arg-type]
    text = f"{v:.{digits}g}"
    return f"{v:.0f}" if "e+" in text and abs(v) < 1e15 else text


def long_form(table: pd.DataFrame, n_runs: int) -> pd.DataFrame:
    """One row per case and metric, with each run's value and its ratio to run 0 (readable in a terminal)."""
    metrics = sorted({c.split(" [")[0] for c in table.columns if " [" in c},
                     key=lambda m: list(table.columns).index(f"{m} [0]") if f"{m} [0]" in table else 0)
    rows = []
    for _, r in table.iterrows():
        case = case_label(r, workload=False)
        for m in metrics:
            values = [r.get(f"{m} [{i}]", np.nan) for i in range(n_runs)]
            if all(pd.isna(v) for v in values):
                continue
            row = {"workload": r["workload"], "case": case, "metric": m}
            row.update({f"[{i}]": values[i] for i in range(n_runs)})
            row.update({f"x{i}/0": r.get(f"{m} x{i}/0", np.nan) for i in range(1, n_runs)})
            rows.append(row)
    return pd.DataFrame(rows)



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
    cases = pd.DataFrame({"case": [case_label(r, workload=len(set(table["workload"])) > 1)
                                   for _, r in table.iterrows()]})
    short, common = factor_cases(cases)  # each bar says what sets its case apart; the rest is the title
    ticks = list(short["case"]) if "case" in short else [common] * len(table)
    if common:
        fig.suptitle(common, fontsize=9)
    names = run_labels(runs)
    x = np.arange(len(table))
    width = 0.8 / len(runs)
    for ax, metric in zip(axes[:, 0], metrics):
        for i, run in enumerate(runs):
            col = f"{metric} [{i}]"
            if col in table:
                ax.bar(x + i * width, table[col], width, label=f"[{i}] {names[run.name]}")
        ax.set_title(metric)
        ax.set_ylabel(COLUMNS[metric].unit)
        ax.set_xticks(x + width * (len(runs) - 1) / 2, ticks, rotation=30, ha="right", fontsize=7)
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
            shown[col] = shown[col].map(num)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "html":
        return shown.to_html(index=False, escape=True)
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    sep = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.astype(str).values]
    return "\n".join([header, sep, *body])


def factor_cases(frame: pd.DataFrame, column: str = "case") -> tuple[pd.DataFrame, str]:
    """Case labels for a narrow terminal: the words every label shares go to the caller's title (returned),
    each label keeps what sets it apart, and a label repeating the row above is left blank."""
    if column not in frame.columns or frame.empty:
        return frame, ""
    words = [str(label).split() for label in frame[column]]
    common = [w for w in words[0] if all(w in other for other in words[1:])]
    short = [" ".join(w for w in ws if w not in common) for ws in words]
    out = frame.copy()
    out[column] = ["" if i and s == short[i - 1] else s for i, s in enumerate(short)]
    if not any(out[column]):
        out = out.drop(columns=[column])
    return out, " ".join(common)


def rows_for_rich(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Columns and stringified rows for a rich table."""
    cols = [str(c) for c in df.columns]
    rows = []
    for values in df.itertuples(index=False):
        rows.append([num(v) if isinstance(v, float) else str(v) for v in values])
    return cols, rows
