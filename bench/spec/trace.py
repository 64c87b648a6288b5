"""Request traces in Mooncake's JSONL format, streamed: one request per line, never the whole file in memory.

A line is {"timestamp": ms since the trace's start, "input_length": tokens, "output_length": tokens,
"hash_ids": [block ids]} (Mooncake's published traces, kvcache-ai/Mooncake `FAST25-release/traces`; blocks
of 512 tokens, and two requests that share a hash id share that block of their prompt). `check_trace` reads
the file once before any work and says in one line what is wrong and where; `requests` streams it again
for the replay, with time compressed by `speed`; `prompt_ids` builds each prompt from its blocks, so the
prefixes the trace shares are shared token for token.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BadInput

BLOCK_TOKENS = 512  # Mooncake's block size: a hash id stands for this many prompt tokens
FIELDS = ("timestamp", "input_length", "output_length")


@dataclass(frozen=True)
class TraceRequest:
    """One request of a trace: when it arrives (s after the first, at the replay's speed) and its shape."""

    at_s: float
    input_len: int
    output_len: int
    hash_ids: tuple[int, ...]


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(line: str, where: str) -> tuple[float, int, int, tuple[int, ...]]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(item, dict):
        raise BadInput(f"{where}: a trace line must be a JSON object")
    missing = [f for f in FIELDS if f not in item]
    if missing:
        raise BadInput(f"{where}: missing field(s) {', '.join(missing)} (Mooncake format: timestamp, "
                       "input_length, output_length, hash_ids)")
    ts = item["timestamp"]
    if not isinstance(ts, int | float) or isinstance(ts, bool) or ts != ts or ts < 0:
        raise BadInput(f"{where}: timestamp {ts!r} must be a number of ms >= 0")
    n_in, n_out = item["input_length"], item["output_length"]
    if not (_integer(n_in) and n_in >= 1):
        raise BadInput(f"{where}: input_length {n_in!r} must be a whole number of tokens >= 1")
    if not (_integer(n_out) and n_out >= 2):
        raise BadInput(f"{where}: output_length {n_out!r} must be a whole number >= 2 (decode needs two tokens)")
    ids = item.get("hash_ids", [])
    if not isinstance(ids, list) or not all(_integer(i) for i in ids):
        raise BadInput(f"{where}: hash_ids must be a list of integers")
    return float(ts), n_in, n_out, tuple(ids)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield number, line
    except OSError as exc:
        raise BadInput(f"trace {path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise BadInput(f"trace {path}: not UTF-8 text") from None


def check_trace(path: str | Path, max_position: int = 0, limit: int = 0) -> int:
    """Read the whole trace once, in constant memory; the number of requests (up to `limit`), or BadInput
    naming the first bad line: not JSON, a missing field, a negative or decreasing timestamp, a length the
    model's window (`max_position`, 0: unknown) cannot hold."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"trace {path}: no such file")
    count, last = 0, 0.0
    for number, line in _lines(path):
        where = f"trace {path.name} line {number}"
        ts, n_in, n_out, _ = _parse(line, where)
        if ts < last:
            raise BadInput(f"{where}: timestamp {ts:g} ms is before the previous line's {last:g} ms "
                           "(a trace must be in arrival order)")
        if max_position and n_in + n_out > max_position:
            raise BadInput(f"{where}: input_length + output_length = {n_in + n_out} exceeds the model's "
                           f"{max_position} positions")
        last = ts
        count += 1
        if limit and count >= limit:
            break
    if count == 0:
        raise BadInput(f"trace {path}: no request in it")
    return count


def requests(path: str | Path, speed: float = 1.0, limit: int = 0) -> Iterator[TraceRequest]:
    """The trace's requests in order, streamed, their arrival times relative to the first and divided by
    `speed` (2.0 replays twice as fast)."""
    first: float | None = None
    for count, (number, line) in enumerate(_lines(Path(path)), 1):
        ts, n_in, n_out, ids = _parse(line, f"trace line {number}")
        first = ts if first is None else first
        yield TraceRequest((ts - first) / 1000.0 / speed, n_in, n_out, ids)
        if limit and count >= limit:
            return


def prompt_ids(request: TraceRequest, vocab: int, salt: int = 0) -> list[int]:
    """The request's prompt: one block of BLOCK_TOKENS token ids per hash id (the same id, the same tokens),
    then tokens of its own for what its blocks do not cover, cut to its input length."""
    ids: list[int] = []
    for block in request.hash_ids:
        ids += random.Random(block * 1_000_003 + salt).choices(range(vocab), k=BLOCK_TOKENS)
        if len(ids) >= request.input_len:
            break
    if len(ids) < request.input_len:
        own = random.Random(hash((request.at_s, request.input_len, salt)))
        ids += own.choices(range(vocab), k=request.input_len - len(ids))
    return ids[: request.input_len]
