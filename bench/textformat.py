"""Text formats of analysis results: figures for people, markdown/csv/html tables, rich cells, the comparison's
long form and case labels factored for narrow tables. Formats; never computes a metric."""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from bench.caseid import case_label


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
