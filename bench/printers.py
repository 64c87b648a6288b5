"""Terminal output with rich: case lists, result tables, environment. Printing only, no measuring."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from bench.noise import doubts, summary
from bench.schema import COLUMNS, COMPACT_COLUMNS, SUMMARY_COLUMNS, header
from bench.workload import Case

# Columns shown in the terminal after a run (the CSV has them all): name, heading, format, from the schema.
SUMMARY: list[tuple[str, str, str]] = [(n, header(n), COLUMNS[n].fmt) for n in SUMMARY_COLUMNS]
COMPACT: list[tuple[str, str, str]] = [(n, header(n), COLUMNS[n].fmt) for n in COMPACT_COLUMNS]
IDENTITY = ("model", "dtype", "quant", "compile", "batch_size", "input_len", "output_len")

STATUS_STYLE = {"ok": "green", "oom": "yellow", "over_budget": "yellow", "skipped": "dim", "error": "red"}


def fmt(value: Any, pattern: str = "{}") -> str:
    """A cell: empty for unmeasured, formatted otherwise."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


# What a planned case is, as (parameter, heading); a microbenchmark has no model and no lengths.
PLAN_MODEL = (("model", "model"), ("engine", "engine"), ("dtype", "dtype"), ("quant", "quant"),
              ("compile", "compiled"), ("cache", "cache"), ("batch_size", "bs"), ("input_len", "in"),
              ("output_len", "out"), ("prefix_len", "prefix"), ("reuse", "reuse"), ("trial", "trial"))
PLAN_DEVICE = {"membw": (("size_mb", "MiB copied"),), "matmul": (("dtype", "dtype"), ("matmul_n", "n"))}
PLAN_QUIET = {"quant": "none", "compile": "false", "cache": "dynamic", "trial": "1"}  # defaults: not worth a word


def cases_table(cases: list[Case], title: str, kind: str = "generate") -> RenderableType:
    """The cases a run of this workload kind would measure (--dry-run): a column per parameter that differs
    between them, and those shared by every case in the heading, so 80 columns show every value whole."""
    spec = PLAN_DEVICE.get(kind, PLAN_MODEL)
    if kind != "prefix-reuse":
        spec = tuple(col for col in spec if col[0] not in ("prefix_len", "reuse"))  # not a prefix-reuse plan

    def text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    varying = [(key, head) for key, head in spec if len({text(c[key]) for c in cases}) > 1]
    shared = [f"{head} {text(cases[0][key])}" for key, head in spec if (key, head) not in varying
              and PLAN_QUIET.get(key) != text(cases[0][key])] if cases else []
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    table.add_column("#", justify="right")
    for _, head in varying:
        table.add_column(head, overflow="fold")
    for c in cases:
        table.add_row(str(c.index), *(text(c[key]) for key, _ in varying))
    heading = Text(title + (f"; every case: {', '.join(shared)}" if shared else ""), style="bold")
    return Group(heading, table) if varying else heading


def results_table(rows: Iterable[dict[str, Any]], title: str, wide: bool = False) -> Table:
    """The main metrics of each finished case; a row with warnings is marked "!" after its status.

    Compact (the default) fits an 80-column terminal: the key figures only, and an identity
    column whose value is the same in every row moves into the title. wide: every summary column.
    """
    rows = list(rows)
    spec = SUMMARY if wide else COMPACT
    shown = [c for c in spec if any(fmt(r.get(c[0])) for r in rows)]
    if not wide:
        constant = [c for c in shown if c[0] in IDENTITY and len({fmt(r.get(c[0])) for r in rows}) == 1]
        if constant:
            said = [_identity(c[0], rows[0].get(c[0])) for c in constant]
            said = [s for s in said if s]
            title += f" ({', '.join(said)})" if said else ""
            shown = [c for c in shown if c not in constant]
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    for _key, heading, pattern in shown:
        table.add_column(heading, justify="right" if pattern != "{}" else "left", overflow="fold")
    for r in rows:
        cells = []
        for key, _header, pattern in shown:
            text = fmt(r.get(key), pattern)
            if key == "status":
                mark = " !" if doubts(str(r.get("detail", ""))) else ""
                text = f"[{STATUS_STYLE.get(text, 'white')}]{text}[/]{mark}"
            cells.append(text)
        table.add_row(*cells)
    return table


def _identity(key: str, value: Any) -> str:
    """A constant identity column said in the title: 'tiny', 'in 64', 'compiled' (nothing when not compiled)."""
    if key == "compile":
        return "compiled" if str(value).lower() == "true" else ""
    if key in ("quant", "model") and value in (None, "", "none"):
        return ""  # no quantization; no model (a microbenchmark)
    if key == "quant":
        return f"{value} weights"
    label = {"batch_size": "bs", "input_len": "in", "output_len": "out"}.get(key)
    return f"{label} {fmt(value)}" if label else fmt(value)


def print_details(console: Console, rows: Iterable[dict[str, Any]]) -> None:
    """One line per case that did not end ok, saying why; then the warnings, each kind once, with what to do."""
    rows = list(rows)
    for r in rows:
        if r.get("status") != "ok":
            console.print(f"  case {r['case']}: {r['status']}: {r.get('detail', '')}", markup=False)
    lines = summary(rows, advisory=False)
    if lines:
        console.print("[yellow]warnings[/] (cases marked ! in the table; details in results.csv):")
        for line in lines:
            console.print(f"  {line}", markup=False)
    notes = summary(rows, advisory=True)
    if notes:
        console.print("notes (the figures stand; what the run can support):")
        for line in notes:
            console.print(f"  {line}", markup=False)
