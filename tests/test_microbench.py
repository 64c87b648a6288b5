"""The microbenchmarks' time budget: a case whose warm-up and min_reps would pass max_seconds is skipped,
saying why, after a probe or two warm-up calls, not after minutes of calls (a bf16 matmul on a CPU without
native bf16 took 7 minutes a dtype); and the canary takes the dtype a case gets by default."""

import math
import time

import pandas as pd
import pytest
import torch

from bench.hardware import canary
from bench.hardware import devices as dev
from bench.hardware.microbench import TooSlow, product_cost, time_calls
from bench.scenarios.micro import MatmulScenario
from bench.spec.workload import load_workload
from tests.helpers import FAST, run_bench, single_run_dir

CPU = dev.Device(torch.device("cpu"), "test CPU", 0)


def test_two_slow_warm_up_calls_give_up_before_the_repetitions():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.3)

    # 1 warm-up + 3 repetitions of 0.3 s = 1.2 s > max_seconds = 1: given up after the warm-up and one more.
    with pytest.raises(TooSlow, match=r"4 calls \(warm-up \+ min_reps\) would take ~[\d.]+ s here, past max_seconds=1 "):
        time_calls(slow, CPU, warmup=1, min_reps=3, min_seconds=0, max_reps=10, max_seconds=1.0)
    assert len(calls) == 2


def test_a_slow_first_call_alone_does_not_give_up():
    """A first call that pays for kernel selection or allocation is not the call's cost."""
    calls = []

    def cold_then_fast():
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.3)

    times = time_calls(cold_then_fast, CPU, warmup=1, min_reps=3, min_seconds=0, max_reps=10, max_seconds=1.0)
    assert len(times) == 3 and len(calls) == 5  # the cold call, the one that showed it was cold, 3 timed


def test_the_product_probe_stops_at_the_size_asked_for():
    cost = product_cost(CPU, 64, torch.float32, enough=10.0)
    assert cost.probed_n == 64 and cost.seconds == cost.probed_seconds > 0


def test_the_product_probe_stops_small_where_the_budget_is_far_off():
    """A projection far inside the budget decides nothing: one 256^3 product, not one at every size up to n."""
    cost = product_cost(CPU, 4096, torch.float32, budget=1e9, enough=10.0)
    assert cost.probed_n == 256 and cost.seconds == pytest.approx(cost.probed_seconds * 16 ** 3)


def test_a_matmul_past_max_seconds_is_skipped_saying_why(tmp_path):
    proc = run_bench("run", "--workload", "matmul", "--quick", "--out", str(tmp_path), *FAST,
                     "--set", "matmul_n=128", "--set", "max_seconds=0.000001")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv")
    assert (df["status"] == "skipped").all() and df["tflops"].isna().all()
    for detail in df["detail"]:
        assert "calls (warm-up + min_reps) would take ~" in detail and " s here, past max_seconds=1e-06 (" in detail
        assert "GFLOP/s at 128^3, scaled by n^3" in detail and "raise max_seconds" in detail, detail


@pytest.mark.parametrize("flags, fallback", [({"avx2", "fma"}, True), ({"avx512f", "avx512_bf16"}, False),
                                             ({"amx_bf16", "amx_tile"}, False)])
def test_a_skipped_bf16_case_names_the_missing_instructions(monkeypatch, flags, fallback):
    monkeypatch.setattr(dev, "cpu_flags", lambda: flags)
    why = MatmulScenario(load_workload("matmul")).why_slow(CPU, {"dtype": "bfloat16"})
    assert ("this CPU has none of amx_bf16, avx512_bf16, so bfloat16 runs a fallback" in why) is fallback, why
    assert why.endswith("lower matmul_n or raise max_seconds")


def test_the_canary_takes_the_default_dtype_and_says_which(monkeypatch):
    monkeypatch.setattr(dev, "cpu_flags", lambda: {"avx2"})  # no native bf16: a case gets fp32, so does the canary
    taken = canary.measure(CPU, 0.1)
    assert taken["dtype"] == "float32" and taken["tflops"] > 0


def test_canaries_of_two_dtypes_are_not_compared():
    def meta(speed, dtype=None):
        sample = {"bandwidth_gb_s": 20.0 * speed, "tflops": 0.5 * speed, "seconds": 1.0}
        return {"canary": {"start": {**sample, **({"dtype": dtype} if dtype else {})}, "end": sample}}

    old, bf16, fp32 = meta(1.0), meta(0.5, "bfloat16"), meta(100.0, "float32")
    assert canary.dtype(old) == "bfloat16" and canary.dtype({}) == ""  # runs before the dtype was kept took bf16
    assert canary.same_dtype([old, fp32], bf16) == [canary.speed(old)]
    assert math.isnan(canary.machine_change_pct(canary.same_dtype([old], fp32), canary.speed(fp32)))


def test_too_slow_says_the_total_the_budget_and_how_it_knows():
    assert str(TooSlow(7, 20.0, 120, "seen")) == \
        "7 calls (warm-up + min_reps) would take ~140 s here, past max_seconds=120 (seen)"
    assert str(TooSlow(4, 0.3, 1, "seen")) == "4 calls (warm-up + min_reps) would take ~1.2 s here, past max_seconds=1 (seen)"
