"""Where a decode step's time goes on a card: torch.profiler over a few one-token steps of a model, eager and
captured (torch.compile, reduce-overhead), kernel time by kind against the step's wall time and the weight
bytes' time at the measured bandwidth. Run by .ci/gpu-reference's `profile` step; prints a report on stdout.

  python .ci/profile-decode.py CONFIG.json [--batch 1] [--context 256] [--bandwidth-gb-s 4178] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from transformers import AutoConfig, AutoModelForCausalLM, StaticCache

KINDS = [  # first match wins: kernel name patterns of cuBLAS/cuDNN/flash/inductor kernels
    ("matmul (GEMV/GEMM)", r"gemv|gemm|cutlass|sm90_xmma|ampere_|nvjet|splitk|matmul|mm_"),
    ("attention", r"flash|fmha|attention|sdpa|softmax"),
    ("argmax / reduction", r"argmax|reduce|max_"),
    ("copy", r"copy|memcpy|memset|cat"),
]


def kind_of(name: str) -> str:
    low = name.lower()
    return next((k for k, pat in KINDS if re.search(pat, low)), "elementwise / norm / other")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--bandwidth-gb-s", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--device", default="cuda", help="cpu: a dry run of this script (no kernels to count)")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    cfg = AutoConfig.for_model(**json.loads(Path(a.config).read_text()))
    dev = torch.device(a.device)
    with dev:
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()
    weight_bytes = sum(t.numel() * t.element_size() for t in model.parameters())
    cache = StaticCache(config=cfg, max_cache_len=a.context)
    tok = torch.zeros(a.batch, 1, dtype=torch.long, device=dev)
    pos = torch.tensor([a.context // 2], device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step(t, p_):
        return model(input_ids=t, past_key_values=cache, cache_position=p_, use_cache=True).logits[:, -1:].argmax(-1)

    report = {"batch": a.batch, "weight_GB": round(weight_bytes / 1e9, 3)}
    if a.bandwidth_gb_s:
        report["weights_at_bandwidth_ms"] = round(weight_bytes / (a.bandwidth_gb_s * 1e9) * 1e3, 3)
    def compiled(tuned: bool):
        import torch._dynamo
        import torch._inductor.config as inductor

        torch._dynamo.reset()
        inductor.coordinate_descent_tuning = tuned  # gpt-fast's setting: tunes the fused kernels' launch shapes
        return torch.compile(step, mode="reduce-overhead", fullgraph=True)

    for path, make in (("eager", lambda: step), ("captured", lambda: compiled(False)),
                       ("captured+coordinate-descent", lambda: compiled(True))):
        fn = make()
        t0 = time.perf_counter()
        for _ in range(3):
            out = fn(tok, pos).clone()
        sync()
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(4 * a.steps):  # unprofiled: the step's own time
            out = fn(tok, pos).clone()
        sync()
        wall = (time.perf_counter() - t0) / (4 * a.steps)
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])) as prof:
            for _ in range(a.steps):
                out = fn(tok, pos).clone()
            sync()
        del out
        by_kind: dict[str, float] = defaultdict(float)
        kernels = []
        for ev in prof.key_averages():
            if ev.device_type != DeviceType.CUDA or not ev.count:  # kernels only (CPU ops carry their kernels' time)
                continue
            dev_us = getattr(ev, "self_device_time_total", None) or getattr(ev, "self_cuda_time_total", 0)
            if dev_us:
                kernels.append((dev_us / a.steps, ev.count / a.steps, ev.key))
                by_kind[kind_of(ev.key)] += dev_us / a.steps
        kernel_ms = sum(v for v, _, _ in kernels) / 1e3
        report[path] = {
            "warmup_s": round(warm, 1), "step_ms": round(wall * 1e3, 3), "kernel_ms": round(kernel_ms, 3),
            "kernels_per_step": round(sum(c for _, c, _ in kernels), 1),
            "by_kind_ms": {k: round(v / 1e3, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "top": [(round(us, 1), round(c, 1), name[:90]) for us, c, name in sorted(kernels, reverse=True)[:15]],
        }
        if a.bandwidth_gb_s:
            report[path]["mbu_step"] = round(weight_bytes / (wall * a.bandwidth_gb_s * 1e9), 3)
            report[path]["mbu_kernels"] = round(weight_bytes / (kernel_ms / 1e3 * a.bandwidth_gb_s * 1e9), 3)
        print(json.dumps({path: report[path]}, indent=1), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
