"""How the transformers engine lays one model over the cards, each a strategy behind one interface:

- `InProcess`: the model in this process, on one device or layer by layer over several (accelerate's device
  map, one card at a time), decoded by transformers' `generate` or the static-cache loop (decode_loop.py).
- `TensorParallel`: transformers' tensor-parallel plan, one rank process per card running the loop in step
  (tensor_parallel.py).

Each call returns a typed `Call`: the repetition's timings, what compiling cost inside it, and the tokens.
The engine (transformers_engine.py) chooses the strategy and asks it; nothing tests which one it holds.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from bench.core import clock
from bench.core.errors import BadInput
from bench.core.metrics import Repetition, batch_repetition
from bench.engines import output_check
from bench.engines.base import LoadOptions
from bench.engines.decode_loop import DecodeLoop, timed_call
from bench.engines.output_check import OutputCheck
from bench.engines.quant import quantize, weight_bytes
from bench.engines.tensor_parallel import TensorParallelGroup
from bench.hardware.devices import Device, free_memory_bytes, synchronize
from bench.hardware.placement import (
    layer_split_map,
    place_random_weights,
    resolve_cards,
    tensor_parallel_ranks,
)
from bench.spec.models import ModelSpec


@dataclass
class Call:
    """One timed call: its repetition, the seconds and frames torch.compile spent inside it, its tokens."""

    repetition: Repetition
    compile_s: float = 0.0
    frames: int = 0
    tokens: torch.Tensor | None = None  # (batch, output_len), where the path keeps them


class Placement(ABC):
    """One model over `cards`, decoded on `path`; `note` says what the placement changed about the path."""

    kind: str  # "host" | "one card" | "layer-split" | "tp"
    cards: list[Device]
    path: str
    note: str = ""
    loop: DecodeLoop | None = None

    @abstractmethod
    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any, reuse_prefix: int) -> Call:
        """One timed call of exactly output_len tokens per sequence (AssertionError otherwise)."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """{'placement', 'cards', 'devices'[, 'concurrent_cards']}: how the model spans cards; {} on one."""

    def notes(self) -> list[str]:
        return [self.note] if self.note else []

    @abstractmethod
    def weight_bytes(self) -> float | None: ...

    @abstractmethod
    def attention(self) -> str | None:
        """The attention implementation the model runs (None: transformers' default)."""

    def peak_bytes(self) -> float | None:
        """The placement's own peak memory of the last call where it knows better (ranks in other processes)."""
        return None

    @abstractmethod
    def check_output(self, input_ids: torch.Tensor, output_len: int, reuse_prefix: int) -> OutputCheck:
        """The timed path once more with its logits kept, against the teacher-forced reference (output_check)."""

    def peak_per_card(self) -> dict[str, float]:
        return {}

    def cache_used(self) -> str:
        """The KV cache the last call used (static | dynamic | auto); '' where the case's `cache` holds."""
        return ""

    @abstractmethod
    def close(self) -> None: ...


def _check(output_len: int, batch: int, steps: int, shape: tuple[int, ...]) -> None:
    if steps != output_len or shape != (batch, output_len):
        raise AssertionError(f"expected {output_len} new tokens for {batch} sequences, got {shape} and {steps} "
                             "timed steps")


class _TimingStreamer:
    """Receives the prompt, then one tensor of new tokens per decoding step; stamps each step.

    `generate` calls put(prompt) first, then put(next_tokens) after every step. The .cpu() copy that generate
    does before put already waits for the device; the explicit synchronize makes that a guarantee rather than
    an accident.
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


class InProcess(Placement):
    """The model in this process: on one device, or layer by layer over several cards."""

    def __init__(self, model: ModelSpec, device: Device, options: LoadOptions, path: str) -> None:
        self.cards = resolve_cards(options.engine.get("cards", ""), device)
        split = len(self.cards) > 1 or options.engine.get("placement") == "layer-split"
        self.kind = "layer-split" if split else "one card" if device.type != "cpu" else "host"
        self.spec = model
        hf = self._build(model, device, options)
        quantize(hf, options.quant, device.type)
        self.model, self.device, self.options = hf, device, options
        self.pad = min(model.special_token_ids or {0})
        self._ppl: tuple[float, str] | None = None  # perplexity on the fixed text, and why not
        self.path = path
        self._prefix: tuple[Any, Any] | None = None
        if split and path == "captured":
            self.path = "loop"  # CUDA graphs over several cards are not attempted here
            self.note = "layer split: the captured path is not run over several cards; loop ran instead"
        if self.path in ("loop", "captured"):
            # decode=auto on a CPU: the eager loop, on whichever KV cache decodes this shape faster here
            cache = "auto" if options.decode == "auto" and self.path == "loop" and device.type == "cpu" else "static"
            self.loop = DecodeLoop(hf, _output_card(hf, self.cards), captured=self.path == "captured",
                                   cards=tuple(self.cards), cache=cache)

    def _build(self, model: ModelSpec, device: Device, options: LoadOptions) -> Any:
        """The model unquantized, in eval mode: a checkpoint's weights, or a bundled config's random ones from
        the seed (built again from the same seed, the same weights: the output check's unquantized reference)."""
        from transformers import AutoModelForCausalLM

        torch.manual_seed(options.seed)
        if self.kind == "layer-split":
            hf = _load_split(model, self.cards, options)
        elif model.weights == "pretrained":
            hf = AutoModelForCausalLM.from_pretrained(model.path, dtype=options.dtype, local_files_only=True,
                                                      trust_remote_code=model.trust_remote_code)
            hf = hf.to(device.torch_device)
        else:
            with torch.device(device.torch_device):  # built on the device: no host copy of a large model
                hf = AutoModelForCausalLM.from_config(model.config, dtype=options.dtype,
                                                      trust_remote_code=model.trust_remote_code)
        return hf.eval()

    @torch.inference_mode()
    def check_output(self, input_ids: torch.Tensor, output_len: int, reuse_prefix: int) -> OutputCheck:
        """The timed path (loop or captured step, or generate with its prefix cache) with its logits kept, then
        the reference: this model eagerly without a cache, or for a quantized case the unquantized model built
        again beside it where it fits."""
        watch = output_check.Stopwatch()
        batch = input_ids.shape[0]
        ids = input_ids.to(self.device.torch_device)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        rows = output_check.rows_to_check(batch, output_len, vocab, 4)
        if self.loop is not None and not reuse_prefix:
            tokens, logits = self.loop.run_with_logits(ids, output_len, rows)
        else:
            tokens, logits = self._generate_with_logits(ids, output_len, reuse_prefix, rows)
        reference, said = self.model, output_check.REFERENCE
        quant = self.options.quant
        if quant != "none":
            need = self.spec.shape.params * torch.finfo(self.options.dtype).bits // 8
            free = sum(free_memory_bytes(c) for c in self.cards)
            if need > 0.8 * free:
                return OutputCheck.skipped(f"the unquantized weights ({need / 1e9:.2f} GB) do not fit beside the "
                                           f"{quant} ones ({free / 1e9:.2f} GB free)", watch())
            reference = self._build(self.spec, self.device, self.options)
            said += f", unquantized {str(self.options.dtype).removeprefix('torch.')} weights against {quant}"
        else:
            said += ", same weights"
        kld, agree = output_check.compare(logits, tokens, ids, partial(output_check.teacher_forced, reference))
        reference = None  # an unquantized copy goes now, not at the next case
        if rows < batch:
            said += f" ({rows} of {batch} sequences checked)"
        check = output_check.summarise(kld, agree, said, watch(), output_check.kld_limit(self.options.dtype, quant))
        return dataclasses.replace(check, perplexity=self._perplexity(), seconds=watch())

    def _perplexity(self) -> float:
        """Pretrained weights: perplexity on claimbench's fixed text, once per load (the model as loaded,
        quantized included); NaN for random weights, and where it cannot be measured the reason is a note."""
        if self.spec.weights != "pretrained":
            return float("nan")
        if self._ppl is None:
            self._ppl = output_check.perplexity(self.model, self.spec.path, self.spec.shape.max_position,
                                                self.device.torch_device)
        return self._ppl[0]

    def _generate_with_logits(self, ids: torch.Tensor, output_len: int, reuse_prefix: int,
                              rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """transformers' generate as timed (its config, its prefix cache), with its raw per-step logits."""
        kwargs = self.generation_kwargs(output_len)
        if reuse_prefix:
            self._reuse(kwargs, ids[:, :reuse_prefix])
        out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), output_logits=True,
                                  return_dict_in_generate=True, **kwargs)
        tokens = out.sequences[:, ids.shape[1]:]
        return tokens, torch.stack([step[:rows] for step in out.logits], dim=1)

    def info(self) -> dict[str, Any]:
        if len(self.cards) < 2 and self.kind != "layer-split":
            return {}
        return {"cards": [str(c) for c in self.cards], "placement": self.kind, "devices": list(self.cards)}

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any, reuse_prefix: int) -> Call:
        batch, input_len = input_ids.shape
        ids = input_ids.to(self.device.torch_device)
        if self.loop is not None and not reuse_prefix:
            (start, times), seconds, frames = timed_call(lambda: self.loop.run(ids, output_len, on_token))
            _check(output_len, batch, len(times), tuple(self.loop.last_tokens.shape))
            return Call(batch_repetition(start, times, batch, input_len), seconds if frames else 0.0, frames,
                        self.loop.last_tokens)
        mask = torch.ones_like(ids)
        streamer = _TimingStreamer(self.device, on_token)
        kwargs = self.generation_kwargs(output_len)
        if reuse_prefix:
            if not 0 < reuse_prefix < input_len:
                raise ValueError(f"prefix of {reuse_prefix} tokens must be shorter than the prompt ({input_len})")
            self._reuse(kwargs, ids[:, :reuse_prefix])
        synchronize(self.device)
        start = clock.now()
        out, seconds, frames = timed_call(
            lambda: self.model.generate(input_ids=ids, attention_mask=mask, streamer=streamer, **kwargs))
        synchronize(self.device)
        _check(output_len, batch, len(streamer.times), (out.shape[0], out.shape[1] - input_len))
        # compile=true: transformers compiled its forward inside this call
        return Call(batch_repetition(start, streamer.times, batch, input_len), seconds if frames else 0.0, frames,
                    out[:, input_len:])

    def generation_kwargs(self, output_len: int) -> dict[str, Any]:
        """transformers' GenerationConfig for exact, greedy lengths (EOS ignored), compiled where asked."""
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import CompileConfig

        config = GenerationConfig(
            do_sample=False, max_new_tokens=output_len, min_new_tokens=output_len,
            eos_token_id=None,  # no EOS at all: nothing can end a sequence early, so lengths are exact
            pad_token_id=self.pad, use_cache=True,
            cache_implementation="static" if self.options.cache == "static" else None,
            disable_compile=not self.options.compile,
        )
        if self.options.compile:
            compile_config = CompileConfig(fullgraph=False)
            compile_config._compile_all_devices = True  # transformers only auto-compiles on GPUs
            config.compile_config = compile_config
        return {"generation_config": config}

    def _reuse(self, kwargs: dict[str, Any], prefix: torch.Tensor) -> None:
        """generate's kwargs set to start from the prefix's KV cache, cropped back to the bare prefix (the
        previous call appended its own tokens to it)."""
        cache = self._prefix_cache(prefix)
        excess = cache.get_seq_length() - prefix.shape[1]
        if excess > 0:
            cache.crop(-excess)
        kwargs["past_key_values"] = cache
        kwargs["generation_config"].cache_implementation = None

    @torch.inference_mode()
    def _prefix_cache(self, prefix: torch.Tensor) -> Any:
        """KV cache of a prefix, computed once per distinct prefix and kept for reuse."""
        from transformers import DynamicCache

        key = (tuple(prefix.shape), hash(tuple(prefix.flatten().tolist())))
        if self._prefix is None or self._prefix[0] != key:
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=prefix, past_key_values=cache, use_cache=True)
            self._prefix = (key, cache)
        return self._prefix[1]

    def notes(self) -> list[str]:
        notes = super().notes() + ([self._ppl[1]] if self._ppl and self._ppl[1] else [])
        if self.path == "generate" and self.options.compile:
            notes.append("compile=true on generate: transformers' generate compiled its own forward "
                         "(static cache); compile_s is that warm-up")
        if self.loop is not None and self.loop.fallback:
            notes.append(self.loop.fallback)
        if self.loop is not None and self.loop.cache_mode == "auto" and self.loop.choice_note:
            notes.append(self.loop.choice_note)
        if len(self.cards) > 1:
            notes.append(f"layer split over {len(self.cards)} cards: one card works at a time, so the roofline "
                         "and MBU use one card's bandwidth (the cards add memory, not speed)")
        return notes

    def weight_bytes(self) -> float | None:
        return float(weight_bytes(self.model))

    def attention(self) -> str | None:
        return getattr(getattr(self.model, "config", None), "_attn_implementation", None)

    def cache_used(self) -> str:
        if self.loop is None:
            return ""
        return "auto" if self.loop.cache_mode == "auto" else self.loop.cache_used

    def close(self) -> None:
        self.model = None
        self.loop = None
        self._prefix = None


class TensorParallel(Placement):
    """One rank process per card, each holding its shard; the eager loop unless decode=captured (each rank
    then compiles its own step)."""

    kind = "tp"

    def __init__(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        self.cards = tensor_parallel_ranks(options.engine.get("cards", ""), device)
        self.device = device
        self.path = "captured" if options.decode == "captured" or options.compile else "loop"
        self.note = "" if self.path == "captured" or device.type == "cpu" else \
            "tensor parallel: the eager loop ran (decode=captured compiles each rank's step)"
        self.group: TensorParallelGroup | None = TensorParallelGroup(model, self.cards, options,
                                                                     captured=self.path == "captured")
        self._peaks: list[float | None] = []

    def info(self) -> dict[str, Any]:
        on_cards = self.device.type != "cpu"
        # Every rank reads its shard of each layer at the same time: their bandwidth adds up (on a CPU the ranks
        # share the host's, read once).
        return {"cards": [str(c) for c in self.cards], "placement": "tp",
                "devices": list(self.cards) if on_cards else [],
                "concurrent_cards": len(self.cards) if on_cards else 1}

    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any, reuse_prefix: int) -> Call:
        """One call on every rank at once; rank 0's step times (the ranks meet at every all-reduce)."""
        assert self.group is not None, "closed"
        if reuse_prefix:
            raise ValueError("a reused prefix is not run tensor-parallel: use placement=layer-split or one card")
        batch, input_len = input_ids.shape
        step = self.group.run(input_ids, output_len)
        _check(output_len, batch, len(step.times), tuple(step.tokens.shape))
        self._peaks = step.peak_bytes
        for i, when in enumerate(step.times if on_token is not None else ()):
            on_token(i + 1, when)
        return Call(batch_repetition(step.start, step.times, batch, input_len), step.compile_s if step.frames
                    else 0.0, step.frames, step.tokens)

    def check_output(self, input_ids: torch.Tensor, output_len: int, reuse_prefix: int) -> OutputCheck:
        """Every rank decodes once more with rank 0 keeping the logits, then every rank runs the reference forward
        over its shard (a collective like any other); rank 0 compares and sends back the summary."""
        assert self.group is not None, "closed"
        watch = output_check.Stopwatch()
        kld, agree = self.group.check(input_ids, output_len)
        return output_check.summarise(kld, agree, f"{output_check.REFERENCE}, same shards on the same ranks",
                                      watch(), output_check.kld_limit(self.group.dtype))

    def notes(self) -> list[str]:
        notes = [self.group.fallback] if self.group is not None and self.group.fallback else []
        notes.append(f"tensor parallel over {len(self.cards)} ranks (transformers' tp plan)" +
                     (": the ranks share one host's cores and memory bandwidth, so the roofline counts the host "
                      "once, and each layer's all-reduces go through gloo between processes (on a CPU the figure "
                      "measures that plumbing more than the host)" if self.device.type == "cpu" else ""))
        return notes + super().notes()

    def weight_bytes(self) -> float | None:
        return float(sum(self.group.shard_bytes)) if self.group is not None else None

    def attention(self) -> str | None:
        return self.group.attention if self.group is not None else None

    def peak_bytes(self) -> float | None:
        """The ranks' peaks summed (each rank's card, or on a CPU each rank's peak RSS)."""
        known = [p for p in self._peaks if p is not None]
        return float(sum(known)) if known else None

    def peak_per_card(self) -> dict[str, float]:
        """Each rank's peak in the last call (cpu:0, cpu:1 ... for ranks on one host)."""
        return {str(card): p for card, p in zip(self.cards, self._peaks) if p is not None}

    def cache_used(self) -> str:
        return "static"

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None


def _load_split(model: ModelSpec, cards: list[Device], options: LoadOptions) -> Any:
    """The model over `cards`: each card a run of layers in proportion to its free memory (placement.py)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model.config, dtype=options.dtype,
                                                    trust_remote_code=model.trust_remote_code)
    device_map = layer_split_map(skeleton, [c.torch_device for c in cards],
                                 [float(free_memory_bytes(c)) for c in cards])
    if model.weights != "pretrained":
        return place_random_weights(skeleton, device_map)
    try:
        return AutoModelForCausalLM.from_pretrained(model.path, dtype=options.dtype, local_files_only=True,
                                                    device_map=device_map, trust_remote_code=model.trust_remote_code)
    except ImportError as exc:
        raise BadInput(f"a model over several cards needs accelerate: pip install -e '.[multicard]' ({exc})") from None


def _output_card(model: Any, cards: list[Device]) -> Device:
    """The card the logits come out on (the head's), where each step's token is stamped."""
    head = model.get_output_embeddings()
    where = next(head.parameters()).device if head is not None else cards[-1].torch_device
    return next((c for c in cards if c.torch_device == where), cards[-1])
