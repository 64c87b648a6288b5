"""Physical ceilings: datasheet peaks, measured peaks, KV bytes, decode bounds, MBU and MFU.

A decode step must read every weight once and the KV cache of every sequence,
so tokens/s can never exceed bandwidth / bytes-per-step; a figure above that
bound is a measurement bug and is flagged as such.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bench.core.schema import NAN
from bench.spec.models import ModelShape


@dataclass(frozen=True)
class Peak:
    """One accelerator's datasheet: peak memory bandwidth (bytes/s), dense 16-bit tensor FLOP/s, memory (bytes)
    and board power (W), the source, and how sure the figures are: "datasheet" (the vendor's own document),
    "vendor" (the vendor's launch figures or product page), "press" (figures as the press reported them, no
    vendor document checked). A figure not published in a source checked is NaN, never guessed."""

    name: str
    bandwidth: float
    flops16: float
    source: str
    memory: float = NAN
    power_w: float = NAN
    sure: str = "datasheet"


TB = 1e12
TFLOP = 1e12
GB = 1e9

# Dense (no sparsity) bf16/fp16 tensor-core peaks with FP32 accumulate, and HBM/GDDR bandwidth.
# Patterns are matched against the name torch reports, most specific first.
DATASHEET: list[tuple[str, Peak]] = [
    # NVIDIA H100 Tensor Core GPU datasheet (2023): SXM5 3.35 TB/s, BF16 1,979 TFLOPS with sparsity -> 989 dense.
    (r"H100.*(SXM|HBM3)", Peak("H100 SXM", 3.35 * TB, 989 * TFLOP, "NVIDIA H100 datasheet", 80 * GB, 700)),
    # Same datasheet: H100 NVL 3.9 TB/s, BF16 1,671 sparse -> 835 dense.
    (r"H100 NVL", Peak("H100 NVL", 3.9 * TB, 835 * TFLOP, "NVIDIA H100 datasheet", 94 * GB, 400)),
    # Same datasheet: H100 PCIe 2.0 TB/s, BF16 1,513 sparse -> 756 dense.
    (r"H100.*PCIe", Peak("H100 PCIe", 2.0 * TB, 756 * TFLOP, "NVIDIA H100 datasheet", 80 * GB, 350)),
    # NVIDIA H200 datasheet (2024): 4.8 TB/s HBM3e, BF16 1,979 sparse -> 989 dense.
    (r"H200", Peak("H200", 4.8 * TB, 989 * TFLOP, "NVIDIA H200 datasheet", 141 * GB, 700)),
    # NVIDIA H20 (China-market Hopper) product brief: 96 GB HBM3 at 4.0 TB/s, BF16 148 TFLOPS dense.
    (r"H20\b", Peak("H20", 4.0 * TB, 148 * TFLOP, "NVIDIA H20 product brief", 96 * GB, 400, "press")),
    # NVIDIA A100 datasheet (2021): 40GB 1,555 GB/s; 80GB SXM 2,039 GB/s; 80GB PCIe 1,935 GB/s; BF16 312 dense.
    (r"A100.*80GB.*PCIe|A100 80GB PCIe", Peak("A100 80GB PCIe", 1.935 * TB, 312 * TFLOP, "NVIDIA A100 datasheet", 80 * GB, 300)),
    (r"A100.*80GB", Peak("A100 80GB SXM", 2.039 * TB, 312 * TFLOP, "NVIDIA A100 datasheet", 80 * GB, 400)),
    (r"A100", Peak("A100 40GB", 1.555 * TB, 312 * TFLOP, "NVIDIA A100 datasheet", 40 * GB, 400)),
    # A800 (China-market A100, NVLink cut): PCIe 80GB 1,935 GB/s, SXM 2,039 GB/s; BF16 312 dense (A800 datasheet).
    (r"A800.*PCIe", Peak("A800 80GB PCIe", 1.935 * TB, 312 * TFLOP, "NVIDIA A800 datasheet", 80 * GB, 300)),
    (r"A800", Peak("A800 80GB SXM", 2.039 * TB, 312 * TFLOP, "NVIDIA A800 datasheet", 80 * GB, 400)),
    # NVIDIA L40S datasheet: 864 GB/s GDDR6, BF16 733 sparse -> 362 dense.
    (r"L40S", Peak("L40S", 0.864 * TB, 362 * TFLOP, "NVIDIA L40S datasheet", 48 * GB, 350)),
    # NVIDIA L20 (China-market Ada) product brief: 48 GB GDDR6 at 864 GB/s, BF16 119.5 TFLOPS dense.
    (r"\bL20\b", Peak("L20", 0.864 * TB, 119.5 * TFLOP, "NVIDIA L20 product brief", 48 * GB, 275, "press")),
    # NVIDIA L4 datasheet: 300 GB/s, BF16 242 sparse -> 121 dense.
    (r"\bL4\b", Peak("L4", 0.300 * TB, 121 * TFLOP, "NVIDIA L4 datasheet", 24 * GB, 72)),
    # NVIDIA Ada GPU architecture whitepaper, RTX 4090: 1,008 GB/s; BF16 with FP32 accumulate 165.2 dense.
    (r"RTX 4090", Peak("RTX 4090", 1.008 * TB, 165.2 * TFLOP, "NVIDIA Ada architecture whitepaper", 24 * GB, 450)),
    # NVIDIA Ampere GA102 whitepaper, RTX 3090: 936 GB/s; FP16/BF16 tensor with FP32 accumulate 71 dense.
    (r"RTX 3090", Peak("RTX 3090", 0.936 * TB, 71 * TFLOP, "NVIDIA GA102 whitepaper", 24 * GB, 350)),
    # AMD Instinct MI300X datasheet: 5.3 TB/s HBM3, BF16 1,307.4 TFLOPS dense.
    (r"MI300X", Peak("MI300X", 5.3 * TB, 1307.4 * TFLOP, "AMD Instinct MI300X datasheet", 192 * GB, 750)),
    # AMD Instinct MI325X datasheet (Oct 2024): 256 GB HBM3E at 6.0 TB/s, BF16 1,307.4 TFLOPS dense, 1,000 W.
    (r"MI325X", Peak("MI325X", 6.0 * TB, 1307.4 * TFLOP, "AMD Instinct MI325X datasheet", 256 * GB, 1000)),
    # NVIDIA HGX B200 figures per GPU (Mar 2024; the 8-GPU board's totals over 8, its sparse BF16 halved):
    # 180 GB HBM3e, 8 TB/s, BF16 2.25 PFLOPS dense, 1,000 W.
    (r"B200", Peak("B200", 8.0 * TB, 2250 * TFLOP, "NVIDIA HGX B200 specifications (per GPU)", 180 * GB, 1000,
                   "vendor")),
    # NVIDIA Blackwell GeForce whitepaper, RTX 5090: 32 GB GDDR7 at 1,792 GB/s, FP16 tensor with FP32 accumulate
    # 209.5 TFLOPS dense (a GeForce card runs FP32 accumulate at half the FP16-accumulate rate), 575 W.
    (r"RTX 5090", Peak("RTX 5090", 1.792 * TB, 209.5 * TFLOP, "NVIDIA Blackwell GeForce whitepaper", 32 * GB, 575,
                       "press")),
    # Intel Gaudi 3 (Intel Vision, Apr 2024): 128 GB HBM2e at 3.7 TB/s, BF16 matrix 1,835 TFLOPS, 900 W (OAM).
    (r"Gaudi ?3|HL-325", Peak("Gaudi 3", 3.7 * TB, 1835 * TFLOP, "Intel Gaudi 3 launch figures", 128 * GB, 900,
                              "vendor")),
    # Groq LPU (GroqChip, as Groq and the press describe it): 230 MB of on-chip SRAM at 80 TB/s, FP16 188 TFLOPS;
    # no per-chip board power in a source checked. The weights of a model must fit the chips' SRAM.
    (r"Groq|LPU", Peak("Groq LPU", 80 * TB, 188 * TFLOP, "Groq LPU figures as reported (no datasheet checked)",
                       0.23 * GB, NAN, "press")),
    # AMD Instinct MI250X datasheet: 3.2 TB/s HBM2e, BF16 383 TFLOPS.
    (r"MI250X", Peak("MI250X", 3.2768 * TB, 383 * TFLOP, "AMD Instinct MI250X datasheet", 128 * GB, 560)),
    # The cards the articles name. A figure the vendor has not published in a source checked here is NaN:
    # its MBU or MFU stays empty with the reason, never a guessed ceiling.
    # Moore Threads' MTT S4000 launch (Dec 2023, as reported by io-tech.fi and others): 48 GB GDDR6 at 768 GB/s,
    # FP16/BF16 100 TFLOPS.
    (r"S4000", Peak("MTT S4000", 0.768 * TB, 100 * TFLOP, "Moore Threads MTT S4000 launch figures", 48 * GB, NAN,
                           "press")),
    # Cambricon's MLU370-X8 launch (Mar 2022): 48 GB LPDDR5 at 614.4 GB/s, FP16/BF16 96 TFLOPS.
    (r"MLU370", Peak("MLU370-X8", 0.6144 * TB, 96 * TFLOP, "Cambricon MLU370-X8 launch figures", 48 * GB, 250,
                           "vendor")),
    # Huawei Atlas 300I Duo (two Ascend 310P chips): 96 GB LPDDR4X at 408 GB/s, 280 TOPS INT8 (FP16 not in the
    # source checked). A chip of the card sees its half of the bandwidth only if torch names the card; not split.
    (r"Atlas 300I|310P", Peak("Atlas 300I Duo", 0.408 * TB, NAN, "Huawei Atlas 300I Duo specifications", 96 * GB,
                                         150, "vendor")),
    # Axera AX650N: 18 TOPS INT8 / 72 TOPS INT4 (Axera's figures); no FP16 or memory bandwidth published.
    (r"AX650", Peak("AX650N", NAN, NAN, "Axera AX650N: only INT8/INT4 TOPS published", sure="vendor")),
    # Named by the articles, no bandwidth or 16-bit figure from the vendor in a source checked here.
    (r"910B|Ascend ?910", Peak("Ascend 910B", NAN, NAN, "Huawei publishes no 910B datasheet figures", sure="unpublished")),
    (r"BI-V150|BI-V100|MR-V100|Iluvatar", Peak("Iluvatar CoreX", NAN, NAN, "no Iluvatar datasheet figures checked", sure="unpublished")),
    (r"P800|Kunlun", Peak("Kunlunxin P800", NAN, NAN, "no Kunlunxin datasheet figures checked", sure="unpublished")),
    (r"K100", Peak("Hygon K100", NAN, NAN, "no Hygon datasheet figures checked", sure="unpublished")),
    (r"\bS60\b|Enflame", Peak("Enflame S60", NAN, NAN, "no Enflame datasheet figures checked", sure="unpublished")),
]


def datasheet_peak(device_name: str) -> Peak | None:
    """The datasheet entry whose pattern matches the device name, if any (its unpublished figures NaN)."""
    for pattern, peak in DATASHEET:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peak
    return None


def decode_bytes_per_step(shape: ModelShape, weight_bytes_per_param: float, batch: int, context: float,
                          kv_bytes_per_element: int | None = None) -> float:
    """Bytes one decode step must read: every weight used once plus each sequence's KV cache.

    For mixture-of-experts models a batch touches at most all experts; we count
    the active parameters per token times the batch, capped at the full model.
    """
    params_read = min(shape.params, shape.active_params * batch)
    kv = batch * context * shape.kv_bytes_per_token(kv_bytes_per_element or int(weight_bytes_per_param) or 2)
    return params_read * weight_bytes_per_param + kv


def decode_bound_tok_s(bytes_per_step: float, batch: int, bandwidth: float) -> float:
    """Upper bound on decode tokens/s: batch * bandwidth / bytes per step."""
    if bytes_per_step <= 0 or bandwidth <= 0:
        return NAN
    return batch * bandwidth / bytes_per_step


def mbu(decode_tok_s: float, bytes_per_step: float, batch: int, bandwidth: float) -> float:
    """Model bandwidth utilisation: bytes read per second during decode / peak bandwidth."""
    if math.isnan(decode_tok_s) or bandwidth <= 0:
        return NAN
    return (decode_tok_s / batch) * bytes_per_step / bandwidth


def prefill_flops(shape: ModelShape, batch: int, new_tokens: int, cached_tokens: int = 0) -> float:
    """FLOPs of one prefill of new_tokens per sequence after cached_tokens already in the KV cache.

    2 * active params per token, plus attention: QK^T and AV each cost
    2 * d per (query, key) pair, with each new token attending to the cached
    tokens and, causally, to half of the new ones on average.
    """
    width = shape.layers * shape.heads * shape.head_dim
    dense = 2.0 * shape.active_params * batch * new_tokens
    attention = 4.0 * width * batch * new_tokens * (cached_tokens + new_tokens / 2)
    return dense + attention


def mfu(flops: float, seconds: float, peak_flops: float) -> float:
    """Model FLOP/s utilisation: achieved FLOP/s / peak FLOP/s."""
    if seconds <= 0 or peak_flops <= 0 or math.isnan(seconds):
        return NAN
    return flops / seconds / peak_flops


def roofline_columns(shape: ModelShape, weight_bytes_per_param: float, batch: int, input_len: int, output_len: int,
                     cached_tokens: int, decode_tok_s: float, ttft_ms: float, bandwidth: float,
                     flops: float, kv_bytes_per_element: int | None = None) -> dict[str, float]:
    """roofline_decode_tok_s, mbu and mfu of one generate case (NaN where the ceiling is unknown).

    The KV length is its mean over the decode; reused prefix tokens are not recomputed in prefill.
    """
    per_step = decode_bytes_per_step(shape, weight_bytes_per_param, batch, input_len + output_len / 2,
                                     kv_bytes_per_element)
    known_bw = not math.isnan(bandwidth)
    return {
        "roofline_decode_tok_s": decode_bound_tok_s(per_step, batch, bandwidth) if known_bw else NAN,
        "mbu": mbu(decode_tok_s, per_step, batch, bandwidth) if known_bw else NAN,
        "mfu": mfu(prefill_flops(shape, batch, input_len - cached_tokens, cached_tokens), ttft_ms / 1000, flops)
        if not math.isnan(flops) else NAN,
    }


def above_the_bound(row: dict) -> list[tuple[str, str]]:
    """The bounds a measured row passes: ("bandwidth" | "flops", what), none for a possible row."""
    found = []
    bound = row.get("roofline_decode_tok_s", NAN)
    if not math.isnan(bound) and row["decode_tok_s"] > bound:
        found.append(("bandwidth", f"decode {row['decode_tok_s']:.1f} tok/s is above the memory-bandwidth bound "
                                   f"{bound:.1f} tok/s"))
    if not math.isnan(row.get("mfu", NAN)) and row["mfu"] > 1:
        found.append(("flops", f"prefill MFU {row['mfu']:.2f} > 1"))
    return found


def predicted_extra_bytes(shape: ModelShape, bytes_per_element: int, batch: int, input_len: int,
                          output_len: int, materialized_scores: bool) -> float:
    """Memory a generate case adds to the loaded model: KV cache and the largest prefill activations.

    Per prompt token a layer holds a few hidden-size tensors (residual, norm, query,
    attention output) and the feed-forward's gate, up and product; the fp32 logits of
    the last position follow. Attention scores (batch * heads * input * total, fp32)
    count only where the engine materialises them (eager attention): fused kernels
    never hold them. On an H200 this matched torch's peak within 0.3% for
    llama-3.1-8b from 1k to 128k tokens at batch 1 and at batch 16.
    """
    total = input_len + output_len
    kv = batch * total * shape.kv_bytes_per_token(bytes_per_element)
    scores = batch * shape.heads * input_len * total * 4 if materialized_scores else 0
    activations = batch * input_len * (4 * shape.hidden + 3 * shape.intermediate) * bytes_per_element
    logits = 2 * batch * shape.vocab * 4
    return float(kv + scores + activations + logits)


def longest_fitting_input(extra_bytes_at, resident: float, limit: float, longest: int) -> int:
    """Largest input length n <= longest with resident + extra_bytes_at(n) <= limit (0 if none)."""
    lo, hi = 0, longest
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if resident + extra_bytes_at(mid) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo
