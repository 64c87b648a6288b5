"""The harness's one clock: every timestamp (engines, telemetry, the repetition loop) comes from `now()`.

It is time.perf_counter, except under the simulated engine, which switches it to a
virtual clock that only its own generate calls advance: then every duration, and
so every metric derived from one, is exact and independent of how busy the machine is.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_virtual: float | None = None
_offset = 0.0  # added to perf_counter after a virtual period, so time never runs backwards


def now() -> float:
    """Seconds on the harness clock (only differences mean anything)."""
    return time.perf_counter() + _offset if _virtual is None else _virtual


def is_virtual() -> bool:
    return _virtual is not None


def use_virtual() -> None:
    """Freeze time where it is now; from here on only advance() moves it (monotonic with the real clock)."""
    global _virtual
    with _lock:
        if _virtual is None:
            _virtual = time.perf_counter() + _offset


def use_real() -> None:
    """Back to real time, continuing from the virtual clock's reading (monotonic)."""
    global _virtual, _offset
    with _lock:
        if _virtual is not None:
            _offset = max(_offset, _virtual - time.perf_counter())
            _virtual = None


def advance(seconds: float) -> float:
    """Move the virtual clock forward and return the new time; on the real clock, just return now()."""
    global _virtual
    with _lock:
        if _virtual is not None:
            _virtual += max(seconds, 0.0)
            return _virtual
    return now()


def sleep(seconds: float) -> None:
    """Wait on the real clock; on the virtual clock the time passes at once."""
    if is_virtual():
        advance(seconds)
    else:
        time.sleep(seconds)
