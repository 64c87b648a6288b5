"""Vendors' SMI tools and devices without the hardware: fixtures of their real output formats (sources named in
tests/fixtures/smi/*/SOURCE.md) played back by tests/fake_smi.py on PATH, and stand-in torch plugins for device
detection. What this cannot check: the real tools' timing and the real cards (said in the README)."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import run_bench

FAKE = Path(__file__).resolve().parent / "fake_smi.py"
TOOLS = ("npu-smi", "mthreads-gmi", "hy-smi")


@pytest.fixture
def smi_path(tmp_path, monkeypatch):
    """A bin directory holding the fake tools, first on PATH; returns the environment to give a subprocess."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" {tool} "$@"\n')
        script.chmod(0o755)
    path = f"{bin_dir}:{__import__('os').environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("FAKE_SMI_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("FAKE_SMI_MODE", raising=False)
    return {"PATH": path, "FAKE_SMI_STATE": str(tmp_path / "state")}


def test_ascend_chips_and_their_readings(smi_path):
    from bench.telemetry.ascend import AscendBackend

    backend = AscendBackend()
    assert backend.devices() == ["npu4-0", "npu5-0"]  # the MCU (no logic id) is not a compute chip
    first, second = backend.read(), backend.read()
    # Played back over time (the probe at start read one frame): the two reads see the two frames.
    assert {first[0].power_w, second[0].power_w} == {88.4, 92.6} and first[1].power_w == first[0].power_w
    r = first[0]
    assert r.util == 37 and r.temp_c == 47 and r.sm_clock_mhz == 1800
    assert r.mem_used_gb == pytest.approx(65536 * 0.25 * (1 << 20) / 1e9)
    caps = backend.capabilities()
    assert caps["power_w"] is None and caps["energy_j"] and caps["throttle"]  # no counter: said, not 0
    assert backend.energy_reason() == "npu-smi-power"


def test_moore_threads_and_hygon_in_one_call(smi_path):
    from bench.telemetry.hygon import HygonBackend
    from bench.telemetry.moorethreads import MooreThreadsBackend

    mt = MooreThreadsBackend()
    assert mt.devices() == ["musa0", "musa1"]
    a, b = mt.read()
    assert a.power_w == 187.5 and a.util == 63 and a.temp_c == 51 and a.sm_clock_mhz == 1750
    assert a.mem_used_gb == pytest.approx(10240 * (1 << 20) / 1e9)
    assert b.power_w is None and b.sm_clock_mhz is None  # "N/A" is empty, never 0
    dcu = HygonBackend()
    (r,) = dcu.read()
    assert dcu.devices() == ["dcu0"] and r.power_w == 212.0 and r.util == 78 and r.temp_c == 57.0
    assert r.mem_used_gb == pytest.approx(28.168106803)


@pytest.mark.parametrize("mode", ["na", "missing", "reorder", "bytes", "exit1", "empty", "hang"])
def test_bad_tool_output_is_empty_fields_with_a_reason(smi_path, monkeypatch, mode):
    """Each kind of bad output: the backend starts and reads nothing wrong, or does not start and says why;
    never a crash, a hang past the timeout or a made-up number."""
    from bench.telemetry import ascend, moorethreads

    for cls in (ascend.AscendBackend, moorethreads.MooreThreadsBackend):
        monkeypatch.setattr(cls, "timeout_s", 1.0)
        backend = cls()  # started on good output
        monkeypatch.setenv("FAKE_SMI_MODE", mode)
        t0 = time.monotonic()
        readings = backend.read()
        assert time.monotonic() - t0 < 10
        fields = [(r.power_w, r.util, r.temp_c, r.mem_used_gb) for r in readings]
        if mode == "reorder" and cls is ascend.AscendBackend:  # lines read by name: order changes nothing
            assert readings[0].power_w is not None
        elif mode != "missing" or cls is moorethreads.MooreThreadsBackend:
            assert all(v is None or v in (88.4, 92.6, 37, 47, 187.5, 63, 51) or isinstance(v, float)
                       for f in fields for v in f)
        if mode in ("exit1", "hang", "empty", "na"):
            assert all(v is None for f in fields for v in f), (mode, fields)
        if mode == "bytes":  # what survives the garbage is read right, the rest is empty
            assert all(v in (None, 88.4, 92.6, 37, 47, 1800, 187.5, 63, 51) for f in fields for v in f), fields
        if mode in ("exit1", "hang"):
            assert backend.last_error and ("exited 1" in backend.last_error or "did not answer" in backend.last_error)
        monkeypatch.delenv("FAKE_SMI_MODE")
        monkeypatch.setenv("FAKE_SMI_MODE", mode)
        if mode in ("exit1", "hang", "empty", "bytes"):
            with pytest.raises(Exception) as started:  # a tool that never answers well does not start
                cls()
            assert str(started.value)
        monkeypatch.delenv("FAKE_SMI_MODE")


def test_a_tool_that_is_not_installed_says_what_to_install(monkeypatch, tmp_path):
    from bench.telemetry.ascend import AscendBackend

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="npu-smi not on PATH.*CANN"):
        AscendBackend()


def test_integrated_power_needs_readings_close_together():
    """No counter: energy integrates power, and only where no gap between readings exceeds the bound."""
    from bench.telemetry.energy import MAX_POWER_GAP_S, energy_over_windows

    times = [0.0, 0.5, 1.0, 1.5, 2.0]
    joules, method = energy_over_windows(times, [None] * 5, [100.0] * 5, [(0.25, 1.75)])
    assert method == "power" and joules == pytest.approx(150.0)
    sparse = [0.0, 0.1, 0.1 + MAX_POWER_GAP_S + 0.5, 5.0]
    assert energy_over_windows(sparse, [None] * 4, [100.0] * 4, [(0.05, 4.0)])[1] == "gap"


def test_end_to_end_on_a_stand_in_npu_server(smi_path, tmp_path):
    """Telemetry from the played-back npu-smi through a real run (the tiny model on the CPU, the card's tool
    named with CLAIMBENCH_TELEMETRY, as for a card torch cannot use yet): per-chip power in the row, energy
    integrated with its method named, and `bench env` listing the chips and what is read."""
    env = {**smi_path, "CLAIMBENCH_TELEMETRY": "npu-smi"}
    proc = run_bench("run", "--out", str(tmp_path / "out"), "--set", "min_seconds=3", "--set", "idle_seconds=0",
                     "--set", "output_len=16", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (csv,) = (tmp_path / "out").glob("*/results.csv")
    row = pd.read_csv(csv).iloc[0]
    assert 88.4 <= row["power_w_mean"] <= 92.6 and row["energy_source"] == "npu-smi-power"
    assert "npu4-0" in row["per_card"] and "npu5-0" in row["per_card"] and row["energy_j_per_token"] > 0
    tel = pd.read_csv(csv.parent / "telemetry.csv")
    assert set(tel["device"]) == {"npu4-0", "npu5-0"}
    shown = run_bench("env", "--json", env=smi_path)
    seen = json.loads(shown.stdout)["accelerators_seen"]
    npu = next(s for s in seen if s["backend"] == "npu-smi")
    assert npu["devices"] == ["npu4-0", "npu5-0"] and not npu["torch_usable"] and "CANN" in npu["install"]
    assert "power_w" in npu["readable"] and "energy_j" in npu["not_readable"]
    text = run_bench("env", env=smi_path).stdout
    assert "npu-smi sees npu4-0, npu5-0; torch cannot use them yet" in text


def test_devices_through_a_stand_in_torch_plugin(monkeypatch):
    """A vendor plugin registers its device type with torch: `--device npu:1` and `auto` find it, and
    synchronisation and memory go through its module."""
    from bench import devices

    calls = []
    fake = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 2,
        get_device_properties=lambda i: types.SimpleNamespace(name="Ascend910B3", total_memory=64 << 30),
        synchronize=lambda d=None: calls.append(("sync", str(d))),
        max_memory_allocated=lambda d=None: 123.0, reset_peak_memory_stats=lambda d=None: calls.append("reset"),
        mem_get_info=lambda d=None: (10, 64 << 30), memory_reserved=lambda d=None: 5,
        memory_allocated=lambda d=None: 7, empty_cache=lambda: calls.append("empty"))
    monkeypatch.setattr(torch, "npu", fake, raising=False)

    class StandInDevice:  # torch.device("npu") exists only once the real plugin has registered the type
        def __init__(self, kind: str, index: int | None = None) -> None:
            self.type, self.index = kind.split(":")[0], index

        def __str__(self) -> str:
            return self.type if self.index is None else f"{self.type}:{self.index}"

    monkeypatch.setattr(torch, "device", StandInDevice)
    monkeypatch.setattr(devices, "_load_plugin", lambda kind: None)
    monkeypatch.setattr(torch, "accelerator", types.SimpleNamespace(
        is_available=lambda: True, current_accelerator=lambda: StandInDevice("npu")), raising=False)
    dev = devices.resolve_device("npu:1")
    assert str(dev) == "npu:1" and dev.name == "Ascend910B3" and dev.vendor == "huawei"
    assert dev.total_memory_bytes == 64 << 30
    devices.synchronize(dev)
    devices.reset_peak_memory(dev)
    assert devices.peak_memory_bytes(dev) == 123.0 and devices.usable_memory_bytes(dev) == 15.0
    assert calls[:2] == [("sync", "npu:1"), "reset"]
    assert devices.auto_device() == "npu"
    with pytest.raises(Exception, match="does not exist"):
        devices.resolve_device("npu:2")


@pytest.mark.parametrize(("name", "vendor"), [("Iluvatar BI-V150", "iluvatar"), ("MetaX C500", "metax"),
                                              ("NVIDIA H200", "nvidia"), ("Hygon DCU K100_AI", "hygon"),
                                              ("Kunlunxin P800", "kunlunxin")])
def test_cards_that_present_as_cuda_are_told_apart(name, vendor):
    from bench.devices import vendor_of

    assert vendor_of("cuda", name) == vendor


def test_an_nvml_compatible_library_is_loaded_in_place_of_nvml(monkeypatch, tmp_path):
    """Iluvatar's libixml.so speaks NVML's C API: the NVML code reads it once pynvml holds that library."""
    import ctypes

    from bench.telemetry import nvml as nvml_mod
    from tests import fake_nvml

    with pytest.raises(FileNotFoundError, match="CLAIMBENCH_NVML_LIBRARY"):
        nvml_mod.NvmlCompatBackend(fake_nvml, library=str(tmp_path / "libixml.so"))
    sentinel = object()
    monkeypatch.setattr(ctypes, "CDLL", lambda path: sentinel)
    backend = nvml_mod.NvmlCompatBackend(fake_nvml, library="/opt/corex/lib64/libixml.so")
    assert fake_nvml.nvmlLib is sentinel and backend.library == "/opt/corex/lib64/libixml.so"
    assert backend.energy_method in ("nvml-compat-counter", "nvml-compat-power")
    backend.close()
