"""Vendors' SMI tools and devices without the hardware: fixtures of their real output formats (sources named in
tests/fixtures/smi/*/SOURCE.md) played back by tests/fake_smi.py on PATH, and stand-in torch plugins for device
detection. What this cannot check: the real tools' timing and the real cards (said in the README)."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.core.plugins import backend_class
from tests import fake_smi
from tests.helpers import run_bench

FAKE = Path(__file__).resolve().parent / "fake_smi.py"
EXPECT = fake_smi.expectations()  # fixture folder -> what its backend must read from it (its expect.json)


def _tool(folder: str) -> str:
    """The command a fixture folder plays: its backend's tool."""
    return backend_class(EXPECT[folder]["backend"]).tool


def _folder_variable(tool: str) -> str:
    """The variable that picks which folder a tool plays, where vendors share a name (Intel's and Kunlunxin's
    xpu-smi): $FAKE_XPU_SMI."""
    return "FAKE_" + tool.upper().replace("-", "_")


def _play(monkeypatch, folder: str) -> None:
    """Make the tool of this folder's backend play this folder."""
    monkeypatch.setenv(_folder_variable(_tool(folder)), folder)


def _default_folders() -> dict[str, str]:
    """Each tool -> the folder it plays unless told: the folder of its own name, else the first by name."""
    tools: dict[str, str] = {}
    for folder in sorted(EXPECT, key=lambda f: (f != _tool(f), f)):
        tools.setdefault(_tool(folder), folder)
    return tools


@pytest.fixture
def smi_path(tmp_path, monkeypatch):
    """A bin directory holding every fixture folder's tool, first on PATH; returns the environment to give a
    subprocess. A tool shared by vendors plays its default folder unless _play() picks another."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, folder in _default_folders().items():
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" --from "{bin_dir}" '
                          f'"${{{_folder_variable(tool)}:-{folder}}}" "$@"\n')
        script.chmod(0o755)
    monkeypatch.setenv("FAKE_SMI_PERIOD", "0.1")
    path = f"{bin_dir}:{__import__('os').environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("FAKE_SMI_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("FAKE_SMI_MODE", raising=False)
    return {"PATH": path, "FAKE_SMI_STATE": str(tmp_path / "state")}


def _collect(backend, enough, timeout: float = 30.0) -> list:
    """A watch backend's readings, read as a sampler would until `enough` of them arrived (a loaded machine
    starts the tool late) or the timeout passed: no assertion on how fast the tool prints."""
    readings: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readings += backend.read()
        if enough(readings):
            break
        time.sleep(0.05)
    return readings


def test_ascend_chips_from_the_watch_mode(smi_path):
    """npu-smi's watch mode left running: one process for the run, a row per chip per period, each reading
    stamped when its line arrived; HBM and the AI Core clock from `info -t usages` once per slow period."""
    from bench.telemetry.ascend import AscendBackend

    backend = AscendBackend()
    try:
        assert backend.devices() == ["npu4-0", "npu5-0"]  # the MCU (no logic id) is not a compute chip
        readings = _collect(backend, lambda rs: len(rs) >= 6 and {r.power_w for r in rs} == {88.4, 92.6})
        assert len(readings) >= 6 and {r.device for r in readings} == {"npu4-0", "npu5-0"}
        assert {r.power_w for r in readings} == {88.4, 92.6}  # both frames, in turn
        times = [r.t for r in readings if r.device == "npu4-0"]
        assert times == sorted(times) and len(set(times)) == len(times)  # each line its own time, never repeated
        assert backend.read() == [] or all(r.t > times[-1] for r in backend.read())  # no stale repeats
        r = next(r for r in readings if r.device == "npu4-0")
        assert r.util in (37, 39) and r.temp_c in (47, 48)
        caps = backend.capabilities()
        assert caps["power_w"] is None and caps["mem_used_gb"] is None and caps["energy_j"] and caps["throttle"]
        assert backend.energy_reason() == "npu-smi-power"
        processes = [backend._proc]
    finally:
        backend.close()
    assert processes[0].poll() is not None  # the watch is stopped with the backend


def _matches(value, allowed: list) -> bool:
    """A reading's field is one of the fixture's values for it (None only where the tool prints N/A)."""
    return value is None and None in allowed or any(v is not None and value == pytest.approx(v) for v in allowed)


def _complete(batch: list, error: str) -> list:
    """The readings of one read() that carry every field: the newest of each card, unless a call failed. A watch
    backend merges the fields of its slow call into a card's newest line only (older lines of a batch that a
    busy machine read late leave them empty, never repeated), and a slow call past its timeout leaves them
    empty with the reason said."""
    if error:
        return []
    return list({r.device: r for r in batch}.values())


@pytest.mark.parametrize("folder", sorted(EXPECT))
def test_each_vendor_tool_reads_what_its_fixtures_say(smi_path, monkeypatch, folder):
    """Every fixture folder through the backend its expect.json names, found as the probe finds it: the cards, each
    field of each card's readings among the values the fixture's frames give (every frame's power seen in turn,
    so nothing stale; N/A empty, never 0), and the fields the backend says it cannot read. A new vendor's tool
    is checked here by its module and its fixtures, with no test edited."""
    expect = EXPECT[folder]
    _play(monkeypatch, folder)
    backend = backend_class(expect["backend"])()
    want = expect["readings"]
    try:
        assert backend.devices() == expect["devices"]
        readings: list = []
        complete: list = []  # readings that must give every field (see _complete)

        def enough() -> bool:
            seen = {(r.device, r.power_w) for r in readings}
            return (all((card, p) in seen for card, fields in want.items() for p in fields.get("power_w", []))
                    and {r.device for r in complete} == set(want))

        deadline = time.monotonic() + 30.0  # a loaded machine starts the tool late: no assertion on its speed
        while not enough() and time.monotonic() < deadline:
            batch = backend.read()
            readings += batch
            complete += _complete(batch, backend.last_error)
            time.sleep(0.05)
        assert enough(), (sorted({(r.device, r.power_w) for r in readings}, key=str), backend.last_error)
        for r in readings:  # whatever a reading gives is the fixture's (an N/A is never read as 0)
            for field, allowed in want[r.device].items():
                value = getattr(r, field)
                assert value is None or _matches(value, allowed), (r.device, field, value, allowed)
        for r in complete:  # and a complete one gives every field the tool prints
            for field, allowed in want[r.device].items():
                assert _matches(getattr(r, field), allowed), (r.device, field, getattr(r, field), allowed)
        caps = backend.capabilities()
        assert [f for f, why in caps.items() if why] == expect["not_read"]
        assert all(caps[f] is None for card in want.values() for f in card)  # what it reads, it says it reads
    finally:
        backend.close()


def test_one_tool_name_two_vendors_and_neither_starts_on_the_others(smi_path, monkeypatch):
    """Intel's xpu-smi is not Kunlunxin's: each backend refuses the other's output, saying which tool it found."""
    from bench.telemetry.intel_xpu import IntelXpuBackend
    from bench.telemetry.kunlunxin import KunlunxinBackend

    _play(monkeypatch, "xpu-smi-intel")
    with pytest.raises(Exception, match="not Kunlunxin.s xpu-smi"):
        KunlunxinBackend()
    _play(monkeypatch, "xpu-smi-kunlunxin")
    with pytest.raises(Exception, match="not Intel.s xpu-smi"):
        IntelXpuBackend()


def _values(folder: str) -> set:
    """Every number the folder's fixtures give its backend, on any card."""
    return {v for card in EXPECT[folder]["readings"].values() for vs in card.values() for v in vs if v is not None}


PER_SAMPLE = [f for f in sorted(EXPECT) if not fake_smi.streams(f)]  # tools run once per sample


@pytest.mark.parametrize("mode", ["na", "missing", "reorder", "bytes", "exit1", "empty", "hang"])
def test_bad_tool_output_is_empty_fields_with_a_reason(smi_path, monkeypatch, mode):
    """Each kind of bad output from each tool run per sample: the backend starts and reads nothing wrong, or
    does not start and says why; never a crash, a hang past the timeout or a made-up number."""
    for folder in PER_SAMPLE:
        _play(monkeypatch, folder)
        cls = backend_class(EXPECT[folder]["backend"])
        # Started on good output, with time for the fake tool's Python to start on a busy machine (1 s was
        # missed once in a full run on 2 cores); the bad output then gets 1 s.
        monkeypatch.setattr(cls, "timeout_s", 5.0)
        backend = cls()
        monkeypatch.setattr(cls, "timeout_s", 1.0)
        monkeypatch.setenv("FAKE_SMI_MODE", mode)
        t0 = time.monotonic()
        readings = backend.read()
        assert time.monotonic() - t0 < 10
        fields = [v for r in readings for v in (r.power_w, r.util, r.temp_c)]
        assert all(v is None or v in _values(folder) for v in fields), (cls.name, mode, fields)
        mems = [r.mem_used_gb for r in readings]
        assert all(m is None or 0 < m < 200 for m in mems), (cls.name, mode, mems)
        if mode in ("exit1", "hang", "empty", "na"):
            assert all(v is None for v in fields), (cls.name, mode, fields)
        if mode in ("exit1", "hang"):
            assert backend.last_error and ("exited 1" in backend.last_error or "did not answer" in backend.last_error)
        if mode in ("exit1", "hang", "empty"):
            with pytest.raises(Exception) as started:  # a tool that never answers well does not start
                cls()
            assert str(started.value)
        if mode == "bytes":  # garbage after the first bytes: no card, or only the cards it did list right
            try:
                assert set(cls().devices()) <= set(backend.devices())
            except Exception as exc:  # noqa: BLE001 - not starting is the other right answer
                assert str(exc)
        monkeypatch.delenv("FAKE_SMI_MODE")


@pytest.mark.parametrize("mode", ["na", "reorder", "bytes", "exit1", "hang", "die", "empty"])
def test_a_watch_that_misbehaves_gives_no_wrong_number_and_is_stopped(smi_path, monkeypatch, mode):
    """npu-smi's watch (the other tool commands answering well): N/A, garbage bytes, a watch that exits at once,
    one that prints nothing, one that dies mid-run. Readings are empty or right, the reason is kept, a dead
    watch is restarted at most once per 10 s, and close() leaves no process behind."""
    from bench.telemetry.ascend import AscendBackend

    monkeypatch.setattr(AscendBackend, "timeout_s", 2.0)  # its one-shot commands answer on a busy machine
    monkeypatch.setattr(AscendBackend, "period_s", 0.25)
    monkeypatch.setattr(AscendBackend, "watch_args", lambda self: ["info", "watch", "-s", "ptaicmb", "-d", "1"])
    monkeypatch.setenv("FAKE_SMI_MODE", f"watch-{mode}")
    backend = AscendBackend()
    try:
        readings = _collect(backend, lambda rs: mode == "reorder" and any(r.power_w for r in rs),
                            timeout=10.0 if mode == "reorder" else 1.0)
        assert all(r.power_w is None or r.power_w in (88.4, 92.6) for r in readings), readings
        assert all(r.temp_c is None or r.temp_c in (45, 46, 47, 48) for r in readings)
        if mode in ("exit1", "die"):
            time.sleep(0.3)
            assert backend.read() == [] and "exited" in backend.last_error
        if mode in ("exit1", "hang", "empty", "bytes"):
            assert all(r.power_w is None for r in readings)
            assert backend.capabilities()["power_w"]  # what it could not read, with the reason
        if mode == "na":
            assert all(r.power_w is None and r.temp_c is None for r in readings)
        if mode == "reorder":  # rows read by the header's names
            assert any(r.power_w in (88.4, 92.6) for r in readings)
        proc = backend._proc
    finally:
        backend.close()
    assert proc is None or proc.poll() is not None


@pytest.mark.parametrize("fails", [1, 99])
def test_a_slow_call_that_fails_is_said_while_the_watch_runs(smi_path, monkeypatch, fails):
    """npu-smi's watch answers but its once-per-slow-period call (`info -t usages`, HBM and clock) misses its
    timeout, as a busy machine can make it: a miss at start is asked once more before HBM is called unsupported
    for the run; a tool that keeps missing leaves HBM empty with its reason, said while the watch lines arrive."""
    from bench.telemetry.ascend import AscendBackend
    from bench.telemetry.smi import SmiError

    calls = []
    answer = AscendBackend.slow_sample

    def slow_sample(self):
        calls.append(1)
        if len(calls) <= fails:
            raise SmiError("npu-smi info -t usages -i 4 -c 0 did not answer within 3 s")
        return answer(self)

    monkeypatch.setattr(AscendBackend, "slow_sample", slow_sample)
    backend = AscendBackend()
    try:
        caps, at_start = backend.capabilities(), len(calls)
        readings = _collect(backend, lambda rs: len(rs) >= 4)
        assert readings and all(r.power_w in (88.4, 92.6) for r in readings)  # the watch's own fields stand
        # A field the tool never prints is not blamed on the timeout.
        assert caps["energy_j"] == caps["throttle"] == "npu-smi does not report it"
        if fails == 1:
            assert at_start == 2 and caps["mem_used_gb"] is None and backend.last_error == ""
            assert any(r.mem_used_gb == pytest.approx(17.179869184) for r in readings)
        else:
            assert caps["mem_used_gb"] == "npu-smi info -t usages -i 4 -c 0 did not answer within 3 s"
            assert "did not answer" in backend.last_error
            assert all(r.mem_used_gb is None for r in readings)
    finally:
        backend.close()


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
    from bench.hardware import devices

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
    from bench.hardware.devices import vendor_of

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


@pytest.fixture
def fake_dcmi(tmp_path) -> Path:
    """The stand-in libdcmi.so, built here with the system's C compiler (skipped where there is none)."""
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in DCMI library")
    lib = tmp_path / "libdcmi.so"
    source = Path(__file__).resolve().parent / "fixtures" / "dcmi" / "fake_dcmi.c"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    return lib


def test_ascend_through_the_dcmi_library(fake_dcmi, monkeypatch):
    """In-process DCMI: power in 0.1 W becomes W, HBM in MB, a chip that refuses power has it empty, and the
    probe takes the library before npu-smi; without the library it says where it looked."""
    from bench.telemetry.dcmi import DcmiBackend

    backend = DcmiBackend(library=str(fake_dcmi))
    assert backend.devices() == ["npu0-0", "npu1-0"]
    a, b = backend.read()
    assert a.power_w == pytest.approx(123.4) and a.temp_c == 51 and a.util == 42
    assert a.mem_used_gb == pytest.approx(16384 * (1 << 20) / 1e9)
    assert b.power_w is None and b.temp_c == 50  # refused: empty, never 0
    assert backend.capabilities()["power_w"] is None and backend.capabilities()["energy_j"]
    assert backend.energy_reason() == "dcmi-power"
    monkeypatch.setenv("CLAIMBENCH_DCMI_LIBRARY", str(fake_dcmi.parent / "missing.so"))
    with pytest.raises(FileNotFoundError, match="CLAIMBENCH_DCMI_LIBRARY"):
        DcmiBackend()
    from bench.telemetry.probe import probe_backend

    monkeypatch.setenv("CLAIMBENCH_DCMI_LIBRARY", str(fake_dcmi))
    chosen, tried = probe_backend("npu")
    assert chosen.name == "dcmi" and chosen.devices() == ["npu0-0", "npu1-0"]


def test_moore_threads_through_its_nvml_compatible_binding(monkeypatch):
    """mthreads-ml-py's pymtml speaks pynvml's API: the NVML code reads Moore Threads' cards through it (here
    the fake NVML stands in for the binding, which needs the MUSA driver)."""
    from bench.telemetry.nvml import MtmlBackend
    from tests import fake_nvml

    monkeypatch.setitem(sys.modules, "pymtml", fake_nvml)
    backend = MtmlBackend()
    assert backend.devices()[0] == "musa0" and backend.read()[0].device == "musa0"
    assert backend.energy_method in ("mtml-counter", "mtml-power")
    backend.close()
    monkeypatch.setitem(sys.modules, "pymtml", None)  # not installed: the probe moves on
    with pytest.raises(ImportError):
        MtmlBackend()


def test_bench_env_lists_every_vendors_cards_and_what_is_read(smi_path, tmp_path):
    """`bench env` on a machine with every vendor's tool (played back): each card, which fields its tool gives,
    and what to install for torch to use it; no tool process is left running after."""
    import subprocess

    proc = run_bench("env", "--json", env={**smi_path, "FAKE_SMI_PERIOD": "0.1"})
    assert proc.returncode == 0, proc.stderr
    seen = {s["backend"]: s for s in json.loads(proc.stdout)["accelerators_seen"]}
    played = set(_default_folders().values())
    for folder, expect in EXPECT.items():
        backend = expect["backend"]
        if folder not in played:  # a tool of a shared name that played another vendor's output: not seen
            assert backend not in seen, backend  # (Kunlunxin's xpu-smi is not mistaken for Intel's)
            continue
        assert seen[backend]["devices"] == expect["devices"], backend
        assert set(seen[backend]["not_readable"]) == set(expect["not_read"]) and seen[backend]["readable"], backend
        assert not seen[backend]["torch_usable"] and seen[backend]["install"], backend
    assert "xpu-smi-kunlunxin" not in seen and "xpu-smi" in seen
    text = run_bench("env", env=smi_path).stdout
    assert "cnmon sees mlu0, mlu1; torch cannot use them yet" in " ".join(text.split())
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "bin")], capture_output=True, text=True).stdout.split()
    assert not left, f"tool processes left running: {left}"


@pytest.mark.parametrize("tool", ["xpu-smi", "cnmon"])
def test_end_to_end_with_a_dump_mode_and_a_per_sample_tool(smi_path, tmp_path, tool):
    """A real run (the tiny model on the CPU, the cards' tool named with CLAIMBENCH_TELEMETRY): Intel's dump mode
    left running and Cambricon's tool run per sample both give each card's power in the row and energy
    integrated over the measured windows, with the method named."""
    env = {**smi_path, "CLAIMBENCH_TELEMETRY": tool, "FAKE_SMI_PERIOD": "0.1"}
    proc = run_bench("run", "--out", str(tmp_path / "out"), "--set", "min_seconds=2.5", "--set", "idle_seconds=0",
                     "--set", "output_len=16", "--set", "canary_seconds=0", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (csv,) = (tmp_path / "out").glob("*/results.csv")
    row = pd.read_csv(csv).iloc[0]
    low, high, cards = {"xpu-smi": (290.0, 320.1, ("xpu0", "xpu1")), "cnmon": (140, 160, ("mlu0", "mlu1"))}[tool]
    assert low <= row["power_w_mean"] <= high and row["energy_source"] == f"{tool}-power", row["power_w_mean"]
    assert all(card in row["per_card"] for card in cards) and row["energy_j_per_token"] > 0


def test_the_articles_cards_have_datasheet_rows_and_unknown_figures_stay_empty(tmp_path):
    """A published figure is the card's roofline, with its source; a figure the vendor has not published is
    empty and says so, never a guess (so MBU is empty with the reason rather than against a made-up bound)."""
    from bench.hardware.ceilings import latest_ceiling
    from bench.hardware.roofline import datasheet_peak

    s4000 = latest_ceiling(tmp_path, "MTT S4000")
    assert s4000.bandwidth == 768e9 and s4000.flops == 100e12 and s4000.bandwidth_physical
    assert "Moore Threads" in s4000.source
    assert datasheet_peak("MLU370-X8").bandwidth == 614.4e9 and datasheet_peak("Atlas 300I Duo").bandwidth == 408e9
    ascend = latest_ceiling(tmp_path, "Ascend910B3")
    assert math.isnan(ascend.bandwidth) and not ascend.bandwidth_physical and "no bandwidth figure" in ascend.source
    for name in ("Iluvatar BI-V150", "Kunlunxin P800", "K100_AI", "Enflame S60", "AX650N"):
        peak = datasheet_peak(name)
        assert peak is not None and math.isnan(peak.bandwidth) and peak.source, name
    for name, bandwidth in (("NVIDIA A800 80GB PCIe", 1.935e12), ("NVIDIA L20", 0.864e12),
                            ("NVIDIA GeForce RTX 4090", 1.008e12)):
        assert datasheet_peak(name).bandwidth == bandwidth


def test_memory_through_torch_accelerator_where_the_plugin_module_has_none(monkeypatch):
    """A plugin whose module gives no memory calls (torch.gcu here): peak and free memory come from
    torch.accelerator (torch >= 2.9), which the plugin's device type registers with."""
    from bench.hardware import devices

    calls = []
    monkeypatch.setattr(torch, "gcu", types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 1),
                        raising=False)
    kind = types.SimpleNamespace(type="gcu")
    monkeypatch.setattr(torch, "accelerator", types.SimpleNamespace(
        is_available=lambda: True, current_accelerator=lambda: kind,
        max_memory_allocated=lambda d=None: 2.0e9, reset_peak_memory_stats=lambda d=None: calls.append("reset"),
        get_memory_info=lambda d=None: (3, 48 << 30), memory_reserved=lambda d=None: 4,
        memory_allocated=lambda d=None: 1.5e9, empty_cache=lambda: calls.append("empty")), raising=False)
    dev = devices.Device(types.SimpleNamespace(type="gcu"), "Enflame S60", 48 << 30)
    devices.reset_peak_memory(dev)
    assert devices.peak_memory_bytes(dev) == 2.0e9 and devices.free_memory_bytes(dev) == 3
    assert devices.usable_memory_bytes(dev) == 7.0 and devices.resident_bytes(dev) == 1.5e9
    devices.empty_cache(dev)
    assert calls == ["reset", "empty"] and dev.vendor == "enflame"
    other = devices.Device(types.SimpleNamespace(type="mlu"), "MLU370", 0)  # not the accelerator torch reports
    assert devices.peak_memory_bytes(other) is None


def _started_from(bin_dir) -> list:
    """Live processes whose command line names this test's bin directory: its fake tools and their helpers."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and str(bin_dir) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
    return found


def _gone(bin_dir, within: float = 10.0) -> list:
    deadline = time.monotonic() + within
    while (left := _started_from(bin_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_hanging_tool_is_stopped_with_every_process_it_started(smi_path, monkeypatch, tmp_path):
    """A tool that starts a helper and hangs: a per-sample read stops at its bound and the helper goes with the
    tool; a watch that does the same leaves nothing behind after close()."""
    from bench.telemetry.ascend import AscendBackend
    from bench.telemetry.moorethreads import MooreThreadsBackend

    monkeypatch.setattr(MooreThreadsBackend, "timeout_s", 1.0)
    backend = MooreThreadsBackend()
    monkeypatch.setenv("FAKE_SMI_MODE", "hang-child")
    t0 = time.monotonic()
    assert all(r.power_w is None for r in backend.read())
    assert time.monotonic() - t0 < 10 and "did not answer" in backend.last_error
    assert not _gone(tmp_path / "bin"), "a helper of the timed-out tool is still running"
    backend.close()

    monkeypatch.setattr(AscendBackend, "timeout_s", 2.0)  # its one-shot commands answer on a busy machine
    monkeypatch.setattr(AscendBackend, "period_s", 0.25)
    monkeypatch.setattr(AscendBackend, "watch_args", lambda self: ["info", "watch", "-s", "ptaicmb", "-d", "1"])
    monkeypatch.setenv("FAKE_SMI_MODE", "watch-hang-child")
    watch = AscendBackend()
    time.sleep(0.5)
    assert _started_from(tmp_path / "bin")  # the watch and its helper run
    watch.close()
    assert not _gone(tmp_path / "bin"), "the watch's helper outlived close()"


@pytest.mark.parametrize("mode", ["exit1", "hang"])
def test_bench_env_says_when_a_vendors_tool_is_installed_but_fails(smi_path, tmp_path, mode):
    """A tool that exits with an error ("device not found") or hangs is a broken card, not no card: bench env
    says so, with the tool's reason, and leaves no tool process behind."""
    proc = run_bench("env", "--json", env={**smi_path, "FAKE_SMI_MODE": mode}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    seen = {s["backend"]: s for s in json.loads(proc.stdout)["accelerators_seen"]}
    assert "npu-smi" in seen and seen["npu-smi"]["devices"] == [], seen.keys()
    reason = seen["npu-smi"]["error"]
    assert ("exited 1: npu-smi: device not found" in reason) if mode == "exit1" else ("did not answer" in reason)
    if mode == "exit1":
        text = " ".join(run_bench("env", env={**smi_path, "FAKE_SMI_MODE": mode}).stdout.split())
        assert "npu-smi is installed but fails, so its cards (if any) are not seen" in text
    assert not _gone(tmp_path / "bin")
