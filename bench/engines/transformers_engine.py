"""Hugging Face transformers models on three decode paths, each timed from inside one call.

- `generate`: transformers' own `generate`, as its users call it; a streamer stamps each step's tokens
  after synchronising the device (so on a GPU it measures transformers' loop as much as the card).
- `loop`: a plain eager decode loop over the model's forward with a static KV cache (decode_loop.py).
- `captured`: that loop's one-token step under torch.compile (CUDA graphs on CUDA/ROCm, inductor on a CPU).
`auto` (the default): captured on an accelerator, loop on a CPU (the README says why). Nothing is derived
by subtracting separate runs; exact lengths are asserted on every path.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from bench import clock
from bench.devices import Device, synchronize
from bench.engines.base import Engine, LoadOptions
from bench.engines.decode_loop import DecodeLoop, timed_call
from bench.metrics import Repetition, batch_repetition
from bench.models import ModelSpec
from bench.quant import quantize, storage_note, weight_bytes


class _TimingStreamer:
    """Receives the prompt, then one tensor of new tokens per decoding step; stamps each step.

    `generate` calls put(prompt) first, then put(next_tokens) after every step.
    The .cpu() copy that generate does before put already waits for the device;
    the explicit synchronize makes that a guarantee rather than an accident.
    """

    def __init__(self, device: Device, on_token: Any = None) -> None:
        self.device = device
        self.on_token = on_token
        self.prompt_seen = False
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        synchronize(self.device)
        now = clock.now()
        self.times.append(now)
        if self.on_token is not None:
            self.on_token(len(self.times), now)

    def end(self) -> None:
        pass


class TransformersEngine(Engine):
    """transformers AutoModelForCausalLM + generate (greedy, exact lengths, EOS ignored)."""

    name = "transformers"

    def __init__(self) -> None:
        self.model: Any = None
        self.device: Device | None = None
        self.options: LoadOptions | None = None
        self._cached_prefix: tuple[Any, Any] | None = None
        self.path = "generate"
        self.loop: DecodeLoop | None = None
        self._compile_s = 0.0
        self._compiled_frames = 0

    def load(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        """Random weights for a bundled config (seeded), real weights for a local directory."""
        from transformers import AutoModelForCausalLM

        logging.getLogger("transformers").setLevel(logging.ERROR)
        torch.manual_seed(options.seed)
        if model.weights == "pretrained":
            hf = AutoModelForCausalLM.from_pretrained(model.path, dtype=options.dtype, local_files_only=True,
                                                      trust_remote_code=model.trust_remote_code)
            hf = hf.to(device.torch_device)
        else:
            # Build directly on the device: no host copy of a large model.
            with torch.device(device.torch_device):
                hf = AutoModelForCausalLM.from_config(model.config, dtype=options.dtype,
                                                      trust_remote_code=model.trust_remote_code)
        hf.eval()
        quantize(hf, options.quant, device.type)
        self.model, self.device, self.options = hf, device, options
        self._pad = min(model.special_token_ids or {0})
        self.path = resolve_path(options.decode, options.compile, device)
        if self.path in ("loop", "captured"):
            self.loop = DecodeLoop(hf, device, captured=self.path == "captured")

    def _generation_kwargs(self, output_len: int) -> dict[str, Any]:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import CompileConfig

        assert self.options is not None
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=output_len,
            min_new_tokens=output_len,
            # No EOS at all: nothing can end a sequence early, so lengths are exact.
            eos_token_id=None,
            pad_token_id=self._pad,
            use_cache=True,
            cache_implementation="static" if self.options.cache == "static" else None,
            disable_compile=not self.options.compile,
        )
        if self.options.compile:
            # transformers only auto-compiles on GPUs; ask for it on every device.
            compile_config = CompileConfig(fullgraph=False)
            compile_config._compile_all_devices = True
            config.compile_config = compile_config
        return {"generation_config": config}

    @torch.inference_mode()
    def _prefix_cache(self, prefix: torch.Tensor) -> Any:
        """KV cache of a prefix, computed once per distinct prefix and kept for reuse."""
        from transformers import DynamicCache

        key = (tuple(prefix.shape), hash(tuple(prefix.flatten().tolist())))
        if self._cached_prefix is None or self._cached_prefix[0] != key:
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=prefix, past_key_values=cache, use_cache=True)
            self._cached_prefix = (key, cache)
        return self._cached_prefix[1]

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any = None,
                 reuse_prefix: int = 0) -> Repetition:
        """One timed call on the engine's decode path; asserts the exact token count. A reused prefix runs on
        generate (its DynamicCache holds the prefix), so a prefix-reuse pair is timed on one path."""
        assert self.model is not None and self.device is not None, "load() first"
        batch, input_len = input_ids.shape
        ids = input_ids.to(self.device.torch_device)
        if self.loop is not None and not reuse_prefix:
            (start, times), seconds, frames = timed_call(lambda: self.loop.run(ids, output_len, on_token))
            if frames:
                self._compile_s += seconds
                self._compiled_frames += frames
            if len(times) != output_len or tuple(self.loop.last_tokens.shape) != (batch, output_len):
                raise AssertionError(f"expected {output_len} new tokens for {batch} sequences, got "
                                     f"{tuple(self.loop.last_tokens.shape)} and {len(times)} timed steps")
            return batch_repetition(start, times, batch, input_len)
        mask = torch.ones_like(ids)
        streamer = _TimingStreamer(self.device, on_token)
        kwargs = self._generation_kwargs(output_len)
        if reuse_prefix:
            if not 0 < reuse_prefix < input_len:
                raise ValueError(f"prefix of {reuse_prefix} tokens must be shorter than the prompt ({input_len})")
            cache = self._prefix_cache(ids[:, :reuse_prefix])
            excess = cache.get_seq_length() - reuse_prefix
            if excess > 0:
                cache.crop(-excess)  # drop what the previous call appended: back to the bare prefix
            kwargs["past_key_values"] = cache
            kwargs["generation_config"].cache_implementation = None
        synchronize(self.device)
        start = clock.now()
        out = self.model.generate(input_ids=ids, attention_mask=mask, streamer=streamer, **kwargs)
        synchronize(self.device)
        if tuple(out.shape) != (batch, input_len + output_len) or len(streamer.times) != output_len:
            raise AssertionError(
                f"expected {output_len} new tokens for {batch} sequences, got output shape {tuple(out.shape)} "
                f"and {len(streamer.times)} timed steps"
            )
        return batch_repetition(start, streamer.times, batch, input_len)

    def decode_path(self) -> str:
        return self.path

    def compile_stats(self) -> tuple[float, int]:
        """Seconds of the calls in which torch.compile compiled (capture included), and the frames compiled."""
        said = (self._compile_s if self._compiled_frames else float("nan"), self._compiled_frames)
        self._compile_s, self._compiled_frames = 0.0, 0
        return said

    def notes(self) -> list[str]:
        note = storage_note(self.options.quant, self.device.type) if self.options and self.device else ""
        notes = [note] if note else []
        if self.loop is not None and self.loop.fallback:
            notes.append(self.loop.fallback)
        return notes

    def weight_bytes(self) -> float | None:
        return float(weight_bytes(self.model)) if self.model is not None else None

    def materializes_attention_scores(self) -> bool:
        impl = getattr(getattr(self.model, "config", None), "_attn_implementation", None)
        return impl in (None, "eager")

    def close(self) -> None:
        self.model = None
        self.loop = None
        self._cached_prefix = None


def resolve_path(decode: str, compile_: bool, device: Device) -> str:
    """The decode path a case runs: as asked; compile=true is a synonym of captured; auto is captured on an
    accelerator (launch overhead is what it removes) and loop on a CPU (see the README: on a CPU the compiled
    step is rarely faster and costs seconds to minutes of compilation per shape)."""
    if decode != "auto":
        return decode
    if compile_:
        return "captured"
    return "loop" if device.type == "cpu" else "captured"
