"""Pure functions from raw timings to metrics (MLPerf / vLLM definitions).

No clocks, devices or files here: every function takes numbers and returns
numbers, so each is tested on hand-computed values.

Definitions (README, "Honest numbers"):
- TTFT: request start to first output token.
- TPOT per request: (E2E - TTFT) / (output tokens - tokens in the first event): tokens that arrived with the
  first one (a server streaming several per event) were not decoded after it (AIPerf PR #1279).
- ITL: gaps between consecutive tokens, pooled across requests.
- prefill_tok_s = batch * input_len / TTFT; decode_tok_s = batch * (output_len - 1) / (E2E - TTFT) (tokens
  after the first event, for a chunked stream);
  output_tok_s = batch * output_len / E2E; decode_tok_s_per_user = 1000 / TPOT.
- A repetition's prefill and decode windows are the union of its requests' own (the time at least one of them
  was prefilling, or decoding). For a batch that is the batch's TTFT and E2E - TTFT. Requests sent at scheduled
  times or one after another (the turns of a session) never count the span from the first send to the last
  token, and a server's request that decodes before another's first token counts its tokens with their time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.core.schema import NAN


@dataclass(frozen=True)
class RequestTiming:
    """One request's timeline in seconds on one clock: start and the time each output token arrived."""

    start: float
    token_times: tuple[float, ...]
    input_len: int
    # How finely the times resolve the tokens: "token" (one timestamp each), "chunk" (several tokens
    # shared an event: gaps between them are unknown) or "single" (all in one event: no decode timing).
    resolution: str = "token"
    # When the client meant to send it (a Poisson arrival's time), None when all were sent at once: the client
    # checks itself against it (achieved rate, lateness of sends).
    scheduled: float | None = None
    # Tokens that came in the first streamed event (1 where each token has its own), and the events in all: a
    # chunked stream's first event holds several tokens, none of them decoded after the first.
    first_event_tokens: int = 1
    events: int | None = None  # None: one event per token
    # Seconds the request waited for a free user of a closed loop after its arrival (None: no arrival schedule).
    queue_s: float | None = None

    @property
    def decode_tokens(self) -> int:
        """Tokens that arrived after the first event: what the decode window produced."""
        return max(self.output_len - self.first_event_tokens, 0)

    @property
    def output_len(self) -> int:
        return len(self.token_times)

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.start

    @property
    def e2e(self) -> float:
        return self.token_times[-1] - self.start


@dataclass(frozen=True)
class Repetition:
    """One measured repetition: the requests that ran together (a batch or a concurrent load)."""

    requests: tuple[RequestTiming, ...]

    @property
    def start(self) -> float:
        return min(r.start for r in self.requests)

    @property
    def prefill_windows(self) -> list[tuple[float, float]]:
        """Each request's send to its first token. The repetition's prefill time is their union: for a batch the
        batch's TTFT; for requests sent apart, only the time some request was waiting for its first token."""
        return [(r.start, r.token_times[0]) for r in self.requests]

    @property
    def decode_windows(self) -> list[tuple[float, float]]:
        """Each request's first token to its last. Their union is the decode time: a request that decoded before
        another's first token has its tokens counted with their time (from the last first token they would count
        with none), and gaps in which no request was decoding are left out."""
        return [(r.token_times[0], r.token_times[-1]) for r in self.requests]

    @property
    def end(self) -> float:
        return max(r.token_times[-1] for r in self.requests)


def batch_repetition(start: float, step_times: Sequence[float], batch_size: int, input_len: int) -> Repetition:
    """A batched generate call where every sequence gets its token at each step's time."""
    req = RequestTiming(start, tuple(step_times), input_len)
    return Repetition((req,) * batch_size)


def percentile(values: Sequence[float], q: float) -> float:
    """q-th percentile (linear interpolation, like numpy); NaN for no values."""
    vals = [v for v in values if not math.isnan(v)]
    return float(np.percentile(vals, q)) if vals else NAN


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation (sample std / mean); NaN with fewer than two values."""
    vals = [v for v in values if not math.isnan(v)]
    if len(vals) < 2 or np.mean(vals) == 0:
        return NAN
    return float(np.std(vals, ddof=1) / np.mean(vals))


def tpot(req: RequestTiming) -> float:
    """Time per output token after the first event, seconds: the time after the first event over the tokens
    after it; NaN for a single-token request, or one whose tokens all arrived at once (nothing tells their
    times apart)."""
    if req.decode_tokens < 1 or req.resolution == "single":
        return NAN
    return (req.e2e - req.ttft) / req.decode_tokens


def _itls(reqs: Sequence[RequestTiming]) -> list[float]:
    """Inter-token gaps (s), from the requests whose every token has its own timestamp."""
    return [float(g) for r in reqs if r.resolution == "token" for g in np.diff(r.token_times)]


def union_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals (overlaps counted once)."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def repetition_metrics(rep: Repetition) -> dict[str, float]:
    """Per-repetition figures (one samples.csv row)."""
    reqs = rep.requests
    input_tokens = sum(r.input_len for r in reqs)
    output_tokens = sum(r.output_len for r in reqs)
    decode_tokens = sum(r.decode_tokens for r in reqs)
    e2e_s = rep.end - rep.start
    prefill_s, decode_s = union_seconds(rep.prefill_windows), union_seconds(rep.decode_windows)
    itls = _itls(reqs)
    if any(r.resolution == "single" for r in reqs):
        decode_s = NAN  # the decode window was never observed
    return {
        "ttft_ms": 1000 * float(np.median([r.ttft for r in reqs])),
        "e2e_ms": 1000 * float(np.median([r.e2e for r in reqs])),
        "tpot_ms": 1000 * float(np.median([tpot(r) for r in reqs])),
        "prefill_tok_s": input_tokens / prefill_s if prefill_s > 0 else NAN,
        "decode_tok_s": decode_tokens / decode_s if decode_s > 0 and decode_tokens else NAN,  # NaN > 0 is False
        "output_tok_s": output_tokens / e2e_s if e2e_s > 0 else NAN,
        "itl_ms_p50": 1000 * percentile(itls, 50),
        "itl_ms_p99": 1000 * percentile(itls, 99),
        "itl_ms_max": 1000 * max(itls) if itls else NAN,
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "decode_tokens": float(decode_tokens),
    }


def calculate_metrics(reps: Sequence[Repetition]) -> dict[str, float]:
    """Result-row latency and throughput metrics over all measured repetitions."""
    if not reps:
        raise ValueError("no repetitions to summarise")
    per_rep = [repetition_metrics(r) for r in reps]
    reqs = [q for r in reps for q in r.requests]
    ttfts = [1000 * q.ttft for q in reqs]
    e2es = [1000 * q.e2e for q in reqs]
    tpots = [1000 * tpot(q) for q in reqs]
    itls = [1000 * g for g in _itls(reqs)]
    decode = [m["decode_tok_s"] for m in per_rep]
    tpot_p50 = percentile(tpots, 50)
    return {
        "ttft_ms_p50": percentile(ttfts, 50),
        "ttft_ms_p99": percentile(ttfts, 99),
        "ttft_ms_mean": float(np.mean(ttfts)),
        "tpot_ms_p50": tpot_p50,
        "tpot_ms_p90": percentile(tpots, 90),
        "tpot_ms_p99": percentile(tpots, 99),
        "itl_ms_p50": percentile(itls, 50),
        "itl_ms_p90": percentile(itls, 90),
        "itl_ms_p99": percentile(itls, 99),
        "itl_ms_max": max(itls, default=NAN),  # a bound ("latency inside 10 ms") is broken by one stall
        "e2e_ms_p50": percentile(e2es, 50),
        "e2e_ms_p99": percentile(e2es, 99),
        "prefill_tok_s": percentile([m["prefill_tok_s"] for m in per_rep], 50),
        "decode_tok_s": percentile(decode, 50),
        "decode_tok_s_per_user": 1000 / tpot_p50 if tpot_p50 and not math.isnan(tpot_p50) else NAN,
        "output_tok_s": percentile([m["output_tok_s"] for m in per_rep], 50),
        "decode_tok_s_cv": cv(decode),
    }


def send_schedule(reps: Sequence[Repetition]) -> dict[str, float]:
    """Whether the client kept to its arrival schedule: the achieved request rate (requests after the first
    over the span of their sends, median over repetitions) and the p99 lateness of sends (ms); NaN where the
    requests had no schedule (all sent at once)."""
    rates, planned, late = [], [], []
    for rep in reps:
        timed = [q for q in rep.requests if q.scheduled is not None]
        late += [1000 * max(0.0, q.start - q.scheduled) for q in timed]
        starts = sorted(q.start for q in timed)
        plan = sorted(q.scheduled for q in timed if q.scheduled is not None)
        if len(starts) > 1 and starts[-1] > starts[0] and plan[-1] > plan[0]:
            rates.append((len(starts) - 1) / (starts[-1] - starts[0]))
            planned.append((len(plan) - 1) / (plan[-1] - plan[0]))  # Poisson draws: not the nominal rate
    return {"achieved_rate_rps": percentile(rates, 50) if rates else NAN,
            "send_lateness_ms_p99": percentile(late, 99) if late else NAN,
            "scheduled_rate_rps": percentile(planned, 50) if planned else NAN}


def in_flight_changes(reqs: Sequence[RequestTiming]) -> list[tuple[float, int]]:
    """(time, +1 sent / -1 finished) for every request, in time order; at one instant a send comes before a
    finish, so a user of a closed loop replacing its request shows no dip."""
    return sorted([(r.start, 1) for r in reqs] + [(r.token_times[-1], -1) for r in reqs], key=lambda e: (e[0], -e[1]))


def concurrency_achieved(reqs: Sequence[RequestTiming]) -> float:
    """Requests in flight, averaged over time from the first send to the last token (Little's law: the sum of
    the requests' lives over the span)."""
    span = max(r.token_times[-1] for r in reqs) - min(r.start for r in reqs)
    return sum(r.e2e for r in reqs) / span if span > 0 else NAN


@dataclass(frozen=True)
class SteadyWindow:
    """Where a load held its target in flight: from the first moment it reached it to the last moment it fell
    below it (the ramp and the drain outside); `output_tok_s` counts the tokens that arrived inside."""

    start: float
    end: float
    output_tok_s: float


def steady_window(reqs: Sequence[RequestTiming], target: int) -> tuple[SteadyWindow | None, str]:
    """The steady-state window for `target` requests in flight (vllm-bench's and MLPerf Endpoints' rule), or
    None and why not: the load never reached the target, or held it for less than one request's median life
    (then every request inside was ramping up or draining)."""
    level, reach, fall = 0, None, None
    for t, change in in_flight_changes(reqs):
        before, level = level, level + change
        if reach is None and level >= target:
            reach = t
        if reach is not None and before >= target > level:
            fall = t
    if reach is None:
        return None, f"never {target} requests in flight"
    life = float(np.median([r.e2e for r in reqs]))
    if fall is None or fall - reach < life:
        held = (fall or reach) - reach
        return None, f"{target} in flight held {held:.2f} s, less than one request's {life:.2f} s"
    tokens = sum(1 for r in reqs for t in r.token_times if reach < t <= fall)
    return SteadyWindow(reach, fall, tokens / (fall - reach)), ""


def tokens_per_event(reqs: Sequence[RequestTiming]) -> float:
    """Output tokens per streamed event, over all requests (1.0 where every token had its own)."""
    events = sum(r.events if r.events is not None else r.output_len for r in reqs)
    return sum(r.output_len for r in reqs) / events if events else NAN


def queue_ms_p99(reps: Sequence[Repetition]) -> float:
    """p99 of how long requests waited for a free user of a closed loop after their arrival (ms); NaN where
    no request had an arrival to wait from."""
    waits = [1000 * q.queue_s for rep in reps for q in rep.requests if q.queue_s is not None]
    return percentile(waits, 99) if waits else NAN


def enough_repetitions(done: int, elapsed_s: float, min_reps: int, min_seconds: float,
                       max_reps: int, max_seconds: float) -> bool:
    """Stop once both minimums are met, or a maximum is hit after the minimum count."""
    if done >= max_reps:
        return True
    if done < min_reps:
        return False
    return elapsed_s >= min_seconds or elapsed_s >= max_seconds


def request_meets_slos(req: RequestTiming, slo_tpot_ms: float, slo_ttft_ms: float, slo_itl_ms: float) -> bool:
    """Whether one request met every SLO that is set (a 0 SLO is not set)."""
    if slo_tpot_ms > 0 and not (1000 * tpot(req) <= slo_tpot_ms):
        return False
    if slo_ttft_ms > 0 and not (1000 * req.ttft <= slo_ttft_ms):
        return False
    return not (slo_itl_ms > 0 and req.output_len > 1 and 1000 * float(np.max(np.diff(req.token_times))) > slo_itl_ms)


def goodput_fraction(reps: Sequence[Repetition], slo_tpot_ms: float, slo_ttft_ms: float,
                     slo_itl_ms: float) -> float:
    """Share of requests (over all repetitions) that met every SLO; NaN when no SLO is set."""
    if not (slo_tpot_ms > 0 or slo_ttft_ms > 0 or slo_itl_ms > 0):
        return NAN
    reqs = [q for r in reps for q in r.requests]
    return sum(request_meets_slos(q, slo_tpot_ms, slo_ttft_ms, slo_itl_ms) for q in reqs) / len(reqs)


def decode_slices(reps: Sequence[Repetition], slice_tokens: int) -> list[float]:
    """Decode tok/s in successive slices of slice_tokens output tokens (median over repetitions).

    Slice k spans the gaps from token k*S to token (k+1)*S (the last slice may be
    shorter); the rate sums the requests that ran together.
    """
    if slice_tokens < 1:
        return []
    per_rep: list[list[float]] = []
    for rep in reps:
        n = min(r.output_len for r in rep.requests)
        rates = []
        for lo in range(0, n - 1, slice_tokens):
            hi = min(lo + slice_tokens, n - 1)
            t0 = min(r.token_times[lo] for r in rep.requests)
            t1 = max(r.token_times[hi] for r in rep.requests)
            rates.append(len(rep.requests) * (hi - lo) / (t1 - t0) if t1 > t0 else NAN)
        per_rep.append(rates)
    return [percentile([rates[k] for rates in per_rep], 50) for k in range(len(per_rep[0]))] if per_rep else []


SAMPLE_METRICS = ("ttft_ms", "e2e_ms", "tpot_ms", "prefill_tok_s", "decode_tok_s", "output_tok_s", "itl_ms_p50",
                  "itl_ms_p99", "itl_ms_max")


def sample_rows(run_id: str, case_index: int, params: dict, reps: Sequence[Repetition]) -> list[dict]:
    """One samples.csv row per repetition; the private _decode_tokens divides its decode energy."""
    out = []
    for i, rep in enumerate(reps):
        m = repetition_metrics(rep)
        out.append({
            "run_id": run_id, "case": case_index, "repetition": i,
            "batch_size": params["batch_size"], "input_len": params["input_len"], "output_len": params["output_len"],
            **{k: m[k] for k in SAMPLE_METRICS},
            "_decode_tokens": m["decode_tokens"],
        })
    return out
