"""Metric definitions checked on hand-computed timelines."""

import math

import pytest

from bench.core.metrics import (
    Repetition,
    RequestTiming,
    batch_repetition,
    calculate_metrics,
    concurrency_achieved,
    cv,
    enough_repetitions,
    percentile,
    repetition_metrics,
    steady_window,
    tokens_per_event,
)


def test_single_request_by_hand():
    # start 0 s; tokens at 0.100, 0.120, 0.140, 0.160, 0.180 s; 10 prompt tokens.
    rep = batch_repetition(0.0, [0.100, 0.120, 0.140, 0.160, 0.180], batch_size=1, input_len=10)
    m = calculate_metrics([rep])
    assert m["ttft_ms_p50"] == pytest.approx(100.0)
    assert m["e2e_ms_p50"] == pytest.approx(180.0)
    # TPOT = (180 - 100) / (5 - 1) = 20 ms; per-user tok/s = 1000/20 = 50
    assert m["tpot_ms_p50"] == pytest.approx(20.0)
    assert m["decode_tok_s_per_user"] == pytest.approx(50.0)
    # prefill = 1 * 10 / 0.1 s = 100 tok/s; decode = 1 * 4 / 0.08 s = 50; output = 5 / 0.18
    assert m["prefill_tok_s"] == pytest.approx(100.0)
    assert m["decode_tok_s"] == pytest.approx(50.0)
    assert m["output_tok_s"] == pytest.approx(5 / 0.18)
    assert m["itl_ms_p99"] == pytest.approx(20.0)


def test_batch_multiplies_throughput_not_latency():
    rep = batch_repetition(1.0, [1.2, 1.3, 1.4], batch_size=4, input_len=50)
    m = calculate_metrics([rep])
    assert m["ttft_ms_p50"] == pytest.approx(200.0)
    assert m["tpot_ms_p50"] == pytest.approx(100.0)
    assert m["prefill_tok_s"] == pytest.approx(4 * 50 / 0.2)
    assert m["decode_tok_s"] == pytest.approx(4 * 2 / 0.2)
    assert m["output_tok_s"] == pytest.approx(4 * 3 / 0.4)


def test_itl_pooled_and_percentiles_across_repetitions():
    fast = batch_repetition(0.0, [0.01, 0.02, 0.03], 1, 1)  # gaps 10, 10 ms
    slow = batch_repetition(0.0, [0.01, 0.05, 0.09], 1, 1)  # gaps 40, 40 ms
    m = calculate_metrics([fast, slow])
    assert m["itl_ms_p50"] == pytest.approx(25.0)  # median of [10, 10, 40, 40]
    assert m["decode_tok_s"] == pytest.approx((100 + 25) / 2)  # median of per-repetition 100 and 25
    assert m["decode_tok_s_cv"] == pytest.approx(cv([100.0, 25.0]))
    stall = batch_repetition(0.0, [0.01, 0.02, 0.03] + [0.04 + i / 1000 for i in range(200)] + [0.5], 1, 1)
    m = calculate_metrics([fast, stall])
    assert m["itl_ms_p99"] < 20 and m["itl_ms_max"] == pytest.approx(261.0)  # 500 - 239: one stall: under p99, not max


def test_concurrent_requests_with_different_timelines():
    a = RequestTiming(0.0, (0.1, 0.2), 5)
    b = RequestTiming(0.05, (0.3, 0.4, 0.5), 7)
    m = repetition_metrics(Repetition((a, b)))
    # prefill window: first start (0.0) to last first-token (0.3): 12 tokens / 0.3 s
    assert m["prefill_tok_s"] == pytest.approx(12 / 0.3)
    # decode: a's 0.1 -> 0.2 and b's 0.3 -> 0.5, 1 + 2 tokens. From the last first token (0.3) a's token, decoded
    # at 0.2, would count with none of its time: 3 / 0.2 s, a rate no request saw.
    assert m["decode_tok_s"] == pytest.approx(3 / 0.3)
    assert m["decode_tok_s"] <= 1 / 0.1 + 2 / 0.2  # at most the two requests' own rates, added
    assert m["output_tok_s"] == pytest.approx(5 / 0.5)


def test_single_token_output_has_no_tpot():
    m = calculate_metrics([batch_repetition(0.0, [0.1], 1, 4)])
    assert math.isnan(m["tpot_ms_p50"])
    assert math.isnan(m["decode_tok_s"])
    assert math.isnan(m["decode_tok_s_per_user"])


def test_percentile_and_cv_edges():
    assert math.isnan(percentile([], 50))
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert math.isnan(cv([5.0]))
    assert cv([9.0, 11.0]) == pytest.approx(math.sqrt(2) / 10)


def test_no_repetitions_is_an_error():
    with pytest.raises(ValueError):
        calculate_metrics([])


@pytest.mark.parametrize(
    ("done", "elapsed", "expected"),
    [(0, 10.0, False), (2, 10.0, False), (3, 0.5, False), (3, 1.0, True), (50, 0.0, True)],
)
def test_repeat_until_count_and_duration(done, elapsed, expected):
    assert enough_repetitions(done, elapsed, min_reps=3, min_seconds=1.0, max_reps=50, max_seconds=60) is expected


def test_open_loop_arrivals_count_the_time_some_request_was_decoding():
    """Two requests sent 1 s apart, each decoding 4 tokens in 0.3 s: the decode window is the 0.6 s in which one
    of them was decoding, not the last request's 0.3 s (which would double the rate) nor the 1.3 s span."""
    a = RequestTiming(0.0, (0.1, 0.2, 0.3, 0.4), 10, scheduled=0.0)
    b = RequestTiming(1.0, (1.1, 1.2, 1.3, 1.4), 10, scheduled=1.0)
    m = repetition_metrics(Repetition((a, b)))
    assert m["decode_tok_s"] == pytest.approx(6 / 0.6)
    assert m["prefill_tok_s"] == pytest.approx(20 / 0.2)
    assert m["output_tok_s"] == pytest.approx(8 / 1.4)
    # The turns of a session: sent one after another, not scheduled; the same windows.
    turn1, turn2 = RequestTiming(0.0, a.token_times, 10), RequestTiming(1.0, b.token_times, 10)
    assert repetition_metrics(Repetition((turn1, turn2)))["decode_tok_s"] == pytest.approx(6 / 0.6)
    # Two requests sent at once whose decoding overlaps: one window, from the first first token to the last token.
    batch = repetition_metrics(Repetition((turn1, RequestTiming(0.0, (0.15, 0.25, 0.35, 0.45), 10))))
    assert batch["decode_tok_s"] == pytest.approx(6 / (0.45 - 0.1))
    assert batch["prefill_tok_s"] == pytest.approx(20 / 0.15)  # until the last prompt was processed
    overlapping = RequestTiming(0.2, (0.3, 0.5), 10, scheduled=0.2)  # decodes 0.3-0.5: the union is 0.1-0.5
    assert repetition_metrics(Repetition((a, overlapping)))["decode_tok_s"] == pytest.approx(4 / 0.4)


def test_a_chunked_streams_tpot_counts_only_the_tokens_after_its_first_event():
    """16 tokens in 4 events of 4 at 0.1, 0.2, 0.3, 0.4 s (AIPerf PR #1279): the 3 tokens that came with the
    first were not decoded after it. TPOT = (0.4 - 0.1) / (16 - 4) = 25 ms, not 0.3 / 15 = 20 ms."""
    times = tuple(t for t in (0.1, 0.2, 0.3, 0.4) for _ in range(4))
    chunked = RequestTiming(0.0, times, 8, "chunk", first_event_tokens=4, events=4)
    m = calculate_metrics([Repetition((chunked,))])
    assert m["tpot_ms_p50"] == pytest.approx(25.0) and m["decode_tok_s_per_user"] == pytest.approx(40.0)
    assert m["decode_tok_s"] == pytest.approx(12 / 0.3) and math.isnan(m["itl_ms_p99"])  # no gap of its own
    assert tokens_per_event([chunked]) == 4.0
    per_token = RequestTiming(0.0, (0.1, 0.2, 0.3, 0.4), 8)  # one event each: unchanged, (0.4 - 0.1) / 3
    assert calculate_metrics([Repetition((per_token,))])["tpot_ms_p50"] == pytest.approx(100.0)
    assert tokens_per_event([per_token, chunked]) == 20 / 8


def _closed_loop(users: int, rounds: int, life: float = 1.0, gap: float = 0.0) -> list[RequestTiming]:
    """`users` users each sending `rounds` requests of `life` seconds back to back (user u starts at u * gap),
    4 tokens each, evenly spaced over the request's life."""
    reqs = []
    for u in range(users):
        for k in range(rounds):
            start = u * gap + k * life
            reqs.append(RequestTiming(start, tuple(start + life * (i + 1) / 4 for i in range(4)), 8))
    return reqs


def test_the_steady_window_runs_from_the_load_reaching_its_target_to_its_last_fall_below_it():
    """Two users, three rounds of 1 s, the second starting 0.5 s late: both in flight from 0.5 s (the second's
    first send) until 3.0 s (the first user's last request ends; the second drains until 3.5 s)."""
    reqs = _closed_loop(users=2, rounds=3, gap=0.5)
    window, why = steady_window(reqs, target=2)
    assert why == "" and (window.start, window.end) == (0.5, 3.0)
    # Tokens in (0.5, 3.0]: user 0's at 0.75, 1.0, then 4 per round to 3.0 (10); user 1's at 0.75 .. 3.0 (10).
    assert window.output_tok_s == pytest.approx(20 / 2.5)
    # Lives summed over the span: 6 requests of 1 s over 3.5 s.
    assert concurrency_achieved(reqs) == pytest.approx(6 / 3.5)


def test_no_steady_window_where_the_load_never_held_its_target_for_a_request():
    """All requests at once and never replaced: in flight at 2 from the last send until the first finish, less
    than one request's life. And a load that never reached its target at all."""
    burst = _closed_loop(users=2, rounds=1, gap=0.3)
    window, why = steady_window(burst, target=2)
    assert window is None and "held 0.70 s, less than one request's 1.00 s" in why
    window, why = steady_window(burst, target=3)
    assert window is None and why == "never 3 requests in flight"
