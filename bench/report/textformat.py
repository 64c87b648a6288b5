"""Text formats of analysis results: figures for people, markdown/csv/html tables, rich cells, the comparison's
long form and case labels factored for narrow tables. Formats; never computes a metric."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.claims import describe
from bench.core.caseid import case_label
from bench.core.figures import num
from bench.core.schema import COLUMNS

SAME_WITHIN = 0.01  # a ratio within 1% of 1 is "same": below what any repeated measurement resolves


def direction_word(metric: str, ratio: float) -> str:
    """'better', 'worse' or 'same' for a ratio of a metric to run 0, from the schema's direction ('' when the
    metric has no better direction or the ratio is missing)."""

    direction = COLUMNS[metric].direction if metric in COLUMNS else 0
    if not direction or ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return ""
    if abs(ratio - 1) < SAME_WITHIN:
        return "same"
    return "better" if (ratio > 1) == (direction > 0) else "worse"


def long_form(table: pd.DataFrame, n_runs: int) -> pd.DataFrame:
    """One row per case and metric, with each run's value, its ratio to run 0 and whether that is better or
    worse (readable in a terminal)."""
    metrics = sorted({c.split(" [")[0] for c in table.columns if " [" in c},
                     key=lambda m: list(table.columns).index(f"{m} [0]") if f"{m} [0]" in table else 0)
    if table.empty or not metrics:
        return pd.DataFrame()
    labels = [case_label(r, workload=False) for r in table.to_dict("records")]
    parts = []
    for order, m in enumerate(metrics):
        part = pd.DataFrame({"workload": table["workload"].to_numpy(), "case": labels, "metric": m,
                             "_row": np.arange(len(table)), "_metric": order})
        for i in range(n_runs):
            part[f"[{i}]"] = table[f"{m} [{i}]"].to_numpy() if f"{m} [{i}]" in table else np.nan
        for i in range(1, n_runs):
            ratios = table[f"{m} x{i}/0"].to_numpy() if f"{m} x{i}/0" in table else np.full(len(table), np.nan)
            part[f"x{i}/0"] = ratios
            part[f"{i} vs 0"] = [direction_word(m, float(x)) for x in ratios]
        parts.append(part[part[[f"[{i}]" for i in range(n_runs)]].notna().any(axis=1)])
    out = pd.concat(parts, ignore_index=True).sort_values(["_row", "_metric"], kind="stable")
    return out.drop(columns=["_row", "_metric"]).reset_index(drop=True)


def format_table(df: pd.DataFrame, fmt: str, header: list[str] | None = None) -> str:
    """markdown | csv | html text of a DataFrame (numbers to 4 significant digits), after header lines said
    in the format's own way (a list in HTML, '# ' comments in CSV, lines in markdown)."""
    if header:
        if fmt == "html":
            lines = "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in header) + "</ul>"
        else:
            lines = "\n".join(f"{'# ' if fmt == 'csv' else ''}{line}{'  ' if fmt == 'markdown' else ''}"
                              for line in header) + "\n"
        return lines + "\n" + format_table(df, fmt)
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


def verdict_rows(verdicts: list[Any]) -> list[dict[str, Any]]:
    """Plain rows for printing (rich, markdown, html)."""
    return [{
        "claim": v.claim.id,
        "claimed": f"{v.claim.comparison} {v.claim.figure:g} {v.claim.unit}",
        "measured": num(v.measured),
        "95% interval": f"{num(v.interval[0], 3)} to {num(v.interval[1], 3)}" if v.interval else "",
        "verdict": v.verdict,
        "roofline bound": f"{num(v.bound)} {v.claim.unit}" if v.bound == v.bound else "",
        "our conditions": describe(v.claim.conditions) if v.verdict != "not measured" or not v.conditions
        else v.conditions,
        "claim's scope": v.claim.scope,
        "where": v.where,
        "run / case": f"{v.run}: {v.conditions}" if v.run and v.verdict != "not measured" else v.run,
        "why": v.reason,
    } for v in verdicts]
