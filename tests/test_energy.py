"""Counter deltas with wraparound, power integration and window attribution, by hand."""

import math

import pytest

from bench.telemetry.base import Reading
from bench.telemetry.energy import energy_over_windows, merge_windows, power_in_windows
from bench.telemetry.sampler import summarise_windows


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
