"""Terminal output with rich: case lists, result tables, environment. Printing only, no measuring."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.workload import Case

# Columns shown in the terminal after a run (the CSV has them all).
SUMMARY_COLUMNS: list[tuple[str, str, str]] = [
    ("case", "#", "{}"),
    ("model", "model", "{}"),
    ("dtype", "dtype", "{}"),
    ("compile", "compiled", "{}"),
    ("batch_size", "bs", "{}"),
    ("input_len", "in", "{}"),
    ("output_len", "out", "{}"),
    ("status", "status", "{}"),
    ("ttft_ms_p50", "TTFT p50 ms", "{:.1f}"),
    ("tpot_ms_p50", "TPOT p50 ms", "{:.2f}"),
    ("itl_ms_p99", "ITL p99 ms", "{:.2f}"),
    ("prefill_tok_s", "prefill tok/s", "{:.0f}"),
    ("decode_tok_s", "decode tok/s", "{:.1f}"),
    ("decode_tok_s_cv", "CV", "{:.1%}"),
    ("peak_mem_gb", "peak GB", "{:.2f}"),
    ("power_w_mean", "W", "{:.0f}"),
    ("energy_j_per_token", "J/tok", "{:.3g}"),
    ("mbu", "MBU", "{:.1%}"),
    ("mfu", "MFU", "{:.1%}"),
    ("goodput_frac", "goodput", "{:.0%}"),
    ("max_batch_meeting_slo", "max bs in SLO", "{:.0f}"),
    ("predicted_max_context", "pred. max ctx", "{:.0f}"),
    ("measured_max_context", "meas. max ctx", "{:.0f}"),
    ("ttft_speedup", "TTFT speedup", "{:.1f}x"),
    ("decode_slowdown", "last/first slice", "{:.2f}"),
    ("fits_budget", "fits", "{}"),
    ("bandwidth_gb_s", "GB/s", "{:.1f}"),
    ("tflops", "TFLOP/s", "{:.2f}"),
    ("tags", "tags", "{}"),
]

STATUS_STYLE = {"ok": "green", "oom": "yellow", "skipped": "dim", "error": "red"}


def fmt(value: Any, pattern: str = "{}") -> str:
    """A cell: empty for unmeasured, formatted otherwise."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


def cases_table(cases: list[Case], title: str) -> Table:
    """The cases a run would measure (--dry-run)."""
    table = Table(title=title)
    for name in ("#", "model", "engine", "dtype", "compile", "bs", "in", "out", "telemetry"):
        table.add_column(name)
    for c in cases:
        p = c.params
        table.add_row(str(c.index), p["model"], p["engine"], p["dtype"], str(p["compile"]).lower(),
                      str(p["batch_size"]), str(p["input_len"]), str(p["output_len"]), str(p["telemetry"]).lower())
    return table


def results_table(rows: Iterable[dict[str, Any]], title: str) -> Table:
    """The main metrics of each finished case."""
    rows = list(rows)
    shown = [c for c in SUMMARY_COLUMNS if any(fmt(r.get(c[0])) for r in rows)]
    table = Table(title=title)
    for _key, header, _pattern in shown:
        table.add_column(header, justify="right" if _pattern != "{}" else "left")
    for r in rows:
        cells = []
        for key, _header, pattern in shown:
            text = fmt(r.get(key), pattern)
            if key == "status":
                text = f"[{STATUS_STYLE.get(text, 'white')}]{text}[/]"
            cells.append(text)
        table.add_row(*cells)
    return table


def print_details(console: Console, rows: Iterable[dict[str, Any]]) -> None:
    """One line per case that did not end ok, saying why."""
    for r in rows:
        if r.get("status") != "ok":
            console.print(f"  case {r['case']}: {r['status']}: {r.get('detail', '')}")
