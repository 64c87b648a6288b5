"""The `bench` command: parse, call, print, exit code. Nothing else.

Exit codes: 0 ok (oom/skipped cases are results), 1 a case errored or a check
failed, 2 bad input (one line on stderr, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.errors import BadInput

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (finished rows kept, run.json completed) but exiting 143."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as BadInput (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{self.prog}: {message}")


def _price(text: str) -> float:
    """--price-per-hour: a finite, positive US$ figure."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"'{text}' must be a positive number of US$ per hour")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Check LLM inference claims on the hardware you have.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="run a workload and write results/<run_id>/")
    run.add_argument("--workload", default="quick", help="bundled workload name or a TOML file (default: quick)")
    run.add_argument("--model", help="bundled model name or a local HF directory (overrides the workload)")
    run.add_argument("--engine", help="transformers | vllm | openai")
    run.add_argument("--device", help="auto | cpu | cuda | cuda:N | xpu | mps")
    run.add_argument("--dtype", help="auto | float32 | bfloat16 | float16")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override any workload key (repeatable); VALUE may be a list: 1,8,32")
    run.add_argument("--quick", action="store_true", help="shrink the matrix (the workload's [quick] table)")
    run.add_argument("--out", default="results", help="directory to create the run directory in (default: results)")
    run.add_argument("--dry-run", action="store_true", help="list the cases and exit")
    run.add_argument("--label", help="a short name for this run in reports and comparisons (stored in run.json)")
    run.add_argument("--wide", action="store_true", help="every column (default: the key ones, to fit 80 columns)")

    lst = sub.add_parser("list", help="list workloads, models, engines or claims")
    lst.add_argument("what", nargs="?", default="workloads", choices=["workloads", "models", "engines", "claims"])

    env = sub.add_parser("env", help="this machine: devices, versions, what telemetry can be read")
    env.add_argument("--json", action="store_true", help="print the full fingerprint as JSON")

    cmp_ = sub.add_parser("compare", help="runs side by side, with ratios to the first")
    cmp_.add_argument("runs", nargs="+", metavar="RUN", help="run directories or results.csv files")
    cmp_.add_argument("--format", choices=["table", "markdown", "csv", "html"], default="table")
    cmp_.add_argument("--metrics", help="comma-separated metrics (default: all measured)")
    cmp_.add_argument("--price-per-hour", type=_price, help="US$/hour to add US$ per million output tokens")
    cmp_.add_argument("--plot", metavar="FILE.png", help="also draw the main metrics")
    cmp_.add_argument("--wide", action="store_true", help="every column (default: the key ones, to fit 80 columns)")

    chk = sub.add_parser("check", help="regression gate: exit 1 on a consistent slowdown beyond the tolerance")
    chk.add_argument("--baseline", required=True, action="append", metavar="RUN|ROOT",
                     help="the run to compare against; repeat it, or give a results root, to pool a history")
    chk.add_argument("--history", type=int, default=5, metavar="N",
                     help="from a results root, the newest N runs on the candidate's hardware (default 5)")
    chk.add_argument("--require-same-hardware", action="store_true",
                     help="a baseline on other hardware or software is an error, not a warning")
    chk.add_argument("run", metavar="RUN")
    chk.add_argument("--tolerance", action="append", default=[], metavar="PCT|METRIC=PCT",
                     help="allowed worsening in percent, e.g. 10 or 10%% (default 10), per metric with METRIC=PCT")
    chk.add_argument("--alpha", type=float, default=0.01,
                     help="significance level of the Mann-Whitney test with 5+ repetitions, in (0, 0.5] (default 0.01)")
    chk.add_argument("--metric", help="comma-separated metrics to gate (default: every gated metric measured)")
    chk.add_argument("--strict", action="store_true", help="exit 1 on an inconclusive change too")
    chk.add_argument("--wide", action="store_true", help="every column (default: the key ones, to fit 80 columns)")

    ver = sub.add_parser("verify", help="verdicts on the claims in seeds/claims.toml")
    ver.add_argument("runs", nargs="*", metavar="RUN",
                     help="run directories or results roots; for the cross-machine claims the claimed system's first")
    ver.add_argument("--format", choices=["table", "md", "csv"], default="table")
    ver.add_argument("--price-per-hour", type=_price, help="US$/hour for the rental-price claims")
    ver.add_argument("--wide", action="store_true", help="every column (default: the key ones, to fit 80 columns)")

    rep = sub.add_parser("report", help="one self-contained HTML report")
    rep.add_argument("runs", nargs="+", metavar="RUN")
    rep.add_argument("-o", "--output", required=True, metavar="FILE.html")
    rep.add_argument("--price-per-hour", type=_price, help="US$/hour for the rental-price claims")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bench` console script."""
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_allocator_default()
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            args = build_parser().parse_args(["run", *(argv or [])])
        handler = {"run": cmd_run, "list": cmd_list, "env": cmd_env, "compare": cmd_compare, "check": cmd_check,
                   "verify": cmd_verify, "report": cmd_report}[args.command]
        return handler(args)
    except BadInput as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        print("bench: terminated" if isinstance(exc, Terminated) else "bench: interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


ALLOC_CONF_VARS = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_HIP_ALLOC_CONF")


def set_allocator_default() -> None:
    """Expandable segments for torch's GPU allocator unless the user chose a configuration.

    Without them a long prompt's KV cache, grown a step at a time, fragments the
    caching allocator: on an H200, llama-3.1-8b at batch 16 ran out of memory with
    35 GiB reserved but unallocated, so the "largest context" measured the allocator,
    not the card. Must run before torch touches the GPU; run.json records the value.
    """
    if not any(os.environ.get(v) for v in ALLOC_CONF_VARS):
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"


# --- run -------------------------------------------------------------------------------------


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from bench.workload import parse_set

    overrides: dict[str, Any] = {}
    for item in args.sets:
        key, value = parse_set(item)
        overrides[key] = value
    for flag in ("model", "engine", "device", "dtype"):
        value = getattr(args, flag)
        if value is not None:
            overrides[flag] = parse_set(f"{flag}={value}")[1] if flag != "model" else value
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench import printers
    from bench.devices import resolve_device
    from bench.session import run_session
    from bench.suite import load_suite
    from bench.workload import load_workload

    if args.label is not None and (not args.label.strip() or len(args.label) > 80 or not args.label.isprintable()):
        raise BadInput(f"--label {args.label!r}: give a short one-line text (at most 80 characters)")
    suite = load_suite(args.workload)
    if suite is not None:
        return run_suite(suite, args)
    out = _stdout_console()
    workload = load_workload(args.workload)
    overrides = _overrides(args)
    device = resolve_device(overrides.get("device", workload.params["device"]))
    workload, cases = plan(workload, overrides, args.quick, device)
    if args.dry_run:
        out.print(printers.cases_table(cases, f"{workload.name}: {len(cases)} case(s) on {device} ({device.name})",
                                       workload.kind))
        return EXIT_OK
    outcome = run_session(workload, cases, device, Path(args.out), Console(stderr=True), label=args.label)
    if outcome.rows:
        out.print(printers.results_table(outcome.rows, f"{workload.name} on {device.name}", args.wide))
        printers.print_details(Console(stderr=True), outcome.rows)
    console = Console(stderr=True)
    console.print(f"results: {outcome.path}")
    return _exit_status(outcome, console)


def plan(workload: Any, overrides: dict[str, Any], quick: bool, device: Any) -> tuple[Any, list[Any]]:
    """The workload with every override applied and its cases, each checked: bad input fails here,
    before any work starts."""
    from bench.engines import engine_names
    from bench.models import resolve_model
    from bench.quant import check_available
    from bench.scenarios import scenario_for
    from bench.workload import apply_overrides

    for quant in _as_list(overrides.get("quant", [])):  # asked for on the command line: must be possible
        check_available(quant)
    workload = apply_overrides(workload, overrides, quick=quick, on_gpu=device.type == "cuda")
    p = workload.params
    models = {m: resolve_model(m, p["allow_download"], p["trust_remote_code"])  # bad names fail before any work
              for m in _as_list(p["model"])}
    for spec in models.values():
        _ = spec.shape  # reads and checks config.json: a broken one is bad input, not a skipped row
    for engine in _as_list(workload.params["engine"]):
        if engine not in engine_names():
            raise BadInput(f"unknown engine '{engine}' (known: {', '.join(engine_names())})")
    scenario = scenario_for(workload)
    cases = scenario.expand(lambda m: models[m].shape.max_position)
    if not cases:
        raise BadInput(f"workload '{workload.name}' expands to no cases")
    for case in cases:
        scenario.check(case)
    return workload, cases


def _exit_status(outcome: Any, console: Any) -> int:
    if outcome.interrupted:
        console.print(f"bench: {outcome.interrupted}; {len(outcome.rows)} finished case(s) kept in {outcome.path}")
        return EXIT_TERMINATED if outcome.interrupted == "terminated" else EXIT_INTERRUPTED
    return EXIT_FAIL if any(r["status"] == "error" for r in outcome.rows) else EXIT_OK


def run_suite(suite: Any, args: argparse.Namespace) -> int:
    """Every step of a suite into one new results root, then the verdicts and report.html there."""
    import time

    from rich.console import Console

    from bench import printers
    from bench.devices import resolve_device
    from bench.session import run_session
    from bench.suite import suite_root
    from bench.workload import load_workload

    out, console = _stdout_console(), Console(stderr=True)
    overrides = _overrides(args)
    device = resolve_device(overrides.get("device", "auto"))
    on_gpu = device.type == "cuda"
    planned, skipped = [], []
    for step in suite.steps:  # every step checked before the first one runs
        if not step.runs_on(device.type):
            skipped.append(f"{step.workload} (runs on {', '.join(step.devices)} only)")
            continue
        keys = {**step.overrides(on_gpu, args.quick), **overrides}
        planned.append(plan(load_workload(step.workload), keys, args.quick, device))
    title = f"{suite.name}: {len(planned)} workload(s), {sum(len(c) for _, c in planned)} case(s) on {device} " \
            f"({device.name})"
    if args.dry_run:
        for workload, cases in planned:
            out.print(printers.cases_table(cases, f"{workload.name}: {len(cases)} case(s)", workload.kind))
        console.print(title + (f"; not on this device: {', '.join(skipped)}" if skipped else ""))
        return EXIT_OK
    root = suite_root(Path(args.out), suite.name)
    console.print(f"[bold]{title}[/] -> {root}")
    for note in skipped:
        console.print(f"not on this device: {note}")
    start = time.monotonic()
    status = EXIT_OK
    for workload, cases in planned:
        outcome = run_session(workload, cases, device, root, console, label=args.label)
        if outcome.rows:
            out.print(printers.results_table(outcome.rows, f"{workload.name} on {device.name}", args.wide))
            printers.print_details(console, outcome.rows)
        status = max(status, _exit_status(outcome, console))
        if outcome.interrupted:
            break
    console.print(f"{suite.name}: {time.monotonic() - start:.0f} s; runs in {root}")
    _verdicts_and_report(root, console, args.wide)
    return status


def _verdicts_and_report(root: Path, console: Any, wide: bool) -> None:
    """Print the verdicts on the runs in `root` and write root/report.html."""
    import pandas as pd

    from bench.report import render
    from bench.runs import load_runs, run_dirs_in
    from bench.verify import verdict_rows, verify

    if not run_dirs_in(root):
        return
    runs = load_runs([str(root)])
    _print_verdicts(pd.DataFrame(verdict_rows(verify(runs))), f"claims on {runs[0].device_name}", wide)
    report = root / "report.html"
    report.write_text(render(runs), encoding="utf-8")
    console.print(f"report: {report}")


def _stdout_console() -> Any:
    """rich console for tables; wide when piped, so a saved log keeps every column."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() and int(columns) >= 40 else 200)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- list / env ------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from rich import box
    from rich.table import Table

    console = _stdout_console()
    if args.what == "workloads":
        from bench.suite import load_suite
        from bench.workload import available_workloads, load_workload

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
    elif args.what == "models":
        from bench.models import bundled_models, resolve_model

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
    elif args.what == "claims":
        from bench.verify import describe, load_claims

        table = Table(title="claims (seeds/claims.toml: each with its source, metric and scope)",
                      box=box.SIMPLE_HEAD)
        for col in ("id", "claimed", "workloads", "conditions"):
            table.add_column(col, no_wrap=col == "id", overflow="fold")  # a long model list folds, never "…"
        for c in load_claims():
            table.add_row(c.id, f"{c.comparison} {c.figure:g} {c.unit}", ", ".join(c.workloads),
                          describe(c.conditions))
    else:
        from bench.engines import ENGINES

        table = Table(title="engines", box=box.SIMPLE_HEAD)
        table.add_column("name")
        table.add_column("implementation")
        for name, target in ENGINES.items():
            table.add_row(name, target)
    console.print(table)
    return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    from bench.devices import pick_dtype, resolve_device
    from bench.fingerprint import fingerprint
    from bench.results import clean_for_json
    from bench.telemetry.probe import probe_backend

    device = resolve_device("auto")
    backend, tried = probe_backend(device.type)
    info = fingerprint(device, backend)
    info["telemetry"]["probe"] = tried
    info["dtype_auto"] = pick_dtype("auto", device)[1]
    backend.close()
    if args.json:
        print(json.dumps(clean_for_json(info), indent=2, default=str))
        return EXIT_OK
    console = _stdout_console()
    console.print(f"[bold]host[/] {info['host']}  {info['os']}  Python {info['python']}")
    console.print(f"[bold]cpu[/] {info['cpu']} x{info['cpu_count']}, RAM {info['ram_gb']:.1f} GB")
    console.print(f"[bold]device[/] {device} ({device.name}), {device.total_memory_bytes / 1e9:.1f} GB; "
                  f"dtype {info['dtype_auto']}")
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
    return EXIT_OK


# --- compare / check / verify / report -------------------------------------------------------


def _print_frame(df: Any, title: str, columns: list[str] | None = None, whole: tuple[str, ...] = ()) -> None:
    """A table that folds long cells rather than cutting them; `columns`: only these (the compact view);
    `whole`: columns kept on one line besides the first (a verdict reads badly as "does not / hold")."""
    from rich import box
    from rich.table import Table

    from bench.render import factor_cases, rows_for_rich

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
    _stdout_console().print(table)


def compare_compact(n_runs: int) -> list[str]:
    """Compare's compact view: the case, the metric, each run's value and ratio (no workload column)."""
    return ["case", "metric", *(f"[{i}]" for i in range(n_runs)), *(f"x{i}/0" for i in range(1, n_runs))]


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare_table, fingerprint_differences
    from bench.render import format_table, long_form, plot_compare
    from bench.runs import load_runs

    runs = load_runs(args.runs)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    table = compare_table(runs, metrics, args.price_per_hour)
    if not any(" x" in c and table[c].notna().any() for c in table.columns):
        print("warning: the runs share no measured case (same workload, model, engine, dtype, batch, "
              "lengths and parameters such as quant); nothing to compare", file=sys.stderr)
    diffs = fingerprint_differences(runs)
    header = [f"[{i}] {r.name} ({r.device_name})" for i, r in enumerate(runs)]
    header += [f"differs: {k}: " + " | ".join(v or "-" for v in values) for k, values in diffs] or \
        ["fingerprints agree on device, driver and versions"]
    if args.format == "table":
        for line in header:
            print(line)
        _print_frame(long_form(table, len(runs)), "compare (x i/0: run i over run 0)",
                     None if args.wide else compare_compact(len(runs)))
    else:
        prefix = {"markdown": "", "csv": "# ", "html": ""}[args.format]
        if args.format == "html":
            print("<ul>" + "".join(f"<li>{line}</li>" for line in header) + "</ul>")
        else:
            print("\n".join(f"{prefix}{line}" + ("  " if args.format == "markdown" else "") for line in header))
            print()
        print(format_table(table, args.format))
    if args.plot:
        plot_compare(table, runs, args.plot)
    return EXIT_OK


def _rule(note: str) -> str:
    """The decision rule a check note names: '(every candidate repetition worse than...)' or the test's p."""
    inside = note[note.find("(") + 1:note.rfind(")")] if "(" in note else note
    return inside.split(" = ")[0].split(" p=")[0]


CHECK_COMPACT = ["case", "metric", "baseline", "candidate", "worse %", "p", "reps"]


def cmd_check(args: argparse.Namespace) -> int:
    from bench.compare import (
        METRICS,
        check,
        findings_frame,
        fingerprint_summary,
        parse_alpha,
        parse_tolerances,
    )
    from bench.runs import load_run

    default, per_metric = parse_tolerances(args.tolerance)
    alpha = parse_alpha(args.alpha)
    metrics = [m.strip() for m in args.metric.split(",")] if args.metric else None
    unknown = [m for m in metrics or [] if m not in METRICS]
    if unknown:
        raise BadInput(f"--metric: unknown or ungated metric(s) {', '.join(unknown)} (gated: {', '.join(METRICS)})")
    if args.history < 1:
        raise BadInput(f"--history {args.history}: must be at least 1")
    candidate = load_run(args.run)
    baselines = _baseline_history(args.baseline, candidate, args.history)
    mine = fingerprint_summary(candidate)
    for base in baselines:
        theirs = fingerprint_summary(base)
        differ = [k for k in ("device", "driver", "cuda", "torch", "transformers", "vllm", "cpu")
                  if theirs[k] != mine[k]]
        if differ:
            pairs = ", ".join(f"{theirs[k] or '-'} vs {mine[k] or '-'}" for k in differ)
            text = f"baseline {base.name} differs from the candidate in {', '.join(differ)} ({pairs})"
            if args.require_same_hardware:
                raise BadInput(text)
            print(f"warning: {text}: this is a comparison, not a baseline", file=sys.stderr)
    findings = check(baselines, candidate, per_metric, default, alpha, metrics)
    if not findings:
        print("warning: the runs share no measured case; nothing was checked", file=sys.stderr)
        return EXIT_OK
    frame = findings_frame(findings)
    regressions = frame[frame["verdict"] == "regression"]
    inconclusive = frame[frame["verdict"] == "inconclusive"]
    if not inconclusive.empty:
        _print_frame(inconclusive, f"{len(inconclusive)} inconclusive change(s): beyond the tolerance, "
                                   "not consistent", None if args.wide else CHECK_COMPACT)
        most = max(max(f.reps) for f in findings if f.verdict == "inconclusive")
        print(f"to decide: rerun both with --set min_reps={max(5, 2 * most)} (5 or more repetitions a side "
              "let a Mann-Whitney test judge)")
    if not regressions.empty:
        _print_frame(regressions, f"{len(regressions)} regression(s)", None if args.wide else CHECK_COMPACT)
        if not args.wide:
            for rule in sorted({_rule(note) for note in regressions["note"]}):
                print(f"judged by: {rule}\n  (--wide shows each case's note)")
    floors = frame[frame["metric"].isin(["decode_tok_s", "ttft_ms_p50", "tpot_ms_p50"])]
    if not floors.empty:
        per_case = floors.pivot_table(index="case", columns="metric", values="detectable %", aggfunc="first")
        per_case = per_case.reset_index()
        _print_frame(per_case, "smallest slowdown (%) this check could have caught, per case", list(per_case.columns))
    if not regressions.empty:
        return EXIT_FAIL
    print(f"ok: {len(frame)} metric(s) over {frame['case'].nunique()} case(s), no consistent regression beyond "
          f"{default:g}%" + (f"; {len(inconclusive)} inconclusive" if len(inconclusive) else ""))
    return EXIT_FAIL if args.strict and not inconclusive.empty else EXIT_OK


def _baseline_history(specs: list[str], candidate: Any, newest: int) -> list:
    """The baseline runs: each run given, and from each results root the newest runs of the candidate's
    workload on the candidate's device (a root may hold other workloads' runs: they share no case)."""
    from bench.runs import load_run, run_dirs_in

    def workloads(run: Any) -> set[str]:
        return set(run.results["workload"].dropna().astype(str))

    runs = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir() and not (path / "results.csv").exists():
            same = [r for r in (load_run(d) for d in run_dirs_in(path))
                    if r.device_name == candidate.device_name and r.path.resolve() != candidate.path.resolve()
                    and workloads(r) & workloads(candidate)]
            if not same:
                raise BadInput(f"{path}: no run of {', '.join(sorted(workloads(candidate)))} on "
                               f"{candidate.device_name} to use as a baseline")
            runs.extend(same[-newest:])
        else:
            run = load_run(spec)
            if run.path.resolve() == candidate.path.resolve():
                raise BadInput(f"--baseline {spec} is the candidate run itself: nothing to gate")
            runs.append(run)
    return runs


def cmd_verify(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.render import format_table
    from bench.runs import load_runs
    from bench.verify import verdict_rows, verify

    groups = [load_runs([spec]) for spec in args.runs]  # one per root or run given: the claimed system first
    runs = [run for group in groups for run in group]
    frame = pd.DataFrame(verdict_rows(verify(runs, args.price_per_hour, groups=groups)))
    if args.format == "table":
        _print_verdicts(frame, "claims", args.wide)
    else:
        print(format_table(frame, "markdown" if args.format == "md" else "csv"))
    return EXIT_OK


VERDICT_COMPACT = ["claim", "claimed", "measured", "95% interval", "verdict"]


def _print_verdicts(frame: Any, title: str, wide: bool) -> None:
    """The verdict table: compact (and one line of scope and reason per claim below it), or every column."""
    if wide:
        _print_frame(frame, title)
        return
    _print_frame(frame, title, VERDICT_COMPACT, whole=("verdict",))
    console = _stdout_console()
    for _, row in frame.iterrows():
        said = "; ".join(str(row[k]) for k in ("where", "why") if str(row.get(k, "")) not in ("", "nan"))
        if said:
            console.print(f"  {row['claim']}: {said}", markup=False, highlight=False)


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import render
    from bench.runs import load_runs

    groups = [load_runs([spec]) for spec in args.runs]
    out = Path(args.output)
    try:
        out.write_text(render([r for g in groups for r in g], args.price_per_hour, groups), encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"report: {out}")
    return EXIT_OK
