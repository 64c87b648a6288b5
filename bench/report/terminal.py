"""Everything `bench` prints to a terminal, with rich: plans, result tables, lists, the environment, comparisons,
the gate and the verdicts. Printing only: no measuring, no analysis."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from bench.analysis.claims import describe, load_claims
from bench.analysis.history import open_change_points
from bench.core.noise import doubts, summary
from bench.core.params import CASE, CORE_PARAMS, IDENTITY
from bench.core.schema import COLUMNS, COMPACT_COLUMNS, SUMMARY_COLUMNS, header
from bench.engines import ENGINES
from bench.report.textformat import factor_cases, num, rows_for_rich
from bench.scenarios import scenario_for
from bench.spec.models import bundled_models, resolve_model
from bench.spec.suite import load_suite
from bench.spec.workload import Case, available_workloads, load_workload

# Columns shown in the terminal after a run (the CSV has them all): name, heading, format, from the schema.
SUMMARY: list[tuple[str, str, str]] = [(n, header(n), COLUMNS[n].fmt) for n in SUMMARY_COLUMNS]
COMPACT: list[tuple[str, str, str]] = [(n, header(n), COLUMNS[n].fmt) for n in COMPACT_COLUMNS]
# Identity columns of the result table: one whose value every row shares moves into the title.
TITLE_IDENTITY = tuple(k for k in IDENTITY if k in SUMMARY_COLUMNS)

STATUS_STYLE = {"ok": "green", "oom": "yellow", "over_budget": "yellow", "skipped": "dim", "error": "red"}


def fmt(value: Any, pattern: str = "{}") -> str:
    """A cell: empty for unmeasured, formatted otherwise."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


# What a planned case is, as (parameter, heading), from the parameters' declarations; a scenario without a
# model names its own (a membw plan has no model and no lengths).
PLAN = tuple((k, p.plan) for k, p in CORE_PARAMS.items() if p.plan)


def _quiet(key: str, text: str) -> bool:
    """A shared value not worth a word: a parameter at its default that a case label would not name either."""
    p = CORE_PARAMS[key]
    default = str(p.default).lower() if isinstance(p.default, bool) else str(p.default)
    return p.identity != CASE and text == default


def cases_table(cases: list[Case], title: str, keys: tuple[str, ...] | None = None) -> RenderableType:
    """The cases a run would measure (--dry-run): a column per parameter that differs between them, and those
    shared by every case in the heading, so 80 columns show every value whole. keys: the parameters the
    scenario's plan names (None: every declared plan parameter)."""
    spec = PLAN if keys is None else tuple((k, CORE_PARAMS[k].plan) for k in keys)

    def text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    varying = [(key, head) for key, head in spec if len({text(c[key]) for c in cases}) > 1]
    shared = [f"{head} {text(cases[0][key])}" for key, head in spec if (key, head) not in varying
              and not _quiet(key, text(cases[0][key]))] if cases else []
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
        constant = [c for c in shown if c[0] in TITLE_IDENTITY and len({fmt(r.get(c[0])) for r in rows}) == 1]
        if constant:
            said = [_identity(c[0], rows[0].get(c[0])) for c in constant]
            said = [s for s in said if s]
            title += f" ({', '.join(said)})" if said else ""
            shown = [c for c in shown if c not in constant]
    # At least as wide as its title (rich caps it at the terminal's width): a run whose every case failed has
    # two narrow columns, and its title would wrap a word a line.
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, min_width=len(title) + 2)
    for _key, heading, pattern in shown:
        table.add_column(heading, justify="right" if pattern != "{}" else "left", overflow="fold")
    for r in rows:
        cells = []
        for key, _header, pattern in shown:
            text = fmt(r.get(key), pattern)
            if key == "status":
                mark = " !" if doubts(r.get("warnings")) else ""
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


def answers(rows: list[dict[str, Any]], workload: Any) -> list[str]:
    """What the run answers, in a line per question, before its table: its workload kind's own answers
    (bench.scenarios: the longest context, a budget, a speedup, the SLO...)."""
    if workload is None or not rows:
        return []
    return scenario_for(workload).answers(rows)


def print_outcome(out: Console, console: Console, rows: list[dict[str, Any]], workload: Any, device: Any,
                  wide: bool) -> None:
    """A finished run: what it answers and its table on stdout, then why cases did not end ok and the warnings
    on stderr."""
    if rows:
        for line in answers(rows, workload):
            out.print(f"[bold]answer[/] {line}", highlight=False)
        out.print(results_table(rows, f"{workload.name} on {device.name}", wide))
        print_details(console, rows)


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


# --- consoles and generic tables -------------------------------------------------------------


def stdout_console() -> Console:
    """rich console for tables; wide when piped, so a saved log keeps every column."""
    if sys.stdout.isatty():
        return Console()
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() and int(columns) >= 40 else 200)


def print_frame(df: Any, title: str, columns: list[str] | None = None, whole: tuple[str, ...] = ()) -> None:
    """A table that folds long cells rather than cutting them; `columns`: only these (the compact view);
    `whole`: columns kept on one line besides the first (a verdict reads badly as "does not / hold")."""
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
        df, common = factor_cases(df)
        title += f": {common}" if common else ""
    cols, rows = rows_for_rich(df)
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    for i, c in enumerate(cols):  # the first column names the row: kept whole, the others fold
        table.add_column(c, overflow="fold", no_wrap=i == 0 or c in whole)
    for r in rows:
        table.add_row(*r)
    stdout_console().print(table)


# --- bench list ------------------------------------------------------------------------------


LIST_TABLE_MIN_WIDTH = 120  # narrower: workloads and claims as a list (a table there broke words mid-word)


def list_view(what: str, width: int) -> RenderableType:
    """`bench list`: a table where the terminal is wide; workloads and claims as a list where it is not, one
    heading line each and its text wrapped at words."""
    if width >= LIST_TABLE_MIN_WIDTH or what not in ("workloads", "claims"):
        return list_table(what)
    import textwrap

    entries: list[tuple[str, str, str]] = []  # (heading, what it answers or needs, text)
    if what == "workloads":
        title = "workloads (bench run --workload NAME)"
        for name, path in available_workloads().items():
            suite = load_suite(str(path))
            if suite is not None:
                entries.append((f"{name} (suite)", "steps: " + ", ".join(s.workload for s in suite.steps),
                                suite.description))
                continue
            w = load_workload(str(path))
            entries.append((f"{name} ({w.kind})", "claims: " + (", ".join(w.claims) or "none"), w.description))
    else:

        title = "claims (seeds/claims.toml: each with its source, metric and scope)"
        for c in load_claims():
            entries.append((f"{c.id}: {c.comparison} {c.figure:g} {c.unit}", "workloads: " + ", ".join(c.workloads),
                            ("conditions: " + describe(c.conditions).replace("|", " | ")) if c.conditions else ""))
    lines = [Text(title, style="bold"), Text("")]
    wrap = textwrap.TextWrapper(width=max(20, width - 1), subsequent_indent="    ", break_long_words=False,
                                break_on_hyphens=False)
    for heading, answers, text in entries:
        lines.append(Text(heading, style="bold"))
        for part in (answers, text):
            if part:
                lines.extend(Text(line) for line in wrap.wrap("  " + part))
    return Group(*lines)


def list_table(what: str) -> Table:
    """`bench list workloads|models|engines|claims` as a table."""
    if what == "workloads":
        table = Table(title="workloads", box=box.SIMPLE_HEAD)
        for col in ("name", "kind", "claims", "description"):  # the longest claim id fits on one line
            table.add_column(col, no_wrap=col == "name", overflow="fold", min_width=21 if col == "claims" else None)
        for name, path in available_workloads().items():
            suite = load_suite(str(path))
            if suite is not None:
                table.add_row(name, "suite", ", ".join(s.workload for s in suite.steps), suite.description)
                continue
            w = load_workload(str(path))
            table.add_row(name, w.kind, ", ".join(w.claims), w.description)
    elif what == "models":

        table = Table(title="bundled models (random weights; --model DIR for real ones)", box=box.SIMPLE_HEAD,
                      padding=(0, 1), collapse_padding=True)
        for col in ("name", "arch", "params", "layers", "kv heads", "head dim", "context", "KV/tok"):
            table.add_column(col, no_wrap=True, overflow="fold", justify="left" if col in ("name", "arch") else "right")
        for name in bundled_models():
            spec = resolve_model(name)
            s = spec.shape
            table.add_row(name, spec.config.architectures[0].removesuffix("ForCausalLM"), f"{s.params / 1e9:.2f} B",
                          str(s.layers), str(s.kv_heads), str(s.head_dim), str(s.max_position),
                          str(s.kv_bytes_per_token(2)))
        table.caption = "KV/tok: bytes of key and value cache per token in bf16, all layers"
    elif what == "claims":

        table = Table(title="claims (seeds/claims.toml: each with its source, metric and scope)",
                      box=box.SIMPLE_HEAD)
        for col in ("id", "claimed", "workloads", "conditions"):
            table.add_column(col, no_wrap=col == "id", overflow="fold")  # a long model list folds, never "…"
        for c in load_claims():
            table.add_row(c.id, f"{c.comparison} {c.figure:g} {c.unit}", ", ".join(c.workloads),
                          describe(c.conditions))
    else:
        table = Table(title="engines", box=box.SIMPLE_HEAD)
        table.add_column("name")
        table.add_column("implementation")
        for name, target in ENGINES.items():
            table.add_row(name, target)
    return table


# --- bench env -------------------------------------------------------------------------------


def print_env(info: dict[str, Any], device: Any, tried: list[str]) -> None:
    """`bench env`: host, device, versions, git, accelerators and what telemetry can read."""
    console = stdout_console()
    console.print(f"[bold]host[/] {info['host']}  {info['os']}  Python {info['python']}")
    console.print(f"[bold]cpu[/] {info['cpu']} x{info['cpu_count']}, RAM {info['ram_gb']:.1f} GB")
    console.print(f"[bold]device[/] {device} ({device.name}, {info.get('vendor') or 'vendor unknown'}), "
                  f"{device.total_memory_bytes / 1e9:.1f} GB; dtype {info['dtype_auto']}")
    console.print("[bold]versions[/] " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    git = info["git"]
    console.print(f"[bold]git[/] {git['commit'] or 'not a git checkout'}" + (" (dirty)" if git["dirty"] else ""))
    for d in info["torch_devices"]:
        console.print(f"[bold]torch {d['index']}[/] {d['name']} {d['memory_total_gb']:.1f} GB "
                      f"sm_{d['capability']} bf16={d['bf16']}")
    for acc in info["accelerators"]:
        console.print(f"[bold]{acc.get('device')}[/] " + ", ".join(
            f"{k}={v}" for k, v in acc.items() if k not in ("device", "unsupported") and v is not None))
    tel = info["telemetry"]
    console.print(f"[bold]telemetry[/] backend {tel['backend']}, energy: {tel['energy_method']}")
    for field, how in tel["capabilities"].items():
        console.print(f"  {field}: {how}")
    for line in tried:
        console.print(f"  [dim]not used: {line}[/]")
    for seen in info.get("accelerators_seen", []):
        if seen.get("error"):
            console.print(f"[bold red]{seen['backend']}[/] is installed but fails, so its cards (if any) are not "
                          f"seen: {seen['error']}", highlight=False)
            continue
        usable = "torch can use them" if seen["torch_usable"] else f"torch cannot use them yet: install {seen['install']}"
        console.print(f"[bold]{seen['backend']}[/] sees {', '.join(seen['devices'])}; {usable}", highlight=False)
        console.print(f"  reads: {', '.join(seen['readable']) or 'nothing'}", highlight=False)
        for field, why in seen["not_readable"].items():
            console.print(f"  [dim]{field}: {why}[/]", highlight=False)


# --- bench compare ---------------------------------------------------------------------------


def compare_compact(n_runs: int) -> list[str]:
    """Compare's compact view: the case, the metric, each run's value and its ratio, better or worse (no workload
    column)."""
    return ["case", "metric", *(f"[{i}]" for i in range(n_runs)), *(f"x{i}/0" for i in range(1, n_runs))]


COMPARE_ROWS = 60  # beyond this many case-metric lines the terminal shows a summary and the largest changes


def print_compare(header_lines: list[str], long: Any, n_runs: int, wide: bool) -> None:
    """`bench compare` in a terminal: which runs, how their fingerprints differ, then one line per case and
    metric with each ratio marked better or worse; a long comparison is summarised (per metric, how many
    cases got better or worse) with its largest changes, and --format csv gives every line."""
    import numpy as np

    for line in header_lines:
        print(line)
    if long.empty:
        return
    shown = long.copy()
    for i in range(1, n_runs):  # the word beside the ratio: a 10x slowdown never reads like any other number
        shown[f"x{i}/0"] = [f"{num(x)} {w}".strip() if x == x else "" for x, w in zip(shown[f"x{i}/0"],
                                                                                      shown[f"{i} vs 0"])]
    shown = shown.drop(columns=[f"{i} vs 0" for i in range(1, n_runs)])
    if len(shown) <= COMPARE_ROWS:
        print_frame(shown, "compare (x i/0: run i over run 0)", None if wide else compare_compact(n_runs))
        return
    summary_rows = []
    for metric, g in long.groupby("metric", sort=False):
        for i in range(1, n_runs):
            words = g[f"{i} vs 0"]
            ratios = g[f"x{i}/0"].to_numpy(dtype=float)
            ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
            summary_rows.append({"metric": metric, "run": f"{i} vs 0", "cases": len(ratios),
                                 "better": int((words == "better").sum()), "worse": int((words == "worse").sum()),
                                 "geo. mean x": float(np.exp(np.log(ratios).mean())) if len(ratios) else math.nan})
    import pandas as pd

    print_frame(pd.DataFrame(summary_rows), f"compare: {len(long)} case-metric lines, summarised")
    ratio = long["x1/0"].to_numpy(dtype=float) if n_runs > 1 else np.array([])
    if len(ratio):
        change = np.abs(np.log(np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)))
        top = shown.iloc[np.argsort(-change, kind="stable")[:20]]
        print_frame(top, "the 20 largest changes of run 1 over run 0", None if wide else compare_compact(n_runs))
    print(f"every line: bench compare ... --format csv ({len(long)} lines)")


# --- bench check -----------------------------------------------------------------------------

def _sayer() -> Any:
    """A print that wraps at words to the terminal's width (a plain print's long line was cut mid-word by the
    terminal at 80 columns)."""
    console = stdout_console()

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    return say


CHECK_COMPACT = ["case", "metric", "baseline", "candidate", "worse %", "p", "reps"]


def print_gate(result: Any, wide: bool) -> None:
    """`bench check`: the inconclusive changes with what would decide them, the regressions and the rule that
    found them, the smallest slowdown each case could have shown, and the one-line outcome."""
    say = _sayer()
    frame = result.frame
    regressions = frame[frame["verdict"] == "regression"]
    inconclusive = frame[frame["verdict"] == "inconclusive"]
    if not inconclusive.empty:
        print_frame(inconclusive, f"{len(inconclusive)} inconclusive change(s): beyond the tolerance, "
                                  "not consistent", None if wide else CHECK_COMPACT)
        more = result.rerun_advice()
        if more is not None:
            say(f"to decide: rerun both with --set min_reps={more} (5 or more repetitions a side "
                  "let a Mann-Whitney test judge)")
    if not regressions.empty:
        print_frame(regressions, f"{len(regressions)} regression(s)", None if wide else CHECK_COMPACT)
        if not wide:
            for rule in result.rules():
                say(f"judged by: {rule} (--wide shows each case's note)")
    drifted = frame[frame["verdict"] == "machine-drift"]
    if not drifted.empty:
        print_frame(drifted, f"{len(drifted)} change(s) the machine explains (machine-drift: its canary moved as "
                             "much)", None if wide else [*CHECK_COMPACT, "machine %"])
        say("machine-drift: not a regression of the code; --strict fails on it, a quiet machine decides it")
    floors = frame[frame["metric"].isin(["decode_tok_s", "ttft_ms_p50", "tpot_ms_p50"])].copy()
    tol = result.tolerance_pct
    if not floors.empty:
        if tol < 0:  # a required improvement: what it could catch is a shortfall from the target, not a slowdown
            floors["detectable %"] = floors["detectable %"] - tol
            title = f"smallest shortfall (%) from the required {-tol:g}% improvement this check could have caught"
        else:
            title = "smallest slowdown (%) this check could have caught, per case"
        per_case = floors.pivot_table(index="case", columns="metric", values="detectable %", aggfunc="first")
        per_case = per_case.reset_index()
        print_frame(per_case, title, list(per_case.columns))
    if regressions.empty:
        bound = f"every figure at least {-tol:g}% better" if tol < 0 else f"no consistent regression beyond {tol:g}%"
        say(f"ok: {len(frame)} metric(s) over {frame['case'].nunique()} case(s), {bound}"
              + (f"; {len(inconclusive)} inconclusive" if len(inconclusive) else "")
              + (f"; {len(drifted)} machine-drift" if len(drifted) else ""))


# --- bench verify ----------------------------------------------------------------------------

VERDICT_COMPACT = ["claim", "claimed", "measured", "95% interval", "verdict"]


def print_verdicts(frame: Any, title: str, wide: bool) -> None:
    """The verdict table: compact (and one line of scope and reason per claim below it), or every column."""
    if wide:
        print_frame(frame, title)
        return
    print_frame(frame, title, VERDICT_COMPACT, whole=("verdict",))
    console = stdout_console()
    for _, row in frame.iterrows():
        said = "; ".join(str(row[k]) for k in ("where", "why") if str(row.get(k, "")) not in ("", "nan"))
        if said:
            console.print(f"  {row['claim']}: {said}", markup=False, highlight=False)


# --- bench history ---------------------------------------------------------------------------


def print_history(all_series: list[Any]) -> None:
    """`bench history`: how many series and what they say, then the change points, newest first."""
    from collections import Counter

    counts = Counter(s.label for s in all_series)
    print(f"{len(all_series)} series: " + ", ".join(f"{n} {label}" for label, n in counts.most_common()))
    frame = open_change_points(all_series)
    if frame.empty:
        print("no change point")
        return
    drift = ["machine %"] if frame["machine %"].notna().any() else []  # where the runs took a canary
    print_frame(frame.drop(columns=["machine"]), "change points, newest first",
                ["case", "metric", "change %", "p", "label", "commits", *drift])
