"""A background thread that reads a telemetry backend at a fixed rate and keeps the readings."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict

from bench.core import clock
from bench.core.schema import NAN
from bench.telemetry.base import Backend, Reading, throttling_reasons
from bench.telemetry.energy import (
    MAX_POWER_GAP_S,
    Window,
    energy_over_windows,
    merge_windows,
    power_in_windows,
)


class Sampler:
    """Samples `backend` every 1/hz seconds in a daemon thread.

    The runner also calls `sample_now()` at the edges of each case, so every
    measured window is bracketed by readings and energy can be interpolated.
    """

    def __init__(self, backend: Backend, hz: float = 10.0) -> None:
        self.backend = backend
        self.period = 1.0 / min(hz, backend.max_hz)  # never faster than the backend's tool can answer
        self.readings: list[Reading] = []
        self.case_of: list[str] = []
        self.case = ""
        self._drained = 0
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.backend.devices():
            self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def pause(self, paused: bool) -> None:
        """Stop sampling (telemetry=false cases, to measure the sampler's own overhead)."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    def _loop(self) -> None:
        next_t = time.perf_counter()
        while not self._stop.is_set():
            if not self._paused.is_set():
                self.sample_now()
            next_t += self.period
            delay = next_t - time.perf_counter()
            if delay < 0:  # a slow read: skip ahead rather than burst
                next_t = time.perf_counter()
                delay = 0
            self._stop.wait(delay)

    def sample_now(self, settle: bool = False) -> None:
        """Take one reading of every device now; settle: first wait for a reading at or after now (a window's
        end must be bracketed by a later reading, and a watch-mode tool prints when it prints)."""
        if not self.backend.devices():
            return
        # One read at a time, appended before the next starts: the sampling thread and a window's edge (the
        # runner's thread) would otherwise interleave, and a slower earlier read land after a later one (seen
        # with Ray actors on a busy machine: a node's timeline went backwards).
        with self._read_lock:
            try:
                if settle:
                    self.backend.settle(clock.now())
                readings = self.backend.read()
            except Exception:  # noqa: BLE001 - a failed read is a gap, not a crash of the run
                return
            with self._lock:
                self.readings.extend(readings)
                self.case_of.extend([self.case] * len(readings))

    def drain(self) -> list[tuple[Reading, str]]:
        """Readings not yet handed out, with the case they were taken in (for telemetry.csv)."""
        with self._lock:
            new = list(zip(self.readings[self._drained:], self.case_of[self._drained:]))
            self._drained = len(self.readings)
        return new

    def series(self, t0: float, t1: float) -> dict[str, list[Reading]]:
        """Per-device readings from the last one at or before t0 to the first at or after t1."""
        with self._lock:
            readings = list(self.readings)
        by_dev: dict[str, list[Reading]] = defaultdict(list)
        for r in readings:
            by_dev[r.device].append(r)
        out = {}
        for dev, rs in by_dev.items():
            before = [r for r in rs if r.t <= t0]
            after = [r for r in rs if r.t >= t1]
            inside = [r for r in rs if t0 < r.t < t1]
            out[dev] = before[-1:] + inside + after[:1]
        return out

    def idle_baseline(self, seconds: float) -> dict[str, float]:
        """Mean power per device over `seconds` of doing nothing (empty dict if power is unreadable)."""
        if seconds <= 0 or self.backend.capabilities().get("power_w"):
            return {}
        # The window must lie inside the readings (energy is interpolated, never extrapolated):
        # read, then open the window; close the window, then read.
        self.sample_now()
        t0 = clock.now()
        clock.sleep(seconds)
        t1 = clock.now()
        self.sample_now(settle=True)
        summary = summarise_windows(self.series(t0, t1), [(t0, t1)])
        return {dev: s["power_w_mean"] for dev, s in summary.items() if not math.isnan(s["power_w_mean"])}


def summarise_windows(series: dict[str, list[Reading]], windows: list[Window],
                      max_gap_s: float = MAX_POWER_GAP_S) -> dict[str, dict]:
    """Per device: energy (J) and its method, the same energy from integrated power (energy_power_j),
    mean/max power, max temperature and throttle reasons. max_gap_s: the longest gap between power readings
    that integrated energy bridges (the backend's own, from its sampling period)."""
    windows = merge_windows(windows)
    out: dict[str, dict] = {}
    for dev, rs in series.items():
        ts = [r.t for r in rs]
        energy, method = energy_over_windows(ts, [r.energy_j for r in rs], [r.power_w for r in rs], windows,
                                             max_gap_s=max_gap_s)
        # The same windows by integrating sampled power: a cross-check of the counter (NaN without power).
        by_power, _ = energy_over_windows(ts, [], [r.power_w for r in rs], windows, prefer="power",
                                          max_gap_s=max_gap_s)
        mean, peak = power_in_windows(ts, [r.power_w for r in rs], windows)
        if math.isnan(mean) and not math.isnan(energy):
            duration = sum(b - a for a, b in windows)
            mean = energy / duration if duration > 0 else NAN
        temps = [r.temp_c for r in rs if r.temp_c is not None]
        reasons = sorted({x for r in rs for x in throttling_reasons(r.throttle)})
        out[dev] = {
            "energy_j": energy,
            "method": method,
            "energy_power_j": by_power,
            "power_w_mean": mean,
            "power_w_max": peak,
            "temp_c_max": max(temps) if temps else NAN,
            "throttle": reasons,
        }
    return out
