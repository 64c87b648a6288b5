"""The command line's grammar: every subcommand, its arguments and their help. Parsing only."""

from __future__ import annotations

import argparse
from typing import Any

from bench.core.errors import BadInput

DEFAULT_ROOT = "results"  # where runs go, and what verify and report read when given no RUN
REFERENCE_SUBROOT = "reference"  # results/reference: other machines' runs, read only when named


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as BadInput (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{self.prog}: {message[:300]}")


def _number(kind: type, low: float, high: float, what: str) -> Any:
    """An argparse type: a number of `kind` in [low, high] (finite), else one line saying which it must be."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text[:80]}' is not a {'whole ' if kind is int else ''}number") \
                from None
        if not (low <= value <= high) or value != value:
            raise argparse.ArgumentTypeError(f"'{text[:80]}' must be {what}")
        return value
    return parse


_price = _number(float, 1e-12, 1e300, "a positive number of US$ per hour")  # --price-per-hour
_figure = _number(float, 1e-12, 1e300, "a positive number")  # a card's figure on the command line
_positive_int = _number(int, 1, 1_000_000, "between 1 and 1000000")  # a count: a million is a typo, not a server


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Check LLM inference claims on the hardware you have.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    wide = dict(action="store_true", help="every column (default: the key ones, to fit 80 columns)")

    run = sub.add_parser("run", help="run a workload and write results/<run_id>/")
    run.add_argument("--workload", default="quick", help="bundled workload name or a TOML file (default: quick)")
    run.add_argument("--allow-power-limit", action="store_true",
                     help="let --set power_limit_w=W change the cards' power limit (read back; put back after the run)")
    run.add_argument("--model", help="bundled model name or a local HF directory (overrides the workload)")
    run.add_argument("--engine", help="transformers | vllm | openai | simulated")
    run.add_argument("--device", help="auto | cpu | cuda[:N] | npu[:N] | musa | mlu | gcu | xpu | mps "
                                      "(a vendor's torch plugin is loaded when installed)")
    run.add_argument("--dtype", help="auto | float32 | bfloat16 | float16")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override any workload key (repeatable); VALUE may be a list: 1,8,32")
    run.add_argument("--quick", action="store_true", help="shrink the matrix (the workload's [quick] table)")
    run.add_argument("--out", default=DEFAULT_ROOT, help="directory to create the run directory in (default: results)")
    run.add_argument("--dry-run", action="store_true", help="list the cases and exit")
    run.add_argument("--label", help="a short name for this run in reports and comparisons (stored in run.json)")
    run.add_argument("--wide", **wide)
    run.add_argument("--ray", metavar="ADDRESS", help="a Ray cluster (HOST:PORT or auto): telemetry from its nodes")
    run.add_argument("--each-node", action="store_true", help="with --ray: run the workload on every node")
    run.add_argument("--accelerator-type", metavar="RESOURCE", help="with --each-node: only nodes with it (GPU)")

    lst = sub.add_parser("list", help="list workloads, models, engines or claims")
    lst.add_argument("what", nargs="?", default="workloads", choices=["workloads", "models", "engines", "claims"])

    env = sub.add_parser("env", help="this machine: devices, versions, what telemetry can be read")
    env.add_argument("--json", action="store_true", help="print the full fingerprint as JSON")

    cmp_ = sub.add_parser("compare", help="runs side by side, with ratios to the first")
    cmp_.add_argument("runs", nargs="+", metavar="RUN", help="run directories, results.csv files or results roots")
    cmp_.add_argument("--format", choices=["table", "markdown", "csv", "html"], default="table")
    cmp_.add_argument("--metrics", help="comma-separated metrics (default: all measured)")
    cmp_.add_argument("--price-per-hour", type=_price, help="US$/hour to add US$ per million output tokens")
    cmp_.add_argument("--plot", metavar="FILE.png", help="also draw the main metrics")
    cmp_.add_argument("--wide", **wide)

    chk = sub.add_parser("check", help="regression gate: exit 1 on a consistent slowdown beyond the tolerance")
    chk.add_argument("--baseline", required=True, action="append", metavar="RUN|ROOT",
                     help="the run to compare against; repeat it, or give a results root, to pool a history")
    chk.add_argument("--history", type=int, default=5, metavar="N",
                     help="from a results root, the newest N runs on the candidate's hardware (default 5)")
    chk.add_argument("--require-same-hardware", action="store_true",
                     help="a baseline on other hardware or software is an error, not a warning")
    chk.add_argument("run", metavar="RUN")
    chk.add_argument("--tolerance", action="append", default=[], metavar="PCT|METRIC=PCT",
                     help="allowed worsening in percent, e.g. 10 or 10%% (default 10; negative: an improvement "
                          "is required), per metric with METRIC=PCT")
    chk.add_argument("--alpha", type=float, default=0.01,
                     help="significance level of the Mann-Whitney test with 5+ repetitions, in (0, 0.5] (default 0.01)")
    chk.add_argument("--metric", help="comma-separated metrics to gate (default: every gated metric measured)")
    chk.add_argument("--strict", action="store_true", help="exit 1 on an inconclusive change or machine-drift too")
    chk.add_argument("--wide", **wide)

    ver = sub.add_parser("verify", help="verdicts on the claims in seeds/claims.toml")
    ver.add_argument("runs", nargs="*", metavar="RUN",
                     help="run directories or results roots (default: ./results); for the cross-machine claims "
                          "the claimed system's first")
    ver.add_argument("--format", choices=["table", "md", "csv"], default="table")
    ver.add_argument("--price-per-hour", type=_price, help="US$/hour for the rental-price claims")
    ver.add_argument("--what-if", metavar="CARD[,CARD...]",
                     help="also each claim on paper on these cards of the datasheet table (bench whatif --list-cards): "
                          "impossible on paper, possible, or unknown, under the claim's own conditions")
    ver.add_argument("--wide", **wide)

    his = sub.add_parser("history", help="a series per case and metric over commits; change points (Apache Otava)")
    his.add_argument("runs", nargs="*", metavar="ROOT", help="results roots or runs (default: ./results)")
    his.add_argument("-o", "--output", metavar="FILE.html", help="also write the trend page")
    his.add_argument("--fail-on", choices=["regression"], help="exit 1 when a series' newest change point is one")
    his.add_argument("--strict", action="store_true", help="with --fail-on: a machine-drift fails too")
    his.add_argument("--max-pvalue", type=float, default=0.001, help="significance of a change point (0.001)")
    his.add_argument("--min-change", type=float, default=3.0, metavar="PCT",
                     help="smallest change reported as a regression or improvement, in percent (3)")

    wif = sub.add_parser("whatif", help="bounds on paper for hardware you do not have: a datasheet and a model")
    wif.add_argument("card", nargs="?", metavar="CARD", help="a card of the datasheet table (H200, MI300X, 'RTX 4090'; "
                     "--list-cards), or none with its figures given")
    wif.add_argument("--model", default="llama-3.1-8b", help="a bundled model or a config directory (llama-3.1-8b)")
    wif.add_argument("--cards", type=_positive_int, default=1, help="cards in tensor parallel (1)")
    wif.add_argument("--batch", type=_positive_int, default=1, help="concurrent sequences (1)")
    wif.add_argument("--input-len", type=_positive_int, default=1024, help="prompt tokens (1024)")
    wif.add_argument("--output-len", type=_positive_int, default=256, help="generated tokens (256)")
    wif.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    wif.add_argument("--quant", choices=["none", "int8", "int4"], default="none",
                     help="weight-only quantization (the KV cache stays in --dtype)")
    wif.add_argument("--bandwidth-gb-s", type=_figure, help="memory bandwidth of one card, GB/s")
    wif.add_argument("--tflops", type=_figure, help="dense 16-bit tensor TFLOP/s of one card")
    wif.add_argument("--memory-gb", type=_figure, help="memory of one card, GB")
    wif.add_argument("--power-w", type=_figure, help="board power of one card, W")
    wif.add_argument("--list-cards", action="store_true", help="the datasheet table: every card and its figures")
    wif.add_argument("--format", choices=["table", "md", "csv"], default="table")

    rep = sub.add_parser("report", help="one self-contained HTML report")
    rep.add_argument("runs", nargs="*", metavar="RUN", help="run directories or results roots (default: ./results)")
    rep.add_argument("-o", "--output", required=True, metavar="FILE.html")
    rep.add_argument("--price-per-hour", type=_price, help="US$/hour for the rental-price claims")
    rep.add_argument("--what-if", metavar="CARD[,CARD...]", help="also a section with each claim on paper on these cards")
    return parser


def joined_negatives(argv: list[str]) -> list[str]:
    """`--tolerance -5%` as `--tolerance=-5%`: argparse takes a value that starts with '-' for an option."""
    out: list[str] = []
    for item in argv:
        if out and out[-1] == "--tolerance" and item.startswith("-") and item[1:2].isdigit():
            out[-1] = f"--tolerance={item}"
        else:
            out.append(item)
    return out
