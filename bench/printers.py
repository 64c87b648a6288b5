"""Terminal output with rich: case lists, result tables, environment. Printing only, no measuring."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.schema import COLUMNS, SUMMARY_COLUMNS, header
from bench.workload import Case

# Columns shown in the terminal after a run (the CSV has them all): name, heading, format, from the schema.
SUMMARY: list[tuple[str, str, str]] = [(n, header(n), COLUMNS[n].fmt) for n in SUMMARY_COLUMNS]

STATUS_STYLE = {"ok": "green", "oom": "yellow", "over_budget": "yellow", "skipped": "dim", "error": "red"}


def fmt(value: Any, pattern: str = "{}") -> str:
    """A cell: empty for unmeasured, formatted otherwise."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


def cases_table(cases: list[Case], title: str, uses_model: bool = True) -> Table:
    """The cases a run would measure (--dry-run); a device microbenchmark shows no model."""
    table = Table(title=title)
    if not uses_model:
        for name in ("#", "dtype", "size MB", "matmul n"):
            table.add_column(name)
        for c in cases:
            table.add_row(str(c.index), c["dtype"], str(c["size_mb"]), str(c["matmul_n"]))
        return table
    for name in ("#", "model", "engine", "dtype", "compile", "bs", "in", "out", "prefix", "reuse"):
        table.add_column(name)
    for c in cases:
        p = c.params
        table.add_row(str(c.index), p["model"], p["engine"], p["dtype"], str(p["compile"]).lower(),
                      str(p["batch_size"]), str(p["input_len"]), str(p["output_len"]),
                      str(p["prefix_len"]) if p["prefix_len"] else "", str(p["reuse"]).lower() if p["prefix_len"] else "")
    return table


def results_table(rows: Iterable[dict[str, Any]], title: str) -> Table:
    """The main metrics of each finished case."""
    rows = list(rows)
    shown = [c for c in SUMMARY if any(fmt(r.get(c[0])) for r in rows)]
    table = Table(title=title)
    for _key, heading, pattern in shown:
        table.add_column(heading, justify="right" if pattern != "{}" else "left")
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
