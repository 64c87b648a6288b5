"""The decode paths side by side, interleaved: claimbench's generate, loop, captured and auto paths (the real
`bench run`, harness included) beside plain loops written here without claimbench (an eager forward loop with a
static or a dynamic KV cache, and the static one's compiled step), same model, batch, lengths and dtype.

    python tests/benchmarks/decode_paths.py [--models tiny,qwen2.5-0.5b] [--rounds 3] [--batches 1,8]
                                            [--input 128] [--output 64] [--dtype bfloat16]

Prints one line per run as it goes, then a table of medians: decode tok/s, MBU (against this machine's probed
bandwidth, as bench's rows report it), compile_s, and each path's ratio to the plain loop of its kind (loop to
the plain static eager loop, captured to the plain compiled one, auto to the faster plain eager loop). The
goal: loop and captured within 5% of theirs (the harness costs nothing measurable).
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
from transformers import DynamicCache
config_path, batch, n_in, n_out, dtype, kind = sys.argv[1:7]
batch, n_in, n_out, compiled = int(batch), int(n_in), int(n_out), kind == "compiled"
torch.set_grad_enabled(False)
cfg = AutoConfig.for_model(**json.load(open(config_path)))
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype)).eval()
import inspect
# transformers 5 renames past_key_values to cache: the old name warns on every call, which costs a step time
kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
ids = torch.randint(0, cfg.vocab_size, (batch, n_in))
cache = StaticCache(config=cfg, max_cache_len=n_in + n_out)
def step(tok, pos):
    return model(input_ids=tok, cache_position=pos, use_cache=True, **{kw: cache}).logits[:, -1:].argmax(-1)
decode = torch.compile(step) if compiled else step
def once():
    global cache
    if kind == "dynamic":
        cache = DynamicCache(config=cfg)
    else:
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


def bench_path(model: str, path: str, batch: int, a: argparse.Namespace, out: Path) -> dict:
    """One `bench run` on a decode path: its decode tok/s, MBU and compile_s."""
    import pandas as pd

    target = out / f"{model}-{path}-{batch}"
    cmd = [sys.executable, "-m", "bench", "run", "--model", model, "--out", str(target), "--set", f"decode={path}",
           "--set", f"batch_size={batch}", "--set", f"input_len={a.input}", "--set", f"output_len={a.output}",
           "--dtype", a.dtype, "--set", "idle_seconds=0", "--set", "min_reps=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench run failed: {proc.stderr[-500:]}")
    row = pd.read_csv(sorted(target.glob("*/results.csv"))[-1]).iloc[0]
    return {"decode_tok_s": float(row["decode_tok_s"]), "mbu": float(row["mbu"]), "compile_s": float(row["compile_s"])
            if "compile_s" in row and row["compile_s"] == row["compile_s"] else float("nan")}


def plain_path(model: str, kind: str, batch: int, a: argparse.Namespace) -> dict:
    from bench.spec.models import resolve_model

    config = resolve_model(model).path / "config.json"
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(config), str(batch), str(a.input), str(a.output),
                           a.dtype, kind], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"plain loop failed: {proc.stderr[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


PLAIN_KINDS = {"plain eager static": "static", "plain eager dynamic": "dynamic", "plain compiled": "compiled"}
REFERENCE = {"loop": "plain eager static", "captured": "plain compiled", "plain compiled": "plain compiled",
             "plain eager static": "plain eager static", "plain eager dynamic": "plain eager static"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="tiny,qwen2.5-0.5b")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--input", type=int, default=128)
    p.add_argument("--output", type=int, default=64)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--paths", default="generate,loop,auto,captured," + ",".join(PLAIN_KINDS))
    a = p.parse_args()
    paths = a.paths.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    results: dict[tuple[str, int, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models.split(","):
            for r in range(a.rounds):  # interleaved: a machine that drifts moves every path alike
                for batch in batches:
                    for path in paths:
                        got = plain_path(model, PLAIN_KINDS[path], batch, a) if path in PLAIN_KINDS else \
                            bench_path(model, path, batch, a, Path(tmp))
                        results.setdefault((model, batch, path), []).append(got)
                        print(f"round {r + 1} {model} batch {batch} {path}: {got}", flush=True)
    print(f"\nmedians of {a.rounds} rounds, {a.input} in, {a.output} out, {a.dtype}")
    print(f"{'model':<14}{'batch':>6} {'path':<21}{'tok/s':>9}{'MBU':>8}{'compile_s':>11}{'vs plain':>10}")

    def median(model: str, batch: int, path: str) -> float:
        return statistics.median(x["decode_tok_s"] for x in results[(model, batch, path)])

    for (model, batch, path), runs in results.items():
        tok = median(model, batch, path)
        mbu = statistics.median(x.get("mbu", float("nan")) for x in runs)
        comp = statistics.median(x.get("compile_s", float("nan")) for x in runs)
        if path in ("auto", "generate"):  # against the faster plain eager loop: the best auto could choose
            base = max(median(model, batch, k) for k in ("plain eager static", "plain eager dynamic")
                       if (model, batch, k) in results)
        else:
            ref = REFERENCE.get(path, "")
            base = median(model, batch, ref) if (model, batch, ref) in results else float("nan")
        print(f"{model:<14}{batch:>6} {path:<21}{tok:>9.1f}{mbu:>8.1%}{comp:>11.1f}{tok / base:>10.2f}")


if __name__ == "__main__":
    main()
