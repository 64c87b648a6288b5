"""A stand-in for a card's timing semantics, for CPU CI only (no GPU here): events that are recorded without
waiting and can be read only after the card has been synchronised, as torch.cuda.Event behaves.

Used with bench/engines/graph_standin.py (graph outputs overwritten by the next replay) so the decode loop's
card path runs on a CPU: tests patch `decode_loop._event_class` and `decode_loop.synchronize` with these.
"""

from __future__ import annotations

from typing import Any

from bench.core import clock


class FakeCard:
    """One card's queue: every event recorded before a synchronize is complete after it, none before."""

    def __init__(self) -> None:
        self.pending: list[FakeEvent] = []
        self.syncs = 0

    def synchronize(self, _device: Any = None) -> None:
        for event in self.pending:
            event.done = True
        self.pending.clear()
        self.syncs += 1

    def event_class(self, _device: Any = None) -> Any:
        card = self

        def make(enable_timing: bool = True) -> FakeEvent:
            return FakeEvent(card, enable_timing)

        return make


class FakeEvent:
    """torch.cuda.Event's contract: record() never waits; elapsed_time() raises until both events are done."""

    def __init__(self, card: FakeCard, enable_timing: bool) -> None:
        self.card, self.timing = card, enable_timing
        self.at: float | None = None
        self.done = False

    def record(self, _stream: Any = None) -> None:
        self.at, self.done = clock.now(), False
        self.card.pending.append(self)

    def elapsed_time(self, end: FakeEvent) -> float:
        if not (self.timing and end.timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'")
        if self.at is None or end.at is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time")
        if not (self.done and end.done):
            raise RuntimeError("CUDA error: device not ready (an event read before the card reached it)")
        return (end.at - self.at) * 1000.0
