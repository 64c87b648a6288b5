"""Did the timed path compute the model? Its next-token distributions against an independent reference.

After a case's measured repetitions (never inside them), the path that was timed decodes the same prompts once
more with each step's logits kept, and a reference computes the same positions another way: one teacher-forced
forward over prompt + generated tokens, eager, without a KV cache, on the same device and weights (for a
quantized case the unquantized weights, where they fit). What differs between the two is the part worth
doubting: the KV cache and its positions, the captured graph, the one-token step, the decode loop itself.

The comparison is llama.cpp's `perplexity --kl-divergence`: per position the KL divergence of the timed path's
distribution from the reference's (nats), its mean and 99th percentile, and the share of positions whose top
token agrees. A sound path differs from the reference by float rounding only (a different order of the same
sums); a broken one decodes from another context, and its distributions differ by orders of magnitude more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.core.noise import NoiseWarning
from bench.core.paths import seeds_dir
from bench.core.schema import NAN
from bench.hardware.devices import free_memory_bytes

# The KL divergence (nats, mean over the checked positions) beyond which a path's output is not the model's, by
# the dtype the timed path ran in. Measured on this project's 2-core CPU (tests/benchmarks/output_check_noise.py,
# batch 2, 128 in, 64 out; README, "Is the output the model's?"): a sound path (generate, loop, captured) differs
# from the reference by 0.9-1.5e-7 in float32 and 3e-5 to 1.2e-4 in bfloat16 on tiny and qwen2.5-0.5b, while the
# broken paths the tests build (a KV cache written one position early, a step fed the previous token, the head
# on the wrong layer) measured 7.6e-3 (qwen2.5-0.5b, wrong layer) to 2.5 nats. float32's limit sits ~700x above
# its noise, bfloat16's (and float16's) ~40x above, below the smallest broken path, with room for real weights,
# whose peaked distributions turn the same rounding into more nats. A quantized case is compared with the
# unquantized model, so its figure is what quantization costs (int8 7e-4 on both models, int4 0.06-0.09 on these
# random weights); its limit only catches a path broken beyond that cost.
KLD_LIMITS: dict[str, float] = {"float32": 1e-4, "float64": 1e-6, "bfloat16": 5e-3, "float16": 5e-3}
QUANT_KLD_LIMITS: dict[str, float] = {"int8": 2e-2, "int4": 0.5}
CHECK_MAX_BYTES = 1 << 30  # logits kept for the check at most; beyond, fewer sequences of the batch are checked
CHECK_MAX_ROWS = 4  # sequences checked at most: the reference costs a prefill of prompt + answer per sequence

REFERENCE = "teacher-forced eager forward without a KV cache"


@dataclass(frozen=True)
class OutputCheck:
    """One case's output check: the divergence columns, what the reference was, its cost, and the limit."""

    kld_mean: float = NAN
    kld_p99: float = NAN
    top1: float = NAN
    ref: str = ""  # what the reference was; "not checked: why" when the check did not run
    seconds: float = NAN
    limit: float = NAN  # the KLD beyond which the row gets a wrong-output warning
    perplexity: float = NAN  # pretrained weights: on seeds/perplexity.txt, as the case ran them

    @classmethod
    def skipped(cls, why: str, seconds: float = NAN) -> OutputCheck:
        """A check that did not run, and why in words (its numbers stay empty)."""
        return cls(ref=f"not checked: {why}", seconds=seconds)

    @property
    def ran(self) -> bool:
        return self.kld_mean == self.kld_mean

    def columns(self) -> dict[str, Any]:
        """The row's check_* columns."""
        return {"check_kld_mean": self.kld_mean, "check_kld_p99": self.kld_p99, "check_top1": self.top1,
                "check_ref": self.ref, "check_s": self.seconds, "perplexity": self.perplexity}

    def warnings(self) -> list[NoiseWarning]:
        """A wrong-output warning where the divergence exceeds the limit."""
        if not self.ran or not self.kld_mean > self.limit:
            return []
        return [NoiseWarning("wrong-output", f"the timed path's next-token distributions differ from the "
                                             f"reference's by {self.kld_mean:.3g} nats (KL mean; p99 "
                                             f"{self.kld_p99:.3g}, top-1 agreement {self.top1:.1%}), beyond "
                                             f"{self.limit:g}: the timed path's output disagrees with the model")]


def kld_limit(dtype: torch.dtype, quant: str = "none") -> float:
    """The wrong-output threshold for a path run in `dtype` (and quantization, against unquantized weights)."""
    base = KLD_LIMITS.get(str(dtype).removeprefix("torch."), KLD_LIMITS["bfloat16"])
    return max(base, QUANT_KLD_LIMITS.get(quant, 0.0))


def divergence(timed: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position (rows of the last dimension = vocabulary): KL(reference || timed) in nats, and whether the
    top tokens agree. llama.cpp's definition: sum p_ref * (log p_ref - log p_timed)."""
    ref_lp = torch.log_softmax(reference.float(), dim=-1)
    timed_lp = torch.log_softmax(timed.float(), dim=-1)
    kld = (ref_lp.exp() * (ref_lp - timed_lp)).sum(-1).clamp_min(0.0)  # rounding can make a zero slightly < 0
    return kld, reference.argmax(-1) == timed.argmax(-1)


TOP_LOGPROBS = 20  # what vLLM returns per position by default (its max_logprobs); the rest of the mass is lumped


def top_divergence(reference: torch.Tensor, top: list[dict[int, float]],
                   chosen: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position, where the timed path gives only its top tokens' log-probabilities (vLLM, a server): KL of
    the two distributions coarsened to those tokens plus one bucket for the rest of the vocabulary, a lower
    bound on the full KL (coarsening never adds divergence), and whether the token it chose is the reference's
    top one. reference: (positions, vocab) logits; top: {token id: logprob} per position."""
    ref_lp = torch.log_softmax(reference.float(), dim=-1).cpu()
    klds = []
    for row, given in zip(ref_lp, top):
        ids = torch.tensor(list(given), dtype=torch.long)
        q = torch.tensor(list(given.values()), dtype=torch.float64).exp()
        p = row[ids].double().exp()
        p = torch.cat([p, (1 - p.sum()).clamp_min(1e-12).reshape(1)])
        q = torch.cat([q, (1 - q.sum()).clamp_min(1e-12).reshape(1)])
        klds.append(float((p * (p.log() - q.log())).sum().clamp_min(0.0)))
    agree = reference.argmax(-1).cpu() == torch.tensor(chosen, dtype=torch.long)
    return torch.tensor(klds), agree


def summarise(kld: torch.Tensor, agree: torch.Tensor, ref: str, seconds: float, limit: float) -> OutputCheck:
    """The check's columns from every position's divergence and top-1 agreement."""
    kld = kld.flatten().double().cpu()
    return OutputCheck(kld_mean=float(kld.mean()), kld_p99=float(torch.quantile(kld, 0.99)),
                       top1=float(agree.flatten().float().mean()), ref=ref, seconds=seconds, limit=limit)


def rows_to_check(batch: int, output_len: int, vocab: int, element_size: int) -> int:
    """How many sequences of the batch are checked: at most CHECK_MAX_ROWS, and as many as CHECK_MAX_BYTES of kept
    logits hold (at least one). Every sequence of the batch is decoded as timed; the first ones are compared."""
    per_row = max(1, output_len * vocab * element_size)
    return max(1, min(batch, CHECK_MAX_ROWS, CHECK_MAX_BYTES // per_row))


def teacher_forced(model: Any, ids: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The reference: logits (batch, output_len, vocab) predicting each generated token, from one eager forward
    over prompt + generated tokens without a KV cache."""
    full = torch.cat([ids, tokens[:, :-1].to(ids.device)], dim=1)
    keep = tokens.shape[1]
    try:
        out = model(input_ids=full, use_cache=False, logits_to_keep=keep)
    except TypeError:  # a model without logits_to_keep: every position's logits, then the last ones
        out = model(input_ids=full, use_cache=False)
    return out.logits[:, -keep:]


def compare(timed_logits: torch.Tensor, tokens: torch.Tensor, ids: torch.Tensor,
            forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every position's divergence for the checked sequences, one sequence's reference at a time (the
    reference's activations and logits for the whole batch at once could outgrow what the timed path needed).
    timed_logits: (rows, output_len, vocab) for the first `rows` sequences of ids/tokens."""
    klds, agrees = [], []
    for row in range(timed_logits.shape[0]):
        ref = forward(ids[row:row + 1], tokens[row:row + 1])
        kld, agree = divergence(timed_logits[row].to(ref.device), ref[0])
        klds.append(kld.cpu())
        agrees.append(agree.cpu())
    return torch.cat(klds), torch.cat(agrees)


WEIGHTS_ELSEWHERE = ("the weights are random ones made inside the engine, which no reference can load; give --model "
                     "DIR of a checkpoint to check its output")


def local_reference(spec: Any, device: Any, dtype: torch.dtype) -> tuple[Any, str]:
    """(the checkpoint as transformers loads it, eager, on `device`, '') for an engine whose own model cannot be
    read (vLLM's engine core, a server), or (None, why not): random weights that live only in that engine, or
    too little free memory beside it."""
    from transformers import AutoModelForCausalLM

    if spec.weights != "pretrained":
        return None, WEIGHTS_ELSEWHERE
    need = spec.shape.params * torch.finfo(dtype).bits // 8
    free = free_memory_bytes(device)
    if free is not None and need > 0.8 * free:
        return None, f"a reference copy of the weights ({need / 1e9:.2f} GB) does not fit beside the engine " \
                     f"({free / 1e9:.2f} GB free)"
    model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype, local_files_only=True,
                                                 trust_remote_code=spec.trust_remote_code)
    return model.to(device.torch_device).eval(), ""


@torch.inference_mode()
def check_top(engine: str, spec: Any, device: Any, dtype: torch.dtype, prompts: list[list[int]],
              answers: list[tuple[list[int], list[dict[int, float]]]], watch: Stopwatch) -> OutputCheck:
    """The output check of an engine that returns its tokens and their top log-probabilities: each answer's
    positions against the local checkpoint's teacher-forced forward (top_divergence)."""
    model, why = local_reference(spec, device, dtype)
    if model is None:
        return OutputCheck.skipped(why, watch())
    klds, agrees = [], []
    for prompt, (tokens, top) in zip(prompts, answers):
        if len(top) != len(tokens) or not all(top):
            return OutputCheck.skipped(f"the {engine} engine returned no log-probabilities for every token", watch())
        ids = torch.tensor([prompt], device=device.torch_device)
        ref = teacher_forced(model, ids, torch.tensor([tokens], device=device.torch_device))[0]
        kld, agree = top_divergence(ref, top, tokens)
        klds.append(kld)
        agrees.append(agree)
    said = (f"{REFERENCE} of the same checkpoint in transformers, against the {engine} engine's top "
            f"{TOP_LOGPROBS} log-probabilities per token (the rest of the vocabulary one bucket: a lower bound on "
            "the KL)")
    return summarise(torch.cat(klds), torch.cat(agrees), said, watch(), kld_limit(dtype))


PERPLEXITY_TEXT = "perplexity.txt"  # in seeds/: plain prose written for claimbench (no copyrighted text)
PERPLEXITY_WINDOW = 1024  # tokens per forward (the model's own limit where shorter)


def perplexity(model: Any, model_dir: str, max_position: int, device: Any) -> tuple[float, str]:
    """(perplexity, '') of the model on claimbench's fixed text, or (NaN, why not): exp of the mean negative
    log-likelihood of every token after the first of each window, the text cut into consecutive windows of
    PERPLEXITY_WINDOW tokens (no overlap, so each window's first tokens have little context: the figure compares
    machines, engines and quantizations of one checkpoint, not checkpoints with other published numbers)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        return NAN, f"perplexity not measured: no tokenizer in {model_dir} ({str(exc).splitlines()[0][:120]})"
    ids = tokenizer((seeds_dir() / PERPLEXITY_TEXT).read_text(encoding="utf-8"), return_tensors="pt")["input_ids"]
    window = min(PERPLEXITY_WINDOW, max_position or PERPLEXITY_WINDOW)
    total, count = 0.0, 0
    for start in range(0, ids.shape[1] - 1, window):
        chunk = ids[:, start:start + window].to(device)
        if chunk.shape[1] < 2:
            break
        logits = model(input_ids=chunk, use_cache=False).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], chunk[0, 1:].to(logits.device), reduction="sum")
        total, count = total + float(nll), count + chunk.shape[1] - 1
    return float(torch.exp(torch.tensor(total / count))), ""


class Stopwatch:
    """Seconds since it was made: the check's own cost (check_s)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
