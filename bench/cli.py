"""The `bench` command: parse (bench.arguments), call, print, exit code. Nothing else: planning is bench.run.planning,
the gate bench.analysis.gate, the verdicts bench.analysis.verify; what is printed bench.report.terminal, bench.report.textformat, bench.report.htmlreport.
Exit codes: 0 ok (oom/skipped cases are results), 1 a case errored or a check failed, 2 bad input (one
line on stderr, no traceback), 130 interrupted, 143 terminated."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.arguments import DEFAULT_ROOT, REFERENCE_SUBROOT, build_parser, joined_negatives
from bench.core.errors import MAX_VALUE_CHARS, BadInput
from bench.core.process_env import hold_interrupts, set_process_defaults

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (finished rows kept, run.json completed) but exiting 143."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bench` console script."""
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)
    set_process_defaults()
    argv = joined_negatives(list(sys.argv[1:] if argv is None else argv))
    try:
        too_long = [a for a in argv if len(a) > MAX_VALUE_CHARS + 64]
        if too_long:
            raise BadInput(f"an argument is {len(too_long[0])} characters long (at most {MAX_VALUE_CHARS}): "
                           f"{too_long[0][:80]}...")
        args = build_parser().parse_args(argv)
        if args.command is None:
            args = build_parser().parse_args(["run", *argv])
        handler = {"run": cmd_run, "list": cmd_list, "env": cmd_env, "compare": cmd_compare, "check": cmd_check,
                   "verify": cmd_verify, "report": cmd_report, "history": cmd_history,
                   "whatif": cmd_whatif}[args.command]
        return handler(args)
    except BadInput as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        hold_interrupts()
        print("bench: terminated" if isinstance(exc, Terminated) else "bench: interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from bench.spec.workload import coerce, parse_set

    overrides: dict[str, Any] = {}
    for item in args.sets:
        key, value = parse_set(item)
        overrides[key] = value
    for flag in ("model", "engine", "device", "dtype"):
        value = getattr(args, flag)
        if value is not None:
            # a model path may hold a comma: --model is always one model
            overrides[flag] = coerce(flag, value, "--model") if flag == "model" else parse_set(f"{flag}={value}")[1]
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.hardware.devices import resolve_device
    from bench.report import terminal
    from bench.run import fleet
    from bench.run.planning import plan, plan_suite, run_suite
    from bench.run.session import run_session
    from bench.spec.suite import load_suite
    from bench.spec.workload import load_workload

    if args.label is not None and (not args.label.strip() or len(args.label) > 80 or not args.label.isprintable()):
        raise BadInput(f"--label {args.label[:80]!r}: give a short one-line text (at most 80 characters)")
    out, console = terminal.stdout_console(), Console(stderr=True)
    overrides = _overrides(args)
    suite = load_suite(args.workload)
    if suite is not None and (args.ray is not None or args.each_node or args.accelerator_type):
        raise BadInput(f"--ray and --each-node run one workload, not a suite ({suite.name}): run its steps")
    if suite is not None:
        planned = plan_suite(suite, overrides, args.quick, resolve_device(overrides.get("device", "auto")))
        if args.dry_run:
            for step in planned.steps:
                out.print(terminal.cases_table(step.cases, step.title(), step.plan_keys))
            console.print(planned.title + (f"; not on this device: {', '.join(planned.not_here)}"
                                           if planned.not_here else ""), markup=False)
            return EXIT_OK
        status = EXIT_OK
        said: dict[str, str] = {}  # claim -> verdict shown so far

        def shown(step: Any, outcome: Any) -> None:
            nonlocal status
            terminal.print_outcome(out, console, outcome.rows, step.workload, planned.device, args.wide)
            status = max(status, _exit_status(outcome, console))
            found = verdicts_so_far(outcome.path.parent, said)  # each verdict as soon as its step has run
            if found is not None:
                new, title, write = found
                if not new.empty:
                    terminal.print_verdicts(new, title, args.wide)
                write()  # after the screen: a verdict in verdicts.md has been shown, even if Ctrl-C comes now

        root, _, seconds = run_suite(planned, Path(args.out), console, args.label, shown)
        console.print(f"{suite.name}: {seconds:.0f} s; runs in {root}")
        verdicts = verdicts_and_report(root)
        if verdicts is not None:
            frame, title, report = verdicts
            terminal.print_verdicts(frame, title, args.wide)
            console.print(f"report: {report}")
        return status
    workload = load_workload(args.workload)
    device = resolve_device(overrides.get("device", workload.params["device"]))
    planned = plan(workload, overrides, args.quick, device)
    if any(c.params.get("power_limit_w", 0) for c in planned.cases) and not args.allow_power_limit:
        raise BadInput("power_limit_w changes the cards' power limit: add --allow-power-limit (it is read back, and "
                       "put back when the run ends)")
    if args.dry_run:
        out.print(terminal.cases_table(planned.cases, planned.title(), planned.plan_keys))
        return EXIT_OK
    if args.each_node or args.accelerator_type:
        root, runs, failed = fleet.fleet_command(args, planned, console)
        main(["compare", *map(str, runs)])
        console.print(f"fleet: {len(runs)} run(s) in {root}; {failed} node(s) failed; next: bench verify {root}",
                      markup=False)
        return EXIT_FAIL if failed else EXIT_OK
    telemetry = fleet.cluster_telemetry(args.ray, device, planned.workload) if args.ray is not None else None
    outcome = run_session(planned.workload, planned.cases, device, Path(args.out), console, args.label, telemetry,
                          args.allow_power_limit)
    terminal.print_outcome(out, console, outcome.rows, planned.workload, device, args.wide)
    console.print(f"results: {outcome.path}")
    return _exit_status(outcome, console)


def _exit_status(outcome: Any, console: Any) -> int:
    if outcome.interrupted:
        console.print(f"bench: {outcome.interrupted}; {len(outcome.rows)} finished case(s) kept in {outcome.path}")
        return EXIT_TERMINATED if outcome.interrupted == "terminated" else EXIT_INTERRUPTED
    return EXIT_FAIL if any(r["status"] == "error" for r in outcome.rows) else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from bench.report import terminal

    console = terminal.stdout_console()
    console.print(terminal.list_view(args.what, console.width))
    return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    from bench.report import terminal
    from bench.run.fingerprint import environment
    from bench.store.results import clean_for_json
    from bench.telemetry.power_cap import describe_left

    info, device, tried = environment()
    info["power_limits_left_changed"] = describe_left()
    if args.json:
        print(json.dumps(clean_for_json(info), indent=2, default=str))
    else:
        terminal.print_env(info, device, tried)
        for line in info["power_limits_left_changed"]:
            print(f"warning: {line}")
    return EXIT_OK


def _read(specs: list[str], default_root: bool = False, machine_format: bool = False, loader: Any = None) -> Any:
    """The runs asked for (./results when none and default_root), after one line saying what was read (on
    stdout, its first line; on stderr where stdout is csv/markdown) and a warning per run skipped."""
    from bench.store.runs import read_runs

    exclude: tuple[Path, ...] = ()
    if not specs and default_root:
        if not Path(DEFAULT_ROOT).is_dir():
            raise BadInput(f"no RUN given and no ./{DEFAULT_ROOT} here: give run directories or results roots "
                           "(or measure first: bench run --workload claims --quick)")
        specs = [DEFAULT_ROOT]
        # A checkout's ./results also holds the committed reference runs of other machines (an H200's):
        # a user's first verdicts are their own machine's unless they name those.
        exclude = (Path(DEFAULT_ROOT) / REFERENCE_SUBROOT,)
    loaded = read_runs(specs, loader, exclude)
    print(f"read {loaded.said()}", file=sys.stderr if machine_format else sys.stdout)
    for line in loaded.skipped:
        print(f"warning: skipped {line[:300]}", file=sys.stderr)
    return loaded


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.analysis.compare import compare_table, fingerprint_differences
    from bench.report import terminal
    from bench.report.textformat import format_table, long_form

    runs = _read(args.runs, machine_format=args.format != "table").runs
    if len(runs) == 1 and len(args.runs) > 1:
        raise BadInput(f"compare needs two different runs: {' and '.join(args.runs)[:200]} are one run "
                       f"({runs[0].name})")
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
        terminal.print_compare(header, long_form(table, len(runs)), len(runs), args.wide)
    else:
        print(format_table(table, args.format, header))
    if args.plot:
        from bench.report.plots import plot_compare

        plot_compare(table, runs, args.plot)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from bench.analysis.gate import gate
    from bench.report import terminal

    metrics = [m.strip() for m in args.metric.split(",")] if args.metric else None
    result = gate(args.baseline, args.run, args.tolerance, args.alpha, metrics, args.history,
                  args.require_same_hardware)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    terminal.print_gate(result, args.wide)
    if result.regressions:
        return EXIT_FAIL
    return EXIT_FAIL if args.strict and (result.inconclusive or result.drifted) else EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.analysis.verify import verify
    from bench.report import terminal
    from bench.report.textformat import format_table, verdict_rows

    cards = _what_if_cards(args.what_if) if args.what_if else []  # a bad card name: one line before any reading
    # one group per root or run given: the claimed system first
    loaded = _read(args.runs, default_root=True, machine_format=args.format != "table")
    verdicts = verify(loaded.runs, args.price_per_hour, groups=loaded.groups)
    frame = pd.DataFrame(verdict_rows(verdicts))
    paper = _on_paper(verdicts, cards, full=args.format != "table") if cards else None
    if args.format == "table":
        terminal.print_verdicts(frame, "claims", args.wide)
        if paper is not None:
            terminal.print_frame(paper, "on paper: what the datasheets allow under each claim's own conditions "
                                        "(measured verdicts above stand; --format md for the arithmetic)",
                                 whole=("claim", "on paper"))
    else:
        if paper is not None:
            frame = frame.merge(paper.drop(columns=["claimed", "measured verdict"]), on="claim", how="left")
        print(format_table(frame, "markdown" if args.format == "md" else "csv"))
    return EXIT_OK


def _what_if_cards(names: str) -> list[Any]:
    from bench.analysis.whatif import find_card

    cards = [find_card(n.strip()) for n in names.split(",") if n.strip()]
    if not cards:
        raise BadInput("--what-if needs at least one card name (bench whatif --list-cards)")
    return cards


def _on_paper(verdicts: list[Any], cards: list[Any], full: bool = True) -> Any:
    """Each claim beside what each card allows on paper (bench.analysis.whatif), as a table: a column pair per
    card with the whole arithmetic (md, csv), or for the terminal a row per claim and card with its one clause."""
    import pandas as pd

    from bench.analysis.whatif import paper_rows

    rows = paper_rows(verdicts, cards, full)
    if full:
        return pd.DataFrame(rows)
    return pd.DataFrame([{"claim": r["claim"], "card": c.name, "on paper": r[f"on paper: {c.name}"],
                          "why": r[f"why ({c.name})"]} for r in rows for c in cards])


def cmd_whatif(args: argparse.Namespace) -> int:
    """Bounds on paper: a datasheet's card (or figures given) and a model's shape, nothing run."""
    import pandas as pd

    from bench.analysis import whatif
    from bench.spec.models import resolve_model

    if args.list_cards:
        frame = pd.DataFrame([{"card": p.name, "GB/s": p.bandwidth / 1e9, "TFLOP/s": p.flops16 / 1e12,
                               "memory GB": p.memory / 1e9, "board W": p.power_w, "how sure": p.sure,
                               "source": p.source} for p in (peak for _, peak in whatif.DATASHEET)])
        _print_frame(frame, "the datasheet table (empty: not published in a source checked)", args.format)
        return EXIT_OK
    base = whatif.find_card(args.card) if args.card else None
    card = whatif.custom_card(base, args.bandwidth_gb_s, args.tflops, args.memory_gb, args.power_w)
    shape = resolve_model(args.model).shape
    element = 4 if args.dtype == "float32" else 2
    case = whatif.Case(args.model, shape, whatif.BYTES_PER_PARAM[args.quant if args.quant != "none" else args.dtype],
                       element, args.batch, args.input_len, args.output_len, args.cards)
    frame = pd.DataFrame([{"bound": b.name, "value": "" if not b.known else f"{b.value:,.4g}", "unit": b.unit,
                           "from": b.how} for b in whatif.bounds(card, case)])
    weights = "" if args.quant == "none" else f" {args.quant}"
    title = (f"{args.model}{weights} {args.dtype} on {args.cards} x {card.name}, batch {args.batch}, "
             f"{args.input_len} in / {args.output_len} out: bounds on paper")
    _print_frame(frame, title, args.format)
    return EXIT_OK


def _print_frame(frame: Any, title: str, fmt: str) -> None:
    from bench.report import terminal
    from bench.report.textformat import format_table

    if fmt == "table":
        terminal.print_frame(frame, title)
    else:
        print(format_table(frame, "markdown" if fmt == "md" else "csv"))


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report.htmlreport import render

    out = writable_output(args.output)
    cards = _what_if_cards(args.what_if) if args.what_if else []
    loaded = _read(args.runs, default_root=True)
    try:
        out.write_text(render(loaded.runs, args.price_per_hour, loaded.groups, loaded.said(), cards),
                       encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"report: {out}")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from bench.analysis.history import failing, history, ordering, read_record
    from bench.report import terminal
    from bench.report.trend import trend_page

    out = writable_output(args.output) if args.output else None  # said before the work, not after it
    loaded = _read(args.runs, default_root=True, loader=read_record)
    runs = loaded.runs
    series = history(runs, args.max_pvalue, args.min_change / 100)
    axis = ordering(runs)
    if not axis.startswith("commit (oldest"):
        print(f"ordered by {axis}")
    terminal.print_history(series)
    if out is not None:
        try:
            out.write_text(trend_page(series, axis, loaded.said()), encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"cannot write {out}: {exc.strerror or exc}") from None
        print(f"trend: {out}")
    return EXIT_FAIL if args.fail_on and failing(series, args.fail_on, args.strict) else EXIT_OK


def writable_output(name: str) -> Path:
    """An output file's path, checked before any work: not a directory, in a directory that exists, and a file
    this process can write."""
    path = Path(name)
    if path.is_dir():
        raise BadInput(f"-o {name}: a directory; give a file name (trend.html)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"-o {name}: no directory {parent}")
    existed = path.exists()
    try:  # the one sure test (root may write anywhere os.access says, yet not into /proc): open it, then tidy
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise BadInput(f"-o {name}: cannot write it ({exc.strerror or exc})") from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


# --- a suite's verdicts: analysis and report called for the front door ----------------------


def verdicts_so_far(root: Path, said: dict[str, str]) -> tuple[Any, str, Callable[[], None]] | None:
    """After a step of a suite: the claims whose verdict the runs in `root` answer now and did not before (or
    answer differently), as a frame (empty when none) and its title, and a function that writes every verdict so
    far to root/verdicts.md (so a suite stopped later keeps them). said: claim -> verdict already shown; updated.
    None when the root holds no run."""
    import pandas as pd

    from bench.analysis.verify import verify
    from bench.report.textformat import format_table, verdict_rows
    from bench.store.runs import find_runs, load_runs

    if not find_runs(root):
        return None
    runs = load_runs([str(root)])
    frame = pd.DataFrame(verdict_rows(verify(runs)))
    markdown = format_table(frame, "markdown")
    answered = frame[frame["verdict"] != "not measured"]
    changed = pd.Series([said.get(c) != v for c, v in zip(answered["claim"], answered["verdict"])],
                        index=answered.index, dtype=bool)
    new = answered[changed]
    said.update(zip(new["claim"], new["verdict"]))

    def write() -> None:
        (root / "verdicts.md").write_text(markdown, encoding="utf-8")

    return new, f"answered so far on {runs[0].device_name}", write


def verdicts_and_report(root: Path) -> tuple[Any, str, Path] | None:
    """The verdicts on the runs in `root` (a frame and its title) and root/report.html written; None when
    the root holds no run."""
    import pandas as pd

    from bench.analysis.verify import verify
    from bench.report.htmlreport import render
    from bench.report.textformat import verdict_rows
    from bench.store.runs import find_runs, load_runs

    if not find_runs(root):
        return None
    runs = load_runs([str(root)])
    frame = pd.DataFrame(verdict_rows(verify(runs)))
    from bench.report.textformat import format_table

    (root / "verdicts.md").write_text(format_table(frame, "markdown"), encoding="utf-8")
    report = root / "report.html"
    report.write_text(render(runs), encoding="utf-8")
    return frame, f"claims on {runs[0].device_name}", report
