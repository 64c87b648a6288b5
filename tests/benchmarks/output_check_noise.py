"""The measurements behind the output check's thresholds (bench/engines/output_check.py): each decode path's KL
divergence and top-1 agreement against the teacher-forced reference, per dtype, and int8/int4 against the same
model unquantized, on this machine. Prints one line per case and a table.

    python tests/benchmarks/output_check_noise.py [--models tiny,qwen2.5-0.5b] [--paths generate,loop,captured]
"""

from __future__ import annotations

import argparse
import os

import torch

from bench.engines import get_engine
from bench.engines.base import LoadOptions
from bench.hardware.devices import resolve_device
from bench.spec.models import resolve_model
from bench.spec.prompts import random_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,qwen2.5-0.5b")
    parser.add_argument("--paths", default="generate,loop,captured")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--quants", default="int8,int4")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = resolve_device("cpu")
    results = []
    for name in args.models.split(","):
        spec = resolve_model(name)
        ids = random_prompts(args.batch, args.input_len, spec.shape.vocab, 0, spec.special_token_ids)
        cases = [(d, p, "none") for d in args.dtypes.split(",") for p in args.paths.split(",")]
        cases += [("bfloat16", "loop", q) for q in args.quants.split(",") if q]
        for dtype, path, quant in cases:
            engine = get_engine("transformers")
            engine.load(spec, device, LoadOptions(dtype=getattr(torch, dtype), decode=path, quant=quant,
                                                  cache="static" if path == "generate" else "dynamic"))
            engine.generate(ids, args.output_len)  # the warm-up (a captured step compiles here)
            check = engine.check_output(ids, args.output_len)
            engine.close()
            line = (name, dtype, path, quant, check.kld_mean, check.kld_p99, check.top1, check.seconds)
            print(*line, flush=True)
            results.append(line)
    print(f"\n{'model':<14}{'dtype':<10}{'path':<10}{'quant':<6}{'KLD mean':>11}{'KLD p99':>11}{'top-1':>8}"
          f"{'check_s':>9}")
    for name, dtype, path, quant, mean, p99, top1, secs in results:
        print(f"{name:<14}{dtype:<10}{path:<10}{quant:<6}{mean:>11.2e}{p99:>11.2e}{top1:>8.1%}{secs:>9.2f}")


if __name__ == "__main__":
    main()
