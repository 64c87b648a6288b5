"""Counter deltas with wraparound, power integration and window attribution, by hand."""

import math

import pytest

from bench.core.metrics import Repetition, RequestTiming, repetition_metrics, sample_rows
from bench.telemetry.attribution import energy_columns
from bench.telemetry.base import Backend, Reading
from bench.telemetry.energy import energy_over_windows, merge_windows, power_in_windows
from bench.telemetry.sampler import Sampler, summarise_windows


def test_counter_energy_interpolates_window_edges():
    times = [0.0, 1.0, 2.0]
    counter = [0.0, 100.0, 300.0]  # 100 W then 200 W
    assert energy_over_windows(times, counter, [None] * 3, [(0.5, 1.5)]) == (pytest.approx(50 + 100), "counter")
    assert math.isnan(energy_over_windows(times, counter, [None] * 3, [(1.5, 2.5)])[0])  # not bracketed


def test_integrate_power_trapezoid():
    times = [0.0, 1.0, 2.0]
    power = [100.0, 200.0, 200.0]
    # 0..1: mean 150 W -> 150 J; 1..2: 200 J
    assert energy_over_windows(times, [], power, [(0.0, 2.0)]) == (pytest.approx(350.0), "power")
    # 0.5..1.0: power 150 -> 200, 0.5 s -> 87.5 J
    assert energy_over_windows(times, [], power, [(0.5, 1.0)])[0] == pytest.approx(87.5)
    assert math.isnan(energy_over_windows(times, [], power, [(-1.0, 1.0)])[0])
    # Asked for power where a counter exists (the cross-check column): the counter is ignored.
    assert energy_over_windows(times, [0.0, 1.0, 2.0], power, [(0.0, 2.0)], prefer="power") == \
        (pytest.approx(350.0), "power")


def test_counter_preferred_over_power():
    times = [0.0, 1.0]
    energy, method = energy_over_windows(times, [10.0, 60.0], [999.0, 999.0], [(0.0, 1.0)])
    assert (energy, method) == (50.0, "counter")
    energy, method = energy_over_windows(times, [None, None], [100.0, 100.0], [(0.0, 0.5), (0.5, 1.0)])
    assert (energy, method) == (pytest.approx(100.0), "power")
    energy, method = energy_over_windows(times, [None, None], [None, None], [(0.0, 1.0)])
    assert math.isnan(energy) and method == "none"


def test_power_mean_is_time_weighted_and_peak_is_max():
    times = [0.0, 1.0, 2.0, 3.0]
    power = [100.0, 100.0, 300.0, 300.0]
    mean, peak = power_in_windows(times, power, [(0.0, 1.0), (2.0, 3.0)])
    assert mean == pytest.approx(200.0)
    assert peak == 300.0


def test_merge_windows():
    assert merge_windows([(2, 3), (0, 1), (0.5, 1.5)]) == [(0, 1.5), (2, 3)]


def test_prefill_and_decode_windows_attributed_separately_per_card():
    # Two cards; card 0 counter 100 W steady, card 1 200 W steady; prefill 0..1, decode 1..3.
    series = {
        "gpu0": [Reading(t, "gpu0", power_w=100.0, energy_j=100.0 * t) for t in (0.0, 1.0, 2.0, 3.0)],
        "gpu1": [Reading(t, "gpu1", power_w=200.0, energy_j=200.0 * t, temp_c=70 + t,
                         throttle=("gpu_idle", "sw_power_cap")) for t in (0.0, 1.0, 2.0, 3.0)],
    }
    pre = summarise_windows(series, [(0.0, 1.0)])
    dec = summarise_windows(series, [(1.0, 3.0)])
    assert pre["gpu0"]["energy_j"] == pytest.approx(100.0)
    assert dec["gpu0"]["energy_j"] == pytest.approx(200.0)
    assert dec["gpu1"]["energy_j"] == pytest.approx(400.0)
    assert dec["gpu1"]["power_w_mean"] == pytest.approx(200.0)
    assert dec["gpu1"]["temp_c_max"] == 73.0
    assert dec["gpu1"]["throttle"] == ["sw_power_cap"]  # idle is not throttling
    assert dec["gpu0"]["method"] == "counter"


class _SteadyCard(Backend):
    """One card drawing 100 W steadily with a counter, read every 0.1 s from 0 to 10 s."""

    energy_method = "nvml-counter"

    def devices(self):
        return ["gpu0"]

    def capabilities(self):
        return {"energy_j": None, "power_w": None}

    def read(self):
        return []


def test_energy_windows_are_the_requests_own_like_the_throughput_windows():
    """Two requests in one repetition, sent 4 s apart: a prefills 0-1 s and decodes 1-2 s (4 tokens), b
    prefills 5-6 s and decodes 6-7 s. Decode energy is 2 s x 100 W over 8 tokens, not the idle 3 s between
    them, and the sample's power is 100 W over the 4 s the requests ran, not diluted by the gap."""
    sampler = Sampler(_SteadyCard())
    sampler.readings = [Reading(k / 10, "gpu0", power_w=100.0, energy_j=10.0 * k) for k in range(101)]
    sampler.case_of = [""] * len(sampler.readings)
    a = RequestTiming(0.0, (1.0, 1.25, 1.5, 1.75, 2.0), 8, scheduled=0.0)
    b = RequestTiming(5.0, (6.0, 6.25, 6.5, 6.75, 7.0), 8, scheduled=5.0)
    rep = Repetition((a, b))
    samples = sample_rows("r", 0, {"batch_size": 2, "input_len": 8, "output_len": 5}, [rep])
    columns, _ = energy_columns(sampler, [rep], samples, telemetry_on=True, idle_power={})
    assert columns["energy_decode_j"] == pytest.approx(200.0) and columns["energy_prefill_j"] == pytest.approx(200.0)
    assert columns["energy_j_per_token"] == pytest.approx(200.0 / 8)
    assert samples[0]["power_w"] == pytest.approx(100.0)
    assert repetition_metrics(rep)["decode_tok_s"] == pytest.approx(8 / 2.0)  # the same 2 s
