"""A decode loop that measures the device, not the library: a static KV cache allocated once per shape, the
prefill as one forward pass, then one-token greedy steps, eager (`loop`) or captured (`captured`: torch.compile;
mode="reduce-overhead", i.e. CUDA graphs, on CUDA/ROCm; inductor on a CPU).

The shape of transformers' static-cache recipe and of gpt-fast's `generate.py`. Timing: on an accelerator an
event is recorded after each step and the device synchronised once, at the end of the repetition, so the
timing never stalls what it measures; on a CPU every step is synchronous and stamped on the host clock.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from bench.core import clock
from bench.engines import graph_standin
from bench.hardware.devices import Device, synchronize

# torch.compile keeps a graph per shape it has seen; a sweep of batch sizes and lengths needs one each.
COMPILE_CACHE_LIMIT = 64


def dynamo_frames() -> int:
    """Graphs torch.compile has compiled so far in this process: a change across a timed call is a compile.

    Counts `unique_graphs`, which every compilation adds to; `frames` is not counted under fullgraph=True
    (the captured path on a card), which is why compile_s was empty on the first card's captured rows."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - a torch without dynamo
        return 0
    return int(counters["stats"]["unique_graphs"]) if "stats" in counters else 0


class _Stamps:
    """Per-step timestamps: device events synchronised once at the end on an accelerator, host clock on a CPU."""

    def __init__(self, device: Device, cards: tuple[Device, ...] = ()) -> None:
        # A model over several cards (a layer split): events go on the card that produces the token, which
        # every step's work on the other cards comes before; the window edges wait for every card.
        self.device = device
        self.cards = cards or (device,)
        self.events: list[Any] = []
        self.host: list[float] = []
        self.on_device = device.type != "cpu"
        self._event_cls = _event_class(device) if self.on_device else None
        if self._event_cls is None:
            self.on_device = False

    def _record(self) -> Any:
        event = self._event_cls(enable_timing=True)
        if self.device.type == "cuda" and len(self.cards) > 1:
            with torch.cuda.device(self.device.torch_device):
                event.record()
        else:
            event.record()
        return event

    def start(self) -> float:
        for card in self.cards:
            synchronize(card)
        self.t0 = clock.now()
        if self.on_device:
            self.first = self._record()
        return self.t0

    def mark(self) -> float:
        """After a step: an event (no wait) on an accelerator; the host time on a CPU. Returns the host time."""
        now = clock.now()
        if self.on_device:
            self.events.append(self._record())
        else:
            self.host.append(now)
        return now

    def times(self) -> list[float]:
        """Each step's time on the harness clock (the one synchronisation of the repetition happens here)."""
        for card in self.cards:
            synchronize(card)
        self.end = clock.now()  # the host time by which every step had finished
        if not self.on_device:
            return self.host
        return [self.t0 + self.first.elapsed_time(e) / 1000.0 for e in self.events]


def _event_class(device: Device) -> Any:
    """The device's timing event class (torch.cuda.Event, or the generic torch.Event), or None."""
    if device.type == "cuda":
        return torch.cuda.Event
    generic = getattr(torch, "Event", None)
    if generic is None:
        return None

    def make(enable_timing: bool = True) -> Any:
        return generic(device=device.torch_device, enable_timing=enable_timing)

    return make


CACHES = ("static", "dynamic", "auto")
CHOICE_STEPS = 32  # steps timed per KV cache kind when decode=auto chooses (at the call's mean context)


class DecodeLoop:
    """Greedy decoding of exactly output_len tokens; `captured` compiles the one-token step (static cache).

    cache: static (allocated once at the case's full length: what a compiled step needs), dynamic (grown a step
    at a time, as transformers' default), or auto: the first call of each shape times a few dozen steps on
    each at the call's mean context (never timed as a repetition) and keeps the faster. Which is faster
    depends on the CPU: on an AMD EPYC the static cache made qwen2.5-0.5b decode at a third of the dynamic
    one's speed, on an Intel Xeon (AMX) they were even."""

    def __init__(self, model: Any, device: Device, captured: bool, cards: tuple[Device, ...] = (),
                 cache: str = "static") -> None:
        """device: where the token comes out (stamped there); cards: every card the model spans."""
        if cache not in CACHES:
            raise ValueError(f"cache must be one of {CACHES}")
        self.model = model
        self.device = device
        self.cards = cards
        self.captured = captured
        self.cache_mode = "static" if captured else cache
        self.cache_used = "static" if self.cache_mode == "auto" else self.cache_mode  # what the last call used
        self.choice: dict[tuple[int, int], str] = {}  # (batch, total length) -> the kind auto kept
        self._choice_notes: dict[tuple[int, int], str] = {}  # -> how auto chose it
        self.choice_note = ""  # how auto chose the last call's kind, for the row's detail
        self._caches: dict[tuple[int, int], Any] = {}
        self.last_tokens: torch.Tensor | None = None  # (batch, output_len) of the last call, for correctness checks
        self.last_window: tuple[float, float] = (0.0, 0.0)  # host times of the last call's synchronised edges
        self.fallback = ""  # why a captured step fell back from fullgraph (said in the row's detail)
        # transformers 5.x renames past_key_values to cache (the old name warns, and goes in 5.40)
        import inspect

        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self._step = self._eager_step
        if captured:
            self._compile(fullgraph=device.type == "cuda")

    def _compile(self, fullgraph: bool) -> None:
        import torch._dynamo

        self._fullgraph = fullgraph
        if graph_standin.enabled():
            self._step = graph_standin.StaticGraphStep(self._eager_step)
            self.fallback = graph_standin.NOTE
            return
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, COMPILE_CACHE_LIMIT)
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        self._step = torch.compile(self._eager_step, mode=mode, fullgraph=fullgraph, dynamic=False)

    def _eager_step(self, token: torch.Tensor, position: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(the next token (batch, 1), its logits (batch, 1, vocab)): the logits are computed for the token anyway,
        and returning them costs nothing, so the output check reads the very step that was timed."""
        out = self.model(input_ids=token, cache_position=position, use_cache=True, **{self._cache_kw: cache})
        logits = out.logits[:, -1:]
        return logits.argmax(-1), logits

    def _cache(self, batch: int, length: int, kind: str = "static") -> Any:
        """One static cache per (batch, total length), allocated by the first prefill and reset per call; a
        dynamic one new per call (it grows as the call decodes)."""
        from transformers import DynamicCache, StaticCache

        if kind == "dynamic":
            return DynamicCache(config=self.model.config)
        key = (batch, length)
        if key not in self._caches:
            self._caches = {key: StaticCache(config=self.model.config, max_cache_len=length)}  # one shape at a time
        cache = self._caches[key]
        cache.reset()
        return cache

    @torch.inference_mode()
    def run(self, ids: torch.Tensor, output_len: int, on_token: Any = None) -> tuple[float, list[float]]:
        """(start, the time each of the output_len tokens was ready) for one batch of prompts.

        Inside the timed window each step does only what the measurement needs: the step itself, one copy of
        its token into a buffer allocated before the window (a captured step's output is overwritten by its
        next replay, so nothing of it is kept), and a stamp. Positions are on the device already (a host
        tensor per step would be a copy that waits for the card). `on_token` hears of the tokens after the
        window."""
        batch, input_len = ids.shape
        kind = self.cache_mode
        if kind == "auto":
            key = (batch, input_len + output_len)
            if key not in self.choice:
                self._choose(ids, output_len, key)
            kind, self.choice_note = self.choice[key], self._choice_notes[key]
        self.cache_used = kind
        start, times = self._decode(ids, output_len, kind)
        if on_token is not None:
            for i, when in enumerate(times):
                on_token(i + 1, when)
        return start, times

    @torch.inference_mode()
    def run_with_logits(self, ids: torch.Tensor, output_len: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The last call's path once more (its KV cache kind, its compiled step), untimed, keeping each step's
        logits for the first `rows` sequences: (tokens (batch, output_len), logits (rows, output_len, vocab))."""
        kept: list[torch.Tensor] = []
        self._decode(ids, output_len, self.cache_used, keep=(kept, rows))
        return self.last_tokens, torch.stack(kept, dim=1)

    def _choose(self, ids: torch.Tensor, output_len: int, key: tuple[int, int]) -> None:
        """Time CHOICE_STEPS steps of this shape on each KV cache kind and keep the faster. A step's cost grows
        with the context (a dynamic cache's attention reads what it holds; a static one reads its whole
        allocation, the case's full length), so the steps are timed at the call's mean context: the prompt
        stretched by half the tokens the call decodes beyond them. A long generation then pays a few dozen
        extra steps, not two whole calls."""
        import statistics

        steps = min(output_len, CHOICE_STEPS)
        extra = (output_len - steps) // 2
        probe = torch.cat([ids, ids[:, -1:].expand(-1, extra)], dim=1) if extra else ids
        length = ids.shape[1] + output_len  # the static cache the call itself allocates
        per_step = {}
        for kind in ("static", "dynamic"):
            self._decode(probe, min(steps, 4), kind, length)  # first-call costs (allocation, warm caches) apart
            _, times = self._decode(probe, steps, kind, length)
            per_step[kind] = statistics.median(b - a for a, b in zip(times, times[1:])) if steps > 1 else 0.0
        best = min(per_step, key=per_step.get)
        other = "dynamic" if best == "static" else "static"
        self.choice[key] = best
        self._choice_notes[key] = (f"decode=auto on a CPU: the eager loop with a {best} KV cache, whose step took "
                                   f"{per_step[best] * 1e3:.2f} ms against {per_step[other] * 1e3:.2f} ms with a "
                                   f"{other} one (timed at the call's mean context before the warm-up)")

    def _decode(self, ids: torch.Tensor, output_len: int, kind: str, length: int = 0,
                keep: tuple[list[torch.Tensor], int] | None = None) -> tuple[float, list[float]]:
        """Decode output_len tokens, a static cache allocated for `length` tokens (default prompt + output); with
        `keep` = (a list, rows), each step's logits of the first rows sequences are cloned into the list (a
        captured step's outputs are overwritten by its next replay)."""
        batch, input_len = ids.shape
        cache = self._cache(batch, length or input_len + output_len, kind)
        dev = ids.device
        positions = torch.arange(input_len + output_len, device=dev)
        # (output_len, batch, 1): row i is the (batch, 1) token of step i, contiguous at every length, so a
        # compiled step's guards see the same strides for every case.
        tokens = torch.empty(output_len, batch, 1, dtype=torch.long, device=dev)
        stamps = _Stamps(self.device, self.cards)
        start = stamps.start()
        token, logits = self._eager_step(ids, positions[:input_len], cache)  # prefill: eager, its own shape
        tokens[0].copy_(token)
        if keep is not None:
            keep[0].append(logits[:keep[1], 0].clone())
        stamps.mark()
        for i in range(1, output_len):
            at = input_len + i - 1
            try:
                token, logits = self._step(tokens[i - 1], positions[at:at + 1], cache)
            except Exception as exc:  # noqa: BLE001 - a model fullgraph cannot capture: compile it with breaks
                if not (self.captured and self._fullgraph):
                    raise
                self.fallback = f"captured step compiled with graph breaks ({exc.__class__.__name__})"
                self._compile(fullgraph=False)
                token, logits = self._step(tokens[i - 1], positions[at:at + 1], cache)
            tokens[i].copy_(token)
            if keep is not None:
                keep[0].append(logits[:keep[1], 0].clone())
            stamps.mark()
        times = stamps.times()
        self.last_window = (start, stamps.end)
        self.last_tokens = tokens[:, :, 0].t().cpu()
        return start, times


def timed_call(fn: Any) -> tuple[Any, float, int]:
    """fn()'s result, its wall seconds and how many frames torch.compile compiled meanwhile."""
    before = dynamo_frames()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, dynamo_frames() - before
