"""A server's /metrics page: parsed with prometheus_client, summarised per case from hand-made samples."""

import math

import pytest

from bench.engines.server_metrics import Unreadable, parse_page, summarise

PAGE = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e+09
# TYPE vllm:spec_decode_num_drafts counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 10.0
"""


def test_a_page_is_read_by_prometheus_clients_parser_and_summed_over_engines():
    figures = parse_page(PAGE)
    assert figures == {"running": 5.0, "kv_usage": 0.25, "prefix_queries": 1000.0, "spec_drafts": 10.0}


@pytest.mark.parametrize("page", ["<html><body>502 Bad Gateway</body></html>\n", "{\"object\": \"list\"}",
                                  "# TYPE up gauge\nup 1\n"])
def test_garbage_or_a_page_without_our_figures_is_unreadable(page):
    with pytest.raises(Unreadable):
        parse_page(page)


def test_gauges_over_the_window_and_counters_as_the_windows_own_counts():
    """Readings at t = 0 (before the window), 1, 2, 3 (inside) and 4 (after); the window is [0.5, 3.5].
    Counters: the reading at 0 to the reading at 4. Prefix: 300 of 1200 new queries hit; spec decoding: 40 of 100
    draft tokens accepted over 25 drafts (1 + 40 / 25 = 2.6 tokens a step)."""
    def reading(running, waiting, kv, queries, hits, preempted, drafts, tokens, accepted):
        return {"running": running, "waiting": waiting, "kv_usage": kv, "prefix_queries": queries,
                "prefix_hits": hits, "preemptions": preempted, "spec_drafts": drafts, "spec_draft_tokens": tokens,
                "spec_accepted": accepted}

    samples = [(0.0, reading(0, 0, 0.0, 500, 100, 2, 5, 20, 10)), (1.0, reading(4, 1, 0.5, 800, 200, 2, 10, 40, 20)),
               (2.0, reading(4, 3, 0.7, 1200, 300, 3, 20, 80, 35)), (3.0, reading(2, 0, 0.6, 1500, 350, 3, 25, 100, 45)),
               (4.0, reading(0, 0, 0.1, 1700, 400, 3, 30, 120, 50))]
    got = summarise(samples, 0.5, 3.5)
    assert got["server_running_mean"] == pytest.approx(10 / 3) and got["server_running_max"] == 4
    assert got["server_waiting_mean"] == pytest.approx(4 / 3) and got["server_waiting_max"] == 3
    assert got["server_kv_usage_max"] == 0.7 and got["server_preemptions"] == 1
    assert got["server_prefix_hit_rate"] == pytest.approx(300 / 1200)
    assert got["server_spec_accept_rate"] == pytest.approx(40 / 100)
    assert got["server_spec_accepted_len"] == pytest.approx(1 + 40 / 25)
    # A server that counts no drafts and no prefix queries: those stay empty, never 0.
    plain = [(t, {"running": 1.0}) for t in (0.0, 1.0, 2.0)]
    got = summarise(plain, 0.5, 1.5)
    assert got["server_running_max"] == 1.0
    assert all(math.isnan(got[k]) for k in ("server_prefix_hit_rate", "server_spec_accept_rate", "server_preemptions"))
