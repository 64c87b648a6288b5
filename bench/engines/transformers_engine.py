"""Hugging Face transformers models on three decode paths, each timed from inside one call.

- `generate`: transformers' own `generate`, as its users call it; a streamer stamps each step's tokens
  after synchronising the device (so on a GPU it measures transformers' loop as much as the card).
- `loop`: a plain eager decode loop over the model's forward with a static KV cache (decode_loop.py).
- `captured`: that loop's one-token step under torch.compile (CUDA graphs on CUDA/ROCm, inductor on a CPU).
`auto` (the default): captured on an accelerator, loop on a CPU (the README says why). Nothing is derived
by subtracting separate runs; exact lengths are asserted on every path.

Over several cards: a layer split (accelerate's device map, in this process) or transformers' tensor-parallel
plan (placement=tp: one rank process per card running the loop in step, tensor_parallel.py): each placement is
a strategy (transformers_placements.py) that this engine chooses at load and asks for everything after.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from bench.core.errors import BadInput
from bench.core.metrics import Repetition
from bench.core.params import Param
from bench.engines.base import Engine, LoadOptions
from bench.engines.decode_loop import DecodeLoop
from bench.engines.output_check import OutputCheck
from bench.engines.quant import storage_note
from bench.engines.transformers_placements import InProcess, Placement, TensorParallel
from bench.hardware.devices import Device, resolve_device
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


class TransformersEngine(Engine):
    """transformers AutoModelForCausalLM (greedy, exact lengths, EOS ignored), on the placement load chose."""

    name = "transformers"
    hardware_path = "--set decode=captured"

    def __init__(self) -> None:
        self.placed: Placement | None = None
        self.device: Device | None = None
        self.options: LoadOptions | None = None
        self.last_tokens: torch.Tensor | None = None  # (batch, output_len) of the last call
        self._compile_s = 0.0
        self._compiled_frames = 0

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

    @classmethod
    def memory_cards(cls, params: dict[str, Any], device: Device) -> list[Device] | None:
        """The cards `cards` names (its tensor-parallel ranks for placement=tp)."""
        ranks = tensor_parallel_ranks if params.get("placement") == "tp" else resolve_cards
        return ranks(params.get("cards", ""), device)

    def load(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        """Random weights for a bundled config (seeded), real weights for a local directory; on one card, layer
        by layer over several (placement=layer-split), or one rank process per card (placement=tp)."""
        logging.getLogger("transformers").setLevel(logging.ERROR)
        torch.manual_seed(options.seed)
        self.device, self.options = device, options
        if options.engine.get("placement") == "tp":
            self.placed = TensorParallel(model, device, options)
        else:
            self.placed = InProcess(model, device, options, resolve_path(options.decode, options.compile, device))

    def _placed(self) -> Placement:
        assert self.placed is not None, "load() first"
        return self.placed

    # What tests and the output check read of the model in this process (None on tensor-parallel ranks).
    @property
    def model(self) -> Any:
        return getattr(self.placed, "model", None)

    @property
    def loop(self) -> DecodeLoop | None:
        return self.placed.loop if self.placed is not None else None

    @property
    def group(self) -> Any:
        return getattr(self.placed, "group", None)

    @property
    def cards(self) -> list[Device]:
        return self.placed.cards if self.placed is not None else []

    @property
    def path(self) -> str:
        return self.placed.path if self.placed is not None else "generate"

    def _generation_kwargs(self, output_len: int) -> dict[str, Any]:
        return self._placed().generation_kwargs(output_len)  # type: ignore[attr-defined]

    def placement_info(self) -> dict[str, Any]:
        """The cards the model is on and how it spans them."""
        return self._placed().info()

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any = None,
                 reuse_prefix: int = 0) -> Repetition:
        """One timed call on the placement's decode path; asserts the exact token count. A reused prefix runs
        on generate (its DynamicCache holds the prefix), so a prefix-reuse pair is timed on one path."""
        call = self._placed().generate(input_ids, output_len, on_token, reuse_prefix)
        if call.frames:
            self._compile_s += call.compile_s
            self._compiled_frames += call.frames
        self.last_tokens = call.tokens
        return call.repetition

    def check_output(self, input_ids: torch.Tensor, output_len: int, reuse_prefix: int = 0) -> OutputCheck:
        """The placement's decode path once more with its logits, against the teacher-forced reference."""
        return self._placed().check_output(input_ids, output_len, reuse_prefix)

    def peak_memory_bytes(self) -> float | None:
        return self._placed().peak_bytes()

    def peak_memory_per_card(self) -> dict[str, float]:
        return self._placed().peak_per_card()

    def decode_path(self) -> str:
        return self.path

    def _bound_reasons(self, device: Device, row: dict[str, Any]) -> list[str]:
        """transformers' generate loop; on an accelerator the eager loop where a captured step exists; and the
        generic bandwidth bound."""
        said = []
        if self.path == "generate":
            said.append("taken on transformers' generate loop")
        elif self.path == "loop" and device.type != "cpu":
            said.append("taken on the eager loop where a captured (CUDA graph) step is available")
        return said + super()._bound_reasons(device, row)

    def cache_used(self) -> str:
        """static on the loop and captured paths (tensor parallel included); auto where decode=auto chose per
        shape on a CPU (the same case on two machines that chose differently is still one case: the detail
        says which ran); '' on generate (the case's `cache` as asked)."""
        return self._placed().cache_used()

    def compile_stats(self) -> tuple[float, int]:
        """Seconds of the calls in which torch.compile compiled (capture included), and the frames compiled."""
        said = (self._compile_s if self._compiled_frames else float("nan"), self._compiled_frames)
        self._compile_s, self._compiled_frames = 0.0, 0
        return said

    def notes(self) -> list[str]:
        note = storage_note(self.options.quant, self.device.type) if self.options and self.device else ""
        return ([note] if note else []) + (self.placed.notes() if self.placed is not None else [])

    def weight_bytes(self) -> float | None:
        return self.placed.weight_bytes() if self.placed is not None else None

    def materializes_attention_scores(self) -> bool:
        return (self.placed.attention() if self.placed is not None else None) in (None, "eager")

    def close(self) -> None:
        if self.placed is not None:
            self.placed.close()
            self.placed = None


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
