"""A CPU stand-in for the semantics of a captured CUDA graph, so CI catches what only a card would show.

A CUDA graph (torch.compile's mode="reduce-overhead") replays into the same memory every time: its inputs are
copied into static buffers before a replay, and its outputs live in static buffers that the next replay
overwrites. Code that keeps an output past the next replay reads another step's value, and torch raises
"accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run". On a CPU the captured
step is inductor without graphs, whose outputs are fresh tensors, so that bug never shows there.

`StaticGraphStep` wraps a step function the same way: inputs copied into static buffers, outputs copied into
static buffers, and each returned output is marked with its replay; touching one after a later replay raises
the same error torch raises. Selected with the environment variable BENCH_GRAPH_STANDIN=1 (tests set it; the
spawned tensor-parallel ranks inherit it); it replaces the captured step on any device, and a row that ran
with it says so. tests/fake_card.py adds the card's timing events, which are only readable once synchronised.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_map

ENV = "BENCH_GRAPH_STANDIN"
NOTE = "captured step on the CPU stand-in for CUDA graphs (static input and output buffers; a test setting)"
OVERWRITTEN = ("Error: accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run "
               "(CPU stand-in, bench/engines/graph_standin.py)")


def enabled() -> bool:
    """Whether captured steps run under the stand-in (BENCH_GRAPH_STANDIN=1)."""
    return os.environ.get(ENV, "") not in ("", "0")


class GraphOutput(torch.Tensor):
    """An output of one replay: any operation on it after a later replay raises, as on a card."""

    _owner: StaticGraphStep
    _replay: int

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        # Metadata (shape, dtype, device) stays readable on a card too; reading or writing the data does not.
        if getattr(func, "__name__", "") != "__get__":
            for leaf in tree_flatten((args, kwargs))[0]:
                if isinstance(leaf, GraphOutput) and leaf._replay != leaf._owner.replays:
                    raise RuntimeError(OVERWRITTEN)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)  # plain tensors out: only the graph's own outputs are marked


class StaticGraphStep:
    """`fn` replayed the way a CUDA graph replays: static inputs copied in, static outputs overwritten."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.replays = 0
        self._inputs: list[torch.Tensor] | None = None
        self._outputs: Any = None

    def __call__(self, *args: Any) -> Any:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if self._inputs is None or [t.shape for t in tensors] != [t.shape for t in self._inputs]:
            self._inputs = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in tensors]  # a new capture
            self._outputs = None
        for static, given in zip(self._inputs, tensors):
            static.copy_(given)  # the copy in (an input that is an overwritten output raises here)
        self.replays += 1  # from here every output handed out before is overwritten
        it = iter(self._inputs)
        result = self.fn(*[next(it) if isinstance(a, torch.Tensor) else a for a in args])
        if self._outputs is None:
            self._outputs = tree_map(lambda t: torch.empty_like(t) if isinstance(t, torch.Tensor) else t, result)
        out_leaves, spec = tree_flatten(self._outputs)
        for static, fresh in zip(out_leaves, tree_flatten(result)[0]):
            if isinstance(static, torch.Tensor):
                static.copy_(fresh)
        return spec.unflatten([self._mark(t) if isinstance(t, torch.Tensor) else t for t in out_leaves])

    def _mark(self, static: torch.Tensor) -> GraphOutput:
        out = static.as_subclass(GraphOutput)
        out._owner, out._replay = self, self.replays
        return out
