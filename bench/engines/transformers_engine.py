"""Hugging Face transformers models on three decode paths, each timed from inside one call.

- `generate`: transformers' own `generate`, as its users call it; a streamer stamps each step's tokens
  after synchronising the device (so on a GPU it measures transformers' loop as much as the card).
- `loop`: a plain eager decode loop over the model's forward with a static KV cache (decode_loop.py).
- `captured`: that loop's one-token step under torch.compile (CUDA graphs on CUDA/ROCm, inductor on a CPU).
`auto` (the default): captured on an accelerator, loop on a CPU (the README says why). Nothing is derived
by subtracting separate runs; exact lengths are asserted on every path.

Over several cards: a layer split (accelerate's device map, in this process) or transformers' tensor-parallel
plan (placement=tp: one rank process per card running the loop in step, tensor_parallel.py).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from bench.core import clock
from bench.core.errors import BadInput
from bench.core.metrics import Repetition, batch_repetition
from bench.core.params import Param
from bench.engines.base import Engine, LoadOptions
from bench.engines.decode_loop import DecodeLoop, timed_call
from bench.engines.quant import quantize, storage_note, weight_bytes
from bench.engines.tensor_parallel import TensorParallelGroup
from bench.hardware.devices import Device, free_memory_bytes, resolve_device, synchronize
from bench.hardware.placement import (
    PLACEMENTS,
    check_tensor_parallel_case,
    resolve_cards,
    tensor_parallel_ranks,
)
from bench.spec.models import ModelSpec

# This engine's own workload keys: one model over several cards of this machine.
OPTIONS: dict[str, Param] = {
    "cards": Param(str, "", "transformers: the cards one model is placed over: N (N cards from --device's on) or "
                   "a list such as 0,2 ('' = --device's card alone)", reload=True, devices=True, as_text=True),
    "placement": Param(str, "auto", "transformers: how a model spans cards: auto (layer-split on more than one) | "
                       "layer-split (accelerate's device map: each card a run of layers, one card at a time) | tp "
                       "(transformers' tensor-parallel plan: one process per card, every card at once; on a CPU, "
                       "cards=N ranks share the host)", choices=PLACEMENTS, reload=True),
}


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
        self.cards: list[Device] = []
        self.placement = ""
        self._split_note = ""
        self.group: TensorParallelGroup | None = None
        self._rank_peaks: list[float | None] = []

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """The cards exist, are not listed twice, the placement is one this engine runs, and compile does not
        contradict the decode path."""
        if params.get("compile") and params.get("decode") == "loop":
            raise BadInput("compile=true with decode=loop: loop is the eager loop; its compiled step is "
                           "decode=captured (compile=true alone means captured; with decode=generate it "
                           "compiles transformers' generate)")
        if params.get("placement") == "tp":
            check_tensor_parallel_case(params)
            return
        if params.get("cards") or params.get("placement") == "layer-split":
            cards = resolve_cards(params.get("cards", ""), resolve_device(params["device"]))
            import importlib.util

            if (len(cards) > 1 or params.get("placement") == "layer-split") and \
                    importlib.util.find_spec("accelerate") is None:
                raise BadInput("a model over several cards needs accelerate: pip install -e '.[multicard]'")

    def load(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        """Random weights for a bundled config (seeded), real weights for a local directory; on one card, or
        (cards=N, placement=layer-split) layer by layer over several."""
        from transformers import AutoModelForCausalLM

        logging.getLogger("transformers").setLevel(logging.ERROR)
        torch.manual_seed(options.seed)
        if options.engine.get("placement") == "tp":
            return self._load_tensor_parallel(model, device, options)
        cards = resolve_cards(options.engine.get("cards", ""), device)
        self.cards = cards
        self.placement = "layer-split" if len(cards) > 1 or options.engine.get("placement") == "layer-split" \
            else "one card" if device.type != "cpu" else "host"
        if self.placement == "layer-split":
            hf = self._load_split(model, cards, options)
        elif model.weights == "pretrained":
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
        self._split_note = ""
        if self.placement == "layer-split" and self.path == "captured":
            self.path = "loop"  # CUDA graphs over several cards are not attempted here
            self._split_note = "layer split: the captured path is not run over several cards; loop ran instead"
        if self.path in ("loop", "captured"):
            out_card = _output_card(hf, cards)
            # decode=auto on a CPU: the eager loop, on whichever KV cache decodes this shape faster here
            cache = "auto" if options.decode == "auto" and self.path == "loop" and device.type == "cpu" else "static"
            self.loop = DecodeLoop(hf, out_card, captured=self.path == "captured", cards=tuple(cards), cache=cache)

    def _load_tensor_parallel(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        """One rank process per card, each holding its shard (tensor_parallel.py); the eager loop unless the
        captured path is asked for (decode=captured: each rank compiles its own step)."""
        self.cards = tensor_parallel_ranks(options.engine.get("cards", ""), device)
        self.placement, self.device, self.options = "tp", device, options
        self.path = "captured" if options.decode == "captured" or options.compile else "loop"
        self._split_note = "" if self.path == "captured" or device.type == "cpu" else \
            "tensor parallel: the eager loop ran (decode=captured compiles each rank's step)"
        self.group = TensorParallelGroup(model, self.cards, options, captured=self.path == "captured")

    def _load_split(self, model: ModelSpec, cards: list[Device], options: LoadOptions) -> Any:
        """The model over `cards`: each card a run of layers in proportion to its free memory (placement.py)."""
        from transformers import AutoModelForCausalLM

        from bench.hardware.placement import layer_split_map, place_random_weights

        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(model.config, dtype=options.dtype,
                                                        trust_remote_code=model.trust_remote_code)
        device_map = layer_split_map(skeleton, [c.torch_device for c in cards],
                                     [float(free_memory_bytes(c)) for c in cards])
        if model.weights != "pretrained":
            return place_random_weights(skeleton, device_map)
        try:
            return AutoModelForCausalLM.from_pretrained(model.path, dtype=options.dtype, local_files_only=True,
                                                        device_map=device_map,
                                                        trust_remote_code=model.trust_remote_code)
        except ImportError as exc:
            raise BadInput(f"a model over several cards needs accelerate: pip install -e '.[multicard]' "
                           f"({exc})") from None

    def placement_info(self) -> dict[str, Any]:
        """The cards the model is on and how it spans them."""
        if self.group is not None:
            on_cards = self.device is not None and self.device.type != "cpu"
            # Every rank reads its shard of each layer at the same time: their bandwidth adds up (on a CPU the
            # ranks share the host's, read once).
            return {"cards": [str(c) for c in self.cards], "placement": "tp",
                    "devices": list(self.cards) if on_cards else [],
                    "concurrent_cards": len(self.cards) if on_cards else 1}
        if len(self.cards) < 2 and self.placement != "layer-split":
            return {}
        return {"cards": [str(c) for c in self.cards], "placement": self.placement, "devices": list(self.cards)}

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
        if self.group is not None:
            return self._generate_tensor_parallel(input_ids, output_len, on_token, reuse_prefix)
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
        out, seconds, frames = timed_call(
            lambda: self.model.generate(input_ids=ids, attention_mask=mask, streamer=streamer, **kwargs))
        synchronize(self.device)
        if frames:  # compile=true: transformers compiled its forward inside this call
            self._compile_s += seconds
            self._compiled_frames += frames
        if tuple(out.shape) != (batch, input_len + output_len) or len(streamer.times) != output_len:
            raise AssertionError(
                f"expected {output_len} new tokens for {batch} sequences, got output shape {tuple(out.shape)} "
                f"and {len(streamer.times)} timed steps"
            )
        return batch_repetition(start, streamer.times, batch, input_len)

    def _generate_tensor_parallel(self, input_ids: torch.Tensor, output_len: int, on_token: Any,
                                  reuse_prefix: int) -> Repetition:
        """One call on every rank at once; rank 0's step times (the ranks meet at every all-reduce)."""
        assert self.group is not None
        if reuse_prefix:
            raise ValueError("a reused prefix is not run tensor-parallel: use placement=layer-split or one card")
        batch, input_len = input_ids.shape
        step = self.group.run(input_ids, output_len)
        if step.frames:
            self._compile_s += step.compile_s
            self._compiled_frames += step.frames
        if len(step.times) != output_len or tuple(step.tokens.shape) != (batch, output_len):
            raise AssertionError(f"expected {output_len} new tokens for {batch} sequences, got "
                                 f"{tuple(step.tokens.shape)} and {len(step.times)} timed steps")
        self.last_tokens = step.tokens
        self._rank_peaks = step.peak_bytes
        for i, when in enumerate(step.times if on_token is not None else ()):
            on_token(i + 1, when)
        return batch_repetition(step.start, step.times, batch, input_len)

    def peak_memory_bytes(self) -> float | None:
        """Tensor parallel: the ranks' peaks summed (each rank's card, or on a CPU each rank's peak RSS)."""
        known = [p for p in self._rank_peaks if p is not None]
        return float(sum(known)) if self.group is not None and known else None

    def peak_memory_per_card(self) -> dict[str, float]:
        """Tensor parallel: each rank's peak in the last call (cpu:0, cpu:1 ... for ranks on one host)."""
        if self.group is None:
            return {}
        return {str(card): p for card, p in zip(self.cards, self._rank_peaks) if p is not None}

    def decode_path(self) -> str:
        return self.path

    def cache_used(self) -> str:
        """static on the loop and captured paths (tensor parallel included); auto where decode=auto chose per
        shape on a CPU (the same case on two machines that chose differently is still one case: the detail
        says which ran); '' on generate (the case's `cache` as asked)."""
        if self.group is not None:
            return "static"
        if self.loop is None:
            return ""
        return "auto" if self.loop.cache_mode == "auto" else self.loop.cache_used
    def compile_stats(self) -> tuple[float, int]:
        """Seconds of the calls in which torch.compile compiled (capture included), and the frames compiled."""
        said = (self._compile_s if self._compiled_frames else float("nan"), self._compiled_frames)
        self._compile_s, self._compiled_frames = 0.0, 0
        return said

    def notes(self) -> list[str]:
        note = storage_note(self.options.quant, self.device.type) if self.options and self.device else ""
        notes = [note] if note else []
        if self.path == "generate" and self.options is not None and self.options.compile:
            notes.append("compile=true on generate: transformers' generate compiled its own forward "
                         "(static cache); compile_s is that warm-up")
        if self.loop is not None and self.loop.fallback:
            notes.append(self.loop.fallback)
        if self.loop is not None and self.loop.cache_mode == "auto" and self.loop.choice_note:
            notes.append(self.loop.choice_note)
        if self.group is not None:
            if self.group.fallback:
                notes.append(self.group.fallback)
            notes.append(f"tensor parallel over {len(self.cards)} ranks (transformers' tp plan)" +
                         (": the ranks share one host's cores and memory bandwidth, so the roofline counts the "
                          "host once, and each layer's all-reduces go through gloo between processes (on a CPU "
                          "the figure measures that plumbing more than the host)"
                          if self.device is not None and self.device.type == "cpu" else ""))
        if self._split_note:
            notes.append(self._split_note)
        if len(self.cards) > 1 and self.group is None:
            notes.append(f"layer split over {len(self.cards)} cards: one card works at a time, so the roofline "
                         "and MBU use one card's bandwidth (the cards add memory, not speed)")
        return notes

    def weight_bytes(self) -> float | None:
        if self.group is not None:
            return float(sum(self.group.shard_bytes))
        return float(weight_bytes(self.model)) if self.model is not None else None

    def materializes_attention_scores(self) -> bool:
        impl = self.group.attention if self.group is not None else \
            getattr(getattr(self.model, "config", None), "_attn_implementation", None)
        return impl in (None, "eager")

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None
        self.model = None
        self.loop = None
        self._cached_prefix = None


def _output_card(model: Any, cards: list[Device]) -> Device:
    """The card the logits come out on (the head's), where each step's token is stamped."""
    head = model.get_output_embeddings()
    where = next(head.parameters()).device if head is not None else cards[-1].torch_device
    return next((c for c in cards if c.torch_device == where), cards[-1])


def resolve_path(decode: str, compile_: bool, device: Device) -> str:
    """The decode path a case runs: as asked (compile=true with generate is transformers' generate compiling its
    own forward; with loop it is refused before any work); compile=true alone is captured; auto is captured on an
    accelerator (launch overhead is what it removes) and loop on a CPU (see the README: on a CPU the compiled
    step is rarely faster and costs seconds to minutes of compilation per shape)."""
    if decode != "auto":
        return decode
    if compile_:
        return "captured"
    return "loop" if device.type == "cpu" else "captured"
