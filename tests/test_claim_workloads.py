"""Every claim workload end to end on the tiny model on CPU, through the real CLI."""

import math

import pandas as pd
import pytest

from bench.core.metrics import batch_repetition, decode_slices, goodput_fraction
from bench.hardware.roofline import (
    datasheet_peak,
    decode_bound_tok_s,
    decode_bytes_per_step,
    mbu,
    prefill_flops,
)
from bench.spec.models import resolve_model
from tests.helpers import FAST, auto_bytes_per_element, run_bench, single_run_dir


def run_workload(out_dir, name, *extra):
    proc = run_bench("run", "--workload", name, "--quick", "--out", str(out_dir), *FAST, *extra)
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(single_run_dir(out_dir) / "results.csv")


def test_membw_then_matmul_feed_the_roofline(tmp_path):
    out = tmp_path / "r"
    bw = run_workload(out, "membw", "--set", "size_mb=64")
    assert bw.loc[0, "status"] == "ok" and bw.loc[0, "bandwidth_gb_s"] > 0
    # A later run in the same results root reuses the measured ceiling.
    proc = run_bench("run", "--quick", "--out", str(out), *FAST)
    assert proc.returncode == 0, proc.stderr
    (quick,) = out.glob("*-quick/results.csv")
    row = pd.read_csv(quick).iloc[0]
    assert "bandwidth measured in" in row["detail"]
    assert 0 < row["mbu"] < 1
    assert row["roofline_decode_tok_s"] > row["decode_tok_s"]


def test_matmul_rows(tmp_path):
    df = run_workload(tmp_path, "matmul", "--set", "matmul_n=256")
    assert set(df["dtype"]) == {"bfloat16", "float32"}
    assert (df["tflops"] > 0).all() and (df["status"] == "ok").all()


def test_a_memory_budget_is_decided_by_the_measured_peak(tmp_path):
    """Simulated peak = 1 GB + 1 MB per token held; with max_mem_gb=3 and 16 output tokens an input fits up to
    1984 tokens. Every length runs (the budget never stops a case by prediction); 2048 measures over budget,
    the bisection probes 1536, 1792, 1920, 1984 (all within) and stops."""
    df = run_workload(tmp_path, "long-context", *SIM, "--set", "max_context=4096", "--set", "max_mem_gb=3",
                      "--set", "min_context=256", "--set", "warmup=0")
    assert list(zip(df["input_len"], df["status"])) == [
        (256, "ok"), (512, "ok"), (1024, "ok"), (2048, "over_budget"),
        (1536, "ok"), (1792, "ok"), (1920, "ok"), (1984, "ok"), (4080, "skipped")]
    assert list(df["peak_mem_gb"][:4]) == [1.272, 1.528, 2.04, 3.064]
    assert "measured peak 3.06 GB exceeds max_mem_gb=3" in df["detail"][3]
    # Before anything failed the capacity is unknown: empty, with a note; afterwards the longest that fitted.
    assert df["measured_max_context"][:3].isna().all()
    assert "limit not reached up to 1024 tokens" in df["detail"][2]
    assert df["measured_max_context"].iloc[-2] == 1984
    assert df["predicted_max_context"][:8].notna().all() and df["predicted_peak_mem_gb"][:8].notna().all()
    assert (df["kv_bytes_per_token"] == 2 * 8 * 4 * 32 * auto_bytes_per_element()).all()  # tiny


SIM = ["--engine", "simulated"]  # the scenario's logic, not the model's speed, is under test


def test_latency_slo_columns(tmp_path):
    df = run_workload(tmp_path, "latency", *SIM, "--set", "batch_size=1,4", "--set", "slo_tpot_ms=1000")
    assert (df["goodput_frac"] == 1.0).all()
    assert list(df["max_batch_meeting_slo"]) == [1, 4]
    assert df["tpot_ms_p90"].notna().all() and df["itl_ms_p90"].notna().all()
    strict = run_workload(tmp_path / "strict", "latency", *SIM, "--set", "batch_size=1", "--set", "slo_tpot_ms=0.001")
    assert strict.loc[0, "goodput_frac"] == 0.0
    assert math.isnan(strict.loc[0, "max_batch_meeting_slo"])


def test_prefix_reuse_speeds_up_ttft(tmp_path):
    df = run_workload(tmp_path, "prefix-reuse", "--set", "input_len=544", "--set", "prefix_len=512")
    recompute, reuse = df.iloc[0], df.iloc[1]
    # The real engine's figure, without a bound on wall-clock speed (a busy machine may blur it);
    # the exact speedup is checked on the simulated engine (test_simulated.py).
    assert math.isnan(recompute["ttft_speedup"]) and reuse["ttft_speedup"] > 0
    assert reuse["ttft_speedup"] == pytest.approx(recompute["ttft_ms_p50"] / reuse["ttft_ms_p50"], rel=1e-3)


def test_long_generation_slices(tmp_path):
    """The simulated engine decodes at a constant 11 ms a token: every slice at 1000/11 tok/s, no slowdown."""
    df = run_workload(tmp_path, "long-generation", *SIM, "--set", "output_len=513", "--set", "slice_tokens=128")
    slices = [float(x) for x in df.loc[0, "decode_tok_s_slices"].split(";")]
    assert slices == pytest.approx([1000 / 11] * 4, rel=1e-3)
    assert df.loc[0, "decode_slowdown"] == pytest.approx(1.0, rel=1e-3)


def test_edge_fit_budget(tmp_path):
    df = run_workload(tmp_path, "edge", "--model", "tiny", "--set", "fit_budget_gb=0.01")
    assert df.loc[0, "status"] == "ok" and bool(df.loc[0, "fits_budget"]) is False
    assert df.loc[0, "model_mem_gb"] > 0.01


def test_roofline_pure_functions():
    shape = resolve_model("llama-3.1-8b").shape
    h100 = datasheet_peak("NVIDIA H100 80GB HBM3")
    assert h100 and h100.bandwidth == 3.35e12
    assert datasheet_peak("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert datasheet_peak("NVIDIA A100-SXM4-40GB").name == "A100 40GB"
    assert datasheet_peak("NVIDIA GeForce RTX 4090").name == "RTX 4090"
    assert datasheet_peak("AMD EPYC") is None
    per_step = decode_bytes_per_step(shape, 2, batch=1, context=0)
    assert per_step == shape.params * 2
    bound = decode_bound_tok_s(per_step, 1, h100.bandwidth)
    assert 200 < bound < 220  # 3.35 TB/s / 16.06 GB
    assert mbu(bound, per_step, 1, h100.bandwidth) == pytest.approx(1.0)
    tiny = resolve_model("tiny").shape
    # 2 * params * tokens + 2 * layers * heads*head_dim * n^2
    assert prefill_flops(tiny, 1, 100) == pytest.approx(2 * tiny.params * 100 + 2 * 8 * 256 * 100 * 100)


def test_goodput_and_slices_by_hand():
    fast = batch_repetition(0.0, [0.1, 0.105, 0.110], 1, 8)  # TPOT 5 ms
    slow = batch_repetition(0.0, [0.1, 0.120, 0.140], 1, 8)  # TPOT 20 ms
    assert goodput_fraction([fast, slow], 10, 0, 0) == 0.5
    assert goodput_fraction([fast, slow], 10, 50, 0) == 0.0  # TTFT 100 ms > 50 ms
    assert math.isnan(goodput_fraction([fast], 0, 0, 0))
    rep = batch_repetition(0.0, [0.0, 0.1, 0.2, 0.4, 0.6], 2, 1)
    assert decode_slices([rep], 2) == pytest.approx([2 * 2 / 0.2, 2 * 2 / 0.4])


def test_memory_prediction_matches_the_h200_measurement():
    """llama-3.1-8b, batch 1, 131056 + 16 tokens on an H200 (results/reference/NVIDIA-H200): torch's peak
    was 48.91 GB with 16.06 GB of weights, so the case added 32.85 GB. Counting a (query x key) fp32 score
    matrix that SDPA never builds predicted 2.2 TB and a maximum context of a few thousand tokens."""
    from bench.hardware.roofline import predicted_extra_bytes

    shape = resolve_model("llama-3.1-8b").shape
    fused = predicted_extra_bytes(shape, 2, 1, 131056, 16, materialized_scores=False)
    assert fused / 1e9 == pytest.approx(32.85, rel=0.05)
    eager = predicted_extra_bytes(shape, 2, 1, 131056, 16, materialized_scores=True)
    assert eager > 50 * fused  # eager attention does hold the scores: quadratic in the context
