"""The openai engine's fault handling (a stub server on 127.0.0.1) and the vllm engine's absence."""

import importlib.util
import math
import socket
from pathlib import Path

import pandas as pd
import pytest

from bench.hardware.devices import resolve_device
from bench.run.runner import Runner
from bench.spec.workload import apply_overrides, expand, load_workload
from bench.telemetry.base import NoTelemetry
from bench.telemetry.sampler import Sampler
from tests.helpers import FAST, run_bench, single_run_dir
from tests.stub_openai_server import StubServer


def run_openai_results(url, **overrides):
    """Every case's CaseResult (row and typed warnings) of the quick workload on the openai engine at url."""
    params = {"engine": ["openai"], "base_url": url, "batch_size": [2], "output_len": [8], "min_reps": 2,
              "min_seconds": 0.0, "timeout_s": 1.0, **overrides}
    w = apply_overrides(load_workload("quick"), params)
    runner = Runner(w, resolve_device("cpu"), Sampler(NoTelemetry()), "test")
    return list(runner.run(expand(w)))


def run_openai(url, **overrides):
    return [r.row for r in run_openai_results(url, **overrides)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_happy_path_per_request_timelines():
    with StubServer("ok") as server:
        (row,) = run_openai(server.url)
    assert row["status"] == "ok", row["detail"]
    assert row["decode_tok_s"] > 0 and row["ttft_ms_p50"] > 0
    assert row["repetitions"] == 2


def test_openai_multi_token_chunks_warn_and_count_tpot_after_the_first_event():
    """4 tokens per event: the row says 4 per event, ITL is empty, TPOT is the time after the first event over
    the 12 tokens after it, and decode tok/s counts those 12 tokens a request over a window that holds every one
    of them (per repetition, from its samples: the window is at least the median request's decode time)."""
    with StubServer("multi", per_event=4) as server:
        (result,) = run_openai_results(server.url, output_len=[16])
    row = result.row
    assert row["status"] == "ok" and "does not stream per token" in row["detail"]
    assert math.isnan(row["itl_ms_p99"]) and row["tokens_per_event"] == 4.0  # gaps inside an event are unknown
    assert len(result.samples) == 2
    for s in result.samples:
        assert s["_decode_tokens"] == 2 * 12
        decode_s = s["_decode_tokens"] / s["decode_tok_s"]
        assert s["tpot_ms"] * 12 / 1000 <= decode_s * (1 + 1e-9), (s["tpot_ms"], decode_s)


def test_a_usage_block_that_disagrees_with_the_stream_is_a_warning():
    with StubServer("miscount") as server:
        (row,) = run_openai(server.url)
    assert row["status"] == "ok"
    assert "the server's usage counts 8 completion tokens, its stream carried 7" in row["detail"]


def test_closed_loop_users_hold_their_load_and_report_the_steady_window():
    """concurrency=3 with 12 requests: three users, each sending its next the moment its last finished; the row
    carries its users, how many were in flight on average, and the steady window beside the whole run; the
    server's /metrics (the stub counts what it serves) saw requests running and prefix-cache hits."""
    with StubServer("ok") as server:
        (row,) = run_openai(server.url, concurrency=[3], num_requests=12, output_len=[16])
        served = server.served
    assert row["status"] == "ok", row["detail"]
    assert served == 3 * 12 and row["tags"] == "users=3" and row["concurrency"] == 3  # warm-up and two reps
    assert 1.5 < row["concurrency_achieved"] <= 3.0 and math.isnan(row["queue_ms_p99"])  # no arrivals to wait
    assert row["steady_end_s"] > row["steady_start_s"] >= 0 and row["output_tok_s_steady"] > 0
    assert row["server_running_max"] >= 1 and row["server_kv_usage_max"] > 0
    assert row["server_prefix_hit_rate"] > 0  # two prompts cycled over twelve requests: seen before
    assert "server metrics not read" not in row["detail"]


def test_arrivals_faster_than_the_users_wait_for_one_and_say_how_long():
    """200 arrivals/s on one user whose requests take ~40 ms: most arrivals queue for the user."""
    with StubServer("ok") as server:
        (row,) = run_openai(server.url, concurrency=[1], request_rate=200.0, num_requests=8, output_len=[16])
    assert row["status"] == "ok" and row["queue_ms_p99"] > 10, row
    assert row["concurrency_achieved"] <= 1.0


def test_too_few_requests_for_the_load_leave_no_steady_window_and_say_how_many_would():
    with StubServer("ok") as server:
        (row,) = run_openai(server.url, concurrency=[4], num_requests=4, output_len=[16])
    assert row["status"] == "ok" and pd.isna(row.get("output_tok_s_steady"))
    assert "no steady window:" in row["detail"] and "about 12 requests at this load would hold one" in row["detail"]


@pytest.mark.parametrize("page, said", [("garbage", "not Prometheus text"), ("missing", "HTTP 404")])
def test_a_server_without_a_readable_metrics_page_costs_one_line(page, said):
    with StubServer("ok", metrics=page) as server:
        (row,) = run_openai(server.url, concurrency=[2], num_requests=4)
    assert row["status"] == "ok" and row["detail"].count("server metrics not read") == 1 and said in row["detail"]
    assert pd.isna(row.get("server_running_max"))


def test_server_metrics_false_reads_no_page():
    """The reader can be turned off (to see what it costs the server): no column filled, no line said."""
    with StubServer("ok", metrics="garbage") as server:
        (row,) = run_openai(server.url, concurrency=[2], num_requests=4, server_metrics=False)
    assert row["status"] == "ok" and "server metrics" not in row["detail"] and pd.isna(row.get("server_running_max"))


def test_a_concurrency_sweep_stops_past_the_slo_edge():
    """Users swept lowest first, like rates: the crawling server breaks the TTFT SLO at the second level and the
    third is not run; the answer names the largest level that met it."""
    sweep = {"concurrency": [1, 2, 4], "num_requests": 4, "batch_size": [1], "slo_ttft_ms": 300.0,
             "min_reps": 1, "timeout_s": 5.0}
    with StubServer("crawl", crawl_after=8) as server:  # warm-up and a repetition of 4 at 1 user
        rows = run_openai(server.url, **sweep)
    assert [r["status"] for r in rows] == ["ok", "ok", "skipped"], [r["detail"] for r in rows]
    assert rows[0]["max_load_meeting_slo"] == 1.0 and "sweep stopped: load 2 already broke" in rows[2]["detail"]
    assert [r["tags"] for r in rows] == ["users=1", "users=2", "users=4"]


def test_openai_notes_belong_to_their_own_case():
    """The engine serves every case of a run: the first case's "does not stream per token" stays in its row."""
    params = {"engine": ["openai"], "batch_size": [2, 1], "output_len": [8], "min_reps": 2, "min_seconds": 0.0,
              "timeout_s": 1.0}
    with StubServer("multi") as server:
        w = apply_overrides(load_workload("quick"), {**params, "base_url": server.url})
        rows = []
        for result in Runner(w, resolve_device("cpu"), Sampler(NoTelemetry()), "test").run(expand(w)):
            rows.append(result.row)
            server.mode = "ok"  # the second case streams per token
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert "does not stream per token" in rows[0]["detail"]
    assert "does not stream per token" not in rows[1]["detail"]


def test_openai_all_tokens_in_one_event_leave_decode_figures_empty():
    """Never 0: a server that sends the whole answer at once tells TTFT and E2E, nothing about decode."""
    with StubServer("single") as server:
        (row,) = run_openai(server.url)
    assert row["status"] == "ok" and "does not stream per token" in row["detail"]
    for col in ("tpot_ms_p50", "itl_ms_p99", "decode_tok_s", "decode_tok_s_per_user"):
        assert math.isnan(row[col]), col
    assert row["ttft_ms_p50"] > 0 and row["e2e_ms_p50"] > 0


def test_openai_chat_endpoint():
    with StubServer("ok") as server:
        (row,) = run_openai(server.url, api="chat")
    assert row["status"] == "ok", row["detail"]
    assert row["decode_tok_s"] > 0 and "chat endpoint" in row["detail"]


def test_openai_poisson_arrivals():
    """Open-loop arrivals: the client reports the rate it really sent at and how late its sends were."""
    with StubServer("ok") as server:
        (row,) = run_openai(server.url, request_rate=50.0, num_requests=6, slo_tpot_ms=1000.0)
    assert row["status"] == "ok" and row["goodput_frac"] == 1.0
    assert row["achieved_rate_rps"] > 0 and 0 <= row["send_lateness_ms_p99"] < 1000
    assert "client-bound" not in str(row.get("warnings", ""))  # six requests at 50/s: an idle client keeps up


def test_a_load_sweep_finds_the_largest_load_meeting_the_slo_and_stops_past_it():
    """Request rates swept lowest first: the server slows to a crawl after the first load's requests, the second
    load breaks the TTFT SLO by more than the margin, and the sweep stops there, every finished row kept; a
    sweep whose first load already breaks the SLO stops at once."""
    # TTFT SLO 300 ms: the stub answers in milliseconds even on a busy machine; crawling, it waits 500 ms > 1.5x
    sweep = {"request_rate": [20.0, 40.0, 80.0], "num_requests": 10, "batch_size": [1], "slo_ttft_ms": 300.0,
             "min_reps": 2, "timeout_s": 5.0}
    with StubServer("crawl", crawl_after=30) as server:  # a warm-up and two repetitions of 10
        rows = run_openai(server.url, **sweep)
    assert [r["status"] for r in rows] == ["ok", "ok", "skipped"]
    assert rows[0]["max_load_meeting_slo"] == 20.0 and rows[1]["ttft_ms_p99"] > 450, rows[0]["detail"]
    assert "sweep stopped: load 40 already broke the SLO by more than 1.5x (ttft_ms_p99" in rows[2]["detail"]
    assert [r["tags"] for r in rows] == ["rate=20", "rate=40", "rate=80"]
    # The rate is the case's identity, skipped rows' too: three cases to compare, each named by its rate.
    from bench.core.caseid import case_label

    assert [r["request_rate"] for r in rows] == [20.0, 40.0, 80.0]
    assert [case_label(r, workload=False).split()[-1] for r in rows] == ["rate=20/s", "rate=40/s", "rate=80/s"]
    with StubServer("crawl", crawl_after=0) as server:
        rows = run_openai(server.url, **sweep)
    assert [r["status"] for r in rows] == ["ok", "skipped", "skipped"] and pd.isna(rows[0]["max_load_meeting_slo"])


def test_each_load_of_a_sweep_is_sent_at_its_own_rate():
    """One server connection serves every load of a sweep, but each case sends at its own rate (the engine is
    loaded once; the rate is the case's). Same seed: the same gaps, eight times shorter at eight times the rate."""
    with StubServer("ok") as server:
        rows = run_openai(server.url, request_rate=[2.0, 16.0], num_requests=8, batch_size=[1], min_reps=1,
                          warmup=0)
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["detail"] for r in rows]
    slow, fast = (r["achieved_rate_rps"] for r in rows)
    # Loose: a busy machine sends late (lowering the fast rate), never early.
    assert 0.8 < slow < 4.8 and fast > 3 * slow, (slow, fast)


def test_a_client_that_falls_behind_says_its_figures_measure_itself():
    """The pure check on timings: sends 40 ms late against a 20/s schedule, or a rate below the scheduled one,
    or a busy process, give a client-bound warning; sends on time give none."""
    from bench.core.metrics import Repetition, RequestTiming
    from bench.core.noise import client_bound

    def rep(lateness_s: float, spacing: float = 0.05) -> Repetition:
        return Repetition(tuple(RequestTiming(i * spacing + lateness_s * (i > 0), (i * spacing + 1.0,), 8,
                                              scheduled=i * spacing) for i in range(10)))

    params = {"request_rate": 20.0}
    assert client_bound([rep(0.0)], params, 0.2) == []
    (late,) = client_bound([rep(0.04)], params, 0.2)
    assert late.kind == "client-bound" and "40.0 ms late" in late.message
    slow = Repetition(tuple(RequestTiming(i * 0.1, (i * 0.1 + 1.0,), 8, scheduled=i * 0.05) for i in range(10)))
    (short,) = client_bound([slow], params, 0.2)
    assert "requests/s of the" in short.message
    (busy,) = client_bound([rep(0.0)], params, 0.95)
    assert "cores busy" in busy.message
    assert client_bound([rep(0.04)], {"request_rate": 0.0}, 0.99) == []  # all at once: no schedule to keep


@pytest.mark.parametrize(
    ("mode", "message"),
    [("http500", "HTTP 500"), ("malformed", "malformed stream"), ("stall", "timed out"),
     ("short", "returned 7 tokens, expected 8"), ("usage_str", "malformed stream: 'usage'"),
     ("choices_obj", "malformed stream: 'choices'"), ("ids_str", "malformed stream: token_ids"),
     ("keepalive", "deadline"), ("usage_only", "no token event")],
)
def test_openai_faults_are_error_rows(mode, message):
    with StubServer(mode) as server:
        rows = run_openai(server.url, batch_size=[1, 2])
    assert [r["status"] for r in rows] == ["error", "error"]  # the sweep goes on
    assert message in rows[0]["detail"]


def test_openai_server_down_and_wrong_model():
    (row,) = run_openai(f"http://127.0.0.1:{free_port()}/v1")
    assert row["status"] == "error" and "unreachable" in row["detail"]
    with StubServer("ok", model="other") as server:
        (row,) = run_openai(server.url)
    assert row["status"] == "error" and "does not serve model 'tiny'" in row["detail"]


def test_openai_cli_exit_1_and_key_never_written(tmp_path):
    with StubServer("http500") as server:
        proc = run_bench("run", "--engine", "openai", "--set", f"base_url={server.url}", "--out", str(tmp_path),
                         "--quick", *FAST, env={"OPENAI_API_KEY": "sk-secret-test-key"})
    assert proc.returncode == 1, proc.stderr
    run = single_run_dir(tmp_path)
    assert pd.read_csv(run / "results.csv").loc[0, "status"] == "error"
    for f in run.iterdir():
        assert "sk-secret-test-key" not in f.read_text()
    assert '"local": true' in (run / "run.json").read_text()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_is_a_skipped_row(tmp_path):
    proc = run_bench("run", "--engine", "vllm", "--quick", "--out", str(tmp_path), *FAST)
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(single_run_dir(tmp_path) / "results.csv").iloc[0]
    assert row["status"] == "skipped" and "vllm is not installed" in row["detail"]


TRACE = Path(__file__).resolve().parent.parent / "workloads" / "traces" / "mini-mooncake.jsonl"


def test_a_trace_is_replayed_with_its_arrivals_lengths_and_shared_prefixes():
    """The shipped Mooncake-format trace, four times faster: every request with its own lengths, sent at its
    time (the client reports how well it kept to them), prompts that share hash ids share those blocks."""
    from bench.spec.trace import BLOCK_TOKENS, prompt_ids, requests

    reqs = list(requests(TRACE, speed=4.0))
    assert len(reqs) == 48 and reqs[0].at_s == 0 and reqs[-1].at_s == pytest.approx((4116 - 32) / 4000)
    a, b = prompt_ids(reqs[0], 32000), prompt_ids(reqs[1], 32000)
    assert len(a) == 600 and a[:BLOCK_TOKENS] == b[:BLOCK_TOKENS] and a[BLOCK_TOKENS:] != b[BLOCK_TOKENS:600]
    with StubServer("ok") as server:
        (row,) = run_openai(server.url, trace=str(TRACE), trace_speed=4.0, batch_size=[1], min_reps=2,
                            timeout_s=10.0)
    assert row["status"] == "ok", row["detail"]
    assert row["tags"] == "trace=mini-mooncake.jsonl@4x"
    scheduled = 47 / ((4116 - 32) / 4000)  # the trace's own rate at 4x
    # the rate the sends really kept, beside the trace's own: loose bounds, a busy machine sends late
    assert 0.5 * scheduled < row["achieved_rate_rps"] < 1.5 * scheduled and row["send_lateness_ms_p99"] >= 0


@pytest.mark.parametrize(("lines", "message"), [
    ('{"timestamp": 0, "input_length": 8}', "missing field(s) output_length"),
    ('{"timestamp": -5, "input_length": 8, "output_length": 4}', "must be a number of ms >= 0"),
    ('{"timestamp": 10, "input_length": 8, "output_length": 4}\n{"timestamp": 5, "input_length": 8, '
     '"output_length": 4}', "line 2: timestamp 5 ms is before the previous line's 10 ms"),
    ('{"timestamp": 0, "input_length": 999999, "output_length": 4}', "exceeds the model's"),
    ('{"timestamp": 0, "input_length": 8, "output_length": 4, "hash_ids": "ab"}', "hash_ids must be a list"),
    ("not json", "line 1: not JSON"),
    ("", "no request in it"),
])
def test_a_bad_trace_is_one_line_and_exit_2(tmp_path, lines, message):
    trace = tmp_path / "t.jsonl"
    trace.write_text(lines + "\n")
    proc = run_bench("run", "--engine", "openai", "--set", "base_url=http://127.0.0.1:9/v1", "--set",
                     f"trace={trace}", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()  # found before any run directory was made


def test_a_long_trace_is_checked_streaming_in_constant_memory(tmp_path):
    """A trace is read a line at a time: checking 300,000 lines (21 MB) peaks at a few MB, and at no more than
    30,000 lines take (tracemalloc makes every allocation slow, so the trace is not a million lines)."""
    import tracemalloc

    from bench.spec.trace import check_trace, requests

    line = '{"timestamp": %d, "input_length": 8, "output_length": 4, "hash_ids": [1]}\n'
    peaks = []
    for lines in (30_000, 300_000):
        trace = tmp_path / f"{lines}.jsonl"
        with trace.open("w") as f:
            f.writelines(line % i for i in range(lines))
        tracemalloc.start()
        assert check_trace(trace, max_position=2048) == lines
        first = next(requests(trace))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert first.input_len == 8
        peaks.append(peak)
    assert peaks[1] < 5e6 and peaks[1] < 1.5 * peaks[0] + 1e5, peaks  # flat in the trace's length


def test_multi_turn_sessions_carry_their_history():
    """Two sessions of three turns: each turn's prompt holds the earlier turns' prompts and the answers the
    server streamed back, so it grows by input + output tokens a turn; TTFT of the first and last turn said."""
    with StubServer("ok") as server:
        (row,) = run_openai(server.url, turns=3, batch_size=[2], input_len=[16], output_len=[8], min_reps=1,
                            warmup=0)
        lengths = sorted(server.prompt_lengths)
    assert row["status"] == "ok", row["detail"]
    assert lengths == [16, 16, 40, 40, 64, 64]  # 16; 16 + 8 + 16; 40 + 8 + 16
    assert row["tags"] == "turns=3" and "multi-turn: 3 turns; TTFT of turn 1" in row["detail"]
    proc = run_bench("run", "--engine", "openai", "--set", "base_url=http://127.0.0.1:9/v1", "--set", "turns=2",
                     "--set", "request_rate=4")
    assert proc.returncode == 2 and "closed-loop session mode" in proc.stderr
    proc = run_bench("run", "--engine", "openai", "--set", "base_url=http://127.0.0.1:9/v1", "--set", "turns=2",
                     "--set", "concurrency=4")
    assert proc.returncode == 2 and "not with a trace or turns" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_concurrency_sweep_from_the_cli_answers_and_draws_its_pareto_curve(tmp_path):
    """`bench run --set concurrency=1,2` against the stub: the terminal names the largest level meeting the SLO,
    results.csv names each case by its users, and the Pareto curve has a point per level."""
    from bench.analysis.pareto import pareto_points
    from bench.core.caseid import case_label

    with StubServer("ok") as server:
        proc = run_bench("run", "--engine", "openai", "--set", f"base_url={server.url}", "--set", "concurrency=1,2",
                         "--set", "num_requests=6", "--set", "slo_ttft_ms=2000", "--set", "batch_size=2", *FAST,
                         "--set", "canary_seconds=0", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "largest concurrency meeting the SLO: 2 users" in " ".join(proc.stdout.split())
    results = pd.read_csv(single_run_dir(tmp_path) / "results.csv")
    assert [case_label(r, workload=False).split()[-1] for r in results.to_dict("records")] == ["users=1", "users=2"]
    assert list(results["concurrency"]) == [1, 2] and len(pareto_points(results)) == 2
