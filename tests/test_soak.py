"""The soak workload: a load held and cut into time slices; a card that slows and settles is found (hand-made
timelines and a stand-in card's telemetry), and the workload runs end to end on this CPU."""

import math

import pandas as pd
import pytest

from bench.core.metrics import Repetition, RequestTiming
from bench.scenarios.soak import settle_time, slices_text, time_slices
from bench.telemetry.base import Reading
from tests.helpers import run_bench, single_run_dir


def _held(seconds: int, slow_after: float) -> tuple[list[Repetition], list[dict], dict[str, list[Reading]]]:
    """One repetition a second, 100 decode tokens each: 1 s of decode at 100 tok/s until `slow_after`, then the
    card throttles for power: its clock falls from 1980 to 1500 MHz, its power settles from 700 to 450 W, and the
    same tokens take 1.25 s (80 tok/s). Energy: the power times the decode time."""
    reps, samples, readings = [], [], []
    t = 0.0
    for _ in range(seconds):
        slow = t >= slow_after
        decode = 1.25 if slow else 1.0
        reps.append(Repetition((RequestTiming(t, (t + 0.01, t + 0.01 + decode), 8, first_event_tokens=1),)))
        watts = 450.0 if slow else 700.0
        samples.append({"_decode_tokens": 100, "energy_decode_j": watts * decode})
        for k in range(4):  # four readings a repetition
            readings.append(Reading(t + k * (0.01 + decode) / 4, "gpu0", power_w=watts, sm_clock_mhz=1500.0 if slow
                                    else 1980.0, temp_c=80.0 if slow else 60.0,
                                    throttle=("sw_power_cap",) if slow else ()))
        t += 0.01 + decode
    return reps, samples, {"gpu0": readings}


def test_a_card_that_slows_and_settles_is_found():
    """30 repetitions, slow from 10 s on: six slices; the first ones fast, the last third slow; sustained 80
    tok/s, 80% of the peak, settled at the start of the first all-slow slice; J/token 7 first, 5.625 last."""
    reps, samples, series = _held(30, slow_after=10.0)
    slices = time_slices(reps, samples, series, 6)
    assert len(slices) == 6
    assert slices[0]["tok_s"] == pytest.approx(100.0) and slices[-1]["tok_s"] == pytest.approx(80.0)
    assert slices[0]["power_w"] == 700 and slices[-1]["power_w"] == 450 and slices[-1]["clock_mhz"] == 1500
    assert slices[-1]["throttle"] == ["sw_power_cap"] and slices[0]["throttle"] == []
    assert slices[0]["j_per_token"] == pytest.approx(7.0) and slices[-1]["j_per_token"] == pytest.approx(5.625)
    sustained = 80.0
    settled = settle_time(slices, sustained)
    first_slow = next(s["t"] for s in slices if s["tok_s"] == pytest.approx(80.0))
    assert settled == first_slow and 9 < settled < 12
    assert "sw_power_cap" in slices_text(slices) and slices_text(slices).startswith("0s:100.0tok/s,700W,1980MHz,60C")
    # A load that never settles within 2%: NaN, never a made-up time.
    wobbly = [{"t": float(i), "tok_s": 100.0 if i % 2 else 90.0} for i in range(6)]
    assert math.isnan(settle_time(wobbly, 95.0))


def test_the_soak_workload_holds_its_load_on_this_cpu(tmp_path):
    """tiny at batch 1 held for 6 s in 3 slices: the row names the peak, the sustained figure (at most the peak),
    their ratio, the slices; the answer line says it. Calls of 4 tokens (tens of ms even on a loaded machine)
    leave no 2 s slice empty."""
    proc = run_bench("run", "--workload", "soak", "--quick", "--set", "hold_seconds=6", "--set", "soak_slices=3",
                     "--set", "batch_size=1", "--set", "output_len=4", "--set", "idle_seconds=0",
                     "--set", "canary_seconds=0", "--out", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = pd.read_csv(single_run_dir(tmp_path) / "results.csv").to_dict("records")
    assert row["status"] == "ok", row["detail"]
    assert row["measured_seconds"] >= 6 and row["repetitions"] >= 3
    assert 0 < row["soak_sustained_tok_s"] <= row["soak_peak_tok_s"], (row["detail"], row["soak_slices"])
    assert 0 < row["soak_sustained_ratio"] <= 1
    assert row["soak_slices"].count(";") == 2  # three slices
    assert "sustained" in " ".join(proc.stdout.split()) and "of its peak" in " ".join(proc.stdout.split())


def test_a_stand_in_card_that_throttles_is_found_by_the_soak(monkeypatch, virtual_clock):
    """The simulated engine on a stand-in NVML card (tests/fake_nvml.py), 20 s held on its clock in 10 slices: at
    8 s the card hits its power cap (100 W -> 60 W, 1980 -> 1500 MHz, sw_power_cap) and each step takes 1.25x as
    long. The soak finds it: sustained 80% of the peak, settled at the slice where it slowed, the reason named,
    and energy per token first and last from the card's own counter."""
    from bench.core import clock
    from bench.hardware.devices import resolve_device
    from bench.run.runner import Runner
    from bench.spec.workload import apply_overrides, load_workload
    from bench.telemetry.nvml import NvmlBackend
    from bench.telemetry.sampler import Sampler
    from tests import fake_nvml

    backend = NvmlBackend(fake_nvml)
    sampler = Sampler(backend, hz=50)
    w = apply_overrides(load_workload("soak"), {"engine": ["simulated"], "batch_size": [1], "output_len": [101],
                                                "hold_seconds": 20.0, "soak_slices": 10, "sim_slow_after_s": 8.0,
                                                "warmup": 0, "idle_seconds": 0})
    monkeypatch.setattr(fake_nvml, "THROTTLE_AT", None)
    runner = Runner(w, resolve_device("cpu"), sampler, "test")
    (case,) = runner.scenario.expand()
    sampler.start()
    try:
        runner._ensure_loaded(case, {})  # the engine's clock starts here: the card throttles 8 s later
        monkeypatch.setattr(fake_nvml, "THROTTLE_AT", clock.now() + 8.0)
        row = runner.run_case(case).row
    finally:
        sampler.stop()
        runner._unload()
    assert row["status"] == "ok", row["detail"]
    assert row["soak_sustained_ratio"] == pytest.approx(0.8, abs=0.01)
    assert row["soak_peak_tok_s"] == pytest.approx(1 / 0.011, rel=0.01)  # 11 ms a step at batch 1
    assert 6 <= row["soak_settle_s"] <= 10 and "sw_power_cap" in row["throttled"]
    assert "1500MHz" in row["soak_slices"].split(";")[-1] and "1980MHz" in row["soak_slices"].split(";")[0]
    first, last = row["soak_energy_j_per_token_first"], row["soak_energy_j_per_token_last"]
    # Two cards: 100 + 200 W at 11 ms a token, then 60 + 200 W at 13.75 ms.
    assert first == pytest.approx(300 * 0.011, rel=0.05) and last == pytest.approx(260 * 0.01375, rel=0.05)
