"""The decode paths side by side, interleaved: claimbench's generate, loop and captured paths (the real
`bench run`, harness included) beside plain loops written here without claimbench (an eager forward loop and
its compiled step, static cache), same model, batch, lengths and dtype.

    python tests/benchmarks/decode_paths.py [--models tiny,qwen2.5-0.5b] [--rounds 3] [--batch 1]
                                            [--input 128] [--output 64] [--dtype bfloat16]

Prints one line per run as it goes, then a table of medians: decode tok/s, MBU (against this machine's probed
bandwidth, as bench's rows report it), compile_s, and each path's ratio to the plain loop of its kind.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PLAIN = r'''
import json, statistics, sys, time, torch
from transformers import AutoConfig, AutoModelForCausalLM, StaticCache
config_path, batch, n_in, n_out, dtype, compiled = sys.argv[1:7]
batch, n_in, n_out, compiled = int(batch), int(n_in), int(n_out), compiled == "1"
torch.set_grad_enabled(False)
cfg = AutoConfig.for_model(**json.load(open(config_path)))
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype)).eval()
ids = torch.randint(0, cfg.vocab_size, (batch, n_in))
cache = StaticCache(config=cfg, max_cache_len=n_in + n_out)
def step(tok, pos):
    return model(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True).logits[:, -1:].argmax(-1)
decode = torch.compile(step) if compiled else step
def once():
    cache.reset()
    nxt = step(ids, torch.arange(n_in))
    t0 = time.perf_counter()
    for i in range(n_out - 1):
        nxt = decode(nxt.clone(), torch.tensor([n_in + i]))
    return time.perf_counter() - t0
w0 = time.perf_counter(); once(); once(); warm = time.perf_counter() - w0
runs = [once() for _ in range(3)]
print(json.dumps({"decode_tok_s": batch * (n_out - 1) / statistics.median(runs), "compile_s": warm}))
'''


def bench_path(model: str, path: str, a: argparse.Namespace, out: Path) -> dict:
    """One `bench run` on a decode path: its decode tok/s, MBU and compile_s."""
    import pandas as pd

    target = out / f"{model}-{path}"
    cmd = [sys.executable, "-m", "bench", "run", "--model", model, "--out", str(target), "--set", f"decode={path}",
           "--set", f"batch_size={a.batch}", "--set", f"input_len={a.input}", "--set", f"output_len={a.output}",
           "--dtype", a.dtype, "--set", "idle_seconds=0", "--set", "min_reps=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench run failed: {proc.stderr[-500:]}")
    row = pd.read_csv(sorted(target.glob("*/results.csv"))[-1]).iloc[0]
    return {"decode_tok_s": float(row["decode_tok_s"]), "mbu": float(row["mbu"]), "compile_s": float(row["compile_s"])
            if "compile_s" in row and row["compile_s"] == row["compile_s"] else float("nan")}


def plain_path(model: str, compiled: bool, a: argparse.Namespace) -> dict:
    from bench.models import resolve_model

    config = resolve_model(model).path / "config.json"
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(config), str(a.batch), str(a.input), str(a.output),
                           a.dtype, "1" if compiled else "0"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"plain loop failed: {proc.stderr[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="tiny,qwen2.5-0.5b")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input", type=int, default=128)
    p.add_argument("--output", type=int, default=64)
    p.add_argument("--dtype", default="bfloat16")
    a = p.parse_args()
    paths = ["generate", "loop", "captured", "plain eager", "plain compiled"]
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models.split(","):
            for r in range(a.rounds):  # interleaved: a machine that drifts moves every path alike
                for path in paths:
                    got = plain_path(model, path.endswith("compiled"), a) if path.startswith("plain") else \
                        bench_path(model, path, a, Path(tmp))
                    results.setdefault((model, path), []).append(got)
                    print(f"round {r + 1} {model} {path}: {got}", flush=True)
    print(f"\nmedians of {a.rounds} rounds, batch {a.batch}, {a.input} in, {a.output} out, {a.dtype}")
    print(f"{'model':<14}{'path':<16}{'tok/s':>9}{'MBU':>8}{'compile_s':>11}{'vs plain':>10}")
    for (model, path), runs in results.items():
        tok = statistics.median(x["decode_tok_s"] for x in runs)
        mbu = statistics.median(x.get("mbu", float("nan")) for x in runs)
        comp = statistics.median(x.get("compile_s", float("nan")) for x in runs)
        ref = "plain compiled" if path in ("captured", "plain compiled") else "plain eager"
        base = statistics.median(x["decode_tok_s"] for x in results[(model, ref)])
        print(f"{model:<14}{path:<16}{tok:>9.1f}{mbu:>8.1%}{comp:>11.1f}{tok / base:>10.2f}")


if __name__ == "__main__":
    main()
