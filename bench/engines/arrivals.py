"""When the openai engine sends its requests: the arrival processes, each a function of a `send` callable
(prompt ids, output length, when, whether that time was scheduled, an answer list to fill) that returns the
requests' timings. All at once (fixed concurrency), Poisson arrivals at a rate, a trace's own arrivals, and
multi-turn sessions whose prompts grow with each answer, and a closed loop of N users, each sending its next
request the moment its last one finished (optionally fed by Poisson arrivals that wait for a free user). The client that sends one request is
bench/engines/openai_client.py.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from bench.core import clock
from bench.core.metrics import RequestTiming
from bench.spec.trace import prompt_ids, requests

Send = Callable[..., RequestTiming]  # send(ids, output_len, start_at, scheduled, answer=None)
MAX_IN_FLIGHT = 512  # concurrent requests of a trace replay (more wait in the pool: their sends show as late)


def at_once_or_poisson(send: Send, prompts: list[list[int]], output_len: int, rate: float,
                       seed: int) -> list[RequestTiming]:
    """Every prompt at once (rate 0: fixed concurrency), or at Poisson arrivals of `rate` per second drawn
    from the run's seed."""
    now = clock.now()
    starts = [now] * len(prompts)
    if rate > 0:
        rng = random.Random(seed)
        t = now
        for i in range(len(prompts)):
            starts[i] = t
            t += rng.expovariate(rate)
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        futures = [pool.submit(send, p, output_len, s, rate > 0) for p, s in zip(prompts, starts)]
        return [f.result() for f in futures]


def replay(send: Send, trace: str, speed: float, limit: int, vocab: int) -> list[RequestTiming]:
    """A trace, request by request at its arrival times (streamed from the file, sent as they come due);
    each request's own lengths, its prompt built from its hash ids so shared prefixes are shared."""

    now = clock.now()
    with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT) as pool:
        futures = []
        for request in requests(trace, speed, limit):
            due = now + request.at_s
            if due - clock.now() > 0.002:  # read ahead no further than the next send: constant memory
                time.sleep(due - clock.now())
            futures.append(pool.submit(send, prompt_ids(request, vocab), request.output_len, due, True))
        return [f.result() for f in futures]


def sessions(send: Send, first_prompts: list[list[int]], output_len: int, turns: int, vocab: int, seed: int,
             on_short_answer: Callable[[int, int], Any]) -> list[list[RequestTiming]]:
    """len(first_prompts) sessions at once, each `turns` requests in turn: a turn's prompt is the previous
    turns' prompts and answers (the token ids the server streamed) plus as many new tokens as the first.
    on_short_answer(turn, got) raises when an answer's ids did not all come back (the history would be wrong)."""
    def session(index: int, first: list[int]) -> list[RequestTiming]:
        rng = random.Random(seed * 1_000_003 + index)
        history: list[int] = []
        timings = []
        prompt = first
        for turn in range(turns):
            answer: list[int] = []
            timings.append(send(history + prompt, output_len, clock.now(), False, answer))
            if len(answer) != output_len:
                on_short_answer(turn + 1, len(answer))
            history += prompt + answer
            prompt = rng.choices(range(vocab), k=len(first))
        return timings

    with ThreadPoolExecutor(max_workers=len(first_prompts)) as pool:
        return list(pool.map(session, range(len(first_prompts)), first_prompts))


def closed_loop(send: Send, prompts: list[list[int]], output_len: int, users: int, min_requests: int,
                min_seconds: float, rate: float, seed: int) -> list[RequestTiming]:
    """`users` closed-loop users (`vllm bench serve --max-concurrency`, AIPerf's and guidellm's concurrency
    modes): each sends its next request the moment its last one finished, cycling through the prompts, until at
    least `min_requests` were sent and `min_seconds` passed. With a rate, requests arrive at Poisson times from
    the run's seed and wait for a free user; each timing's queue_s is that wait."""
    start = clock.now()
    lock = threading.Lock()
    taken = 0
    arrival = start
    rng = random.Random(seed)

    def next_request() -> tuple[list[int], float | None] | None:
        nonlocal taken, arrival
        with lock:
            if taken >= min_requests and clock.now() - start >= min_seconds:
                return None
            prompt = prompts[taken % len(prompts)]
            taken += 1
            if rate <= 0:
                return prompt, None
            due, arrival = arrival, arrival + rng.expovariate(rate)
            return prompt, due

    def user() -> Iterator[RequestTiming]:
        while (request := next_request()) is not None:
            prompt, due = request
            now = clock.now()
            timing = send(prompt, output_len, max(now, due or now), False)
            yield timing if due is None else replace(timing, queue_s=max(0.0, timing.start - due))

    with ThreadPoolExecutor(max_workers=users) as pool:
        return [t for done in pool.map(lambda _: list(user()), range(users)) for t in done]
