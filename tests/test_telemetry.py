"""Telemetry backends: NVML against a fake module (CPU CI) and the real one (-m gpu), RAPL against a fake sysfs."""

import sys
import time

import pytest

from bench.hardware.devices import resolve_device
from bench.spec.workload import apply_overrides, expand, load_workload
from bench.telemetry.base import FIELDS
from bench.telemetry.cpu import CpuBackend
from bench.telemetry.nvml import NvmlBackend, decode_clock_event_reasons, throttling_reasons
from bench.telemetry.probe import probe_backend
from bench.telemetry.sampler import Sampler
from tests import fake_nvml


def test_decode_clock_event_reasons():
    assert decode_clock_event_reasons(0) == ()
    assert decode_clock_event_reasons(0x1 | 0x4 | 0x40) == ("gpu_idle", "sw_power_cap", "hw_thermal_slowdown")
    assert decode_clock_event_reasons(0x1000) == ("unknown_0x1000",)
    assert throttling_reasons(("gpu_idle", "sw_power_cap")) == ("sw_power_cap",)


def test_nvml_backend_reads_every_card_and_says_what_it_cannot():
    backend = NvmlBackend(fake_nvml)
    assert backend.devices() == ["gpu0", "gpu1"]
    caps = backend.capabilities()
    assert "gpu1" in caps["energy_j"] and "Not Supported" in caps["energy_j"]
    assert caps["power_w"] is None and caps["temp_c"] is None
    assert backend.energy_method == "nvml-power"  # one card lacks the counter
    r0, r1 = backend.read()
    assert r0.power_w == 100.0 and r1.power_w == 200.0
    assert r0.energy_j is not None and r1.energy_j is None  # unsupported is None, never 0
    assert r0.mem_used_gb == pytest.approx(10.0)
    assert r0.throttle == ("gpu_idle", "sw_power_cap")
    fp = backend.fingerprint()
    assert fp[0]["uuid"] == "GPU-fake-0" and fp[1]["uuid"] == "GPU-fake-1"
    assert fp[0]["power_limit_w"] == 700.0 and fp[0]["pcie_gen"] == 5 and fp[0]["cuda_driver"] == "13.0"
    assert fp[0]["mig_mode"] is None
    ecc = backend.error_counts()
    assert ecc["gpu0"]["ecc_corrected_volatile"] == 0 and ecc["gpu1"]["ecc_corrected_volatile"] is None
    backend.close()


def test_nvml_energy_attribution_through_the_runner(monkeypatch, virtual_clock):
    """The runner's energy path with NVML-shaped telemetry on the simulated engine: known watts and a
    deterministic timeline give exact joules, whatever else the machine is doing."""
    from bench.core import clock
    from bench.engines.simulated import step_s
    from bench.run.runner import Runner

    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetTotalEnergyConsumption",  # both cards with a counter
                        lambda h: int(fake_nvml.WATTS[h] * (clock.now() - fake_nvml.T0) * 1000))
    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetFieldValues", lambda h, ids: (_ for _ in ()).throw(
        fake_nvml.NVMLError_NotSupported()))
    backend = NvmlBackend(fake_nvml)
    assert backend.energy_method == "nvml-counter"
    sampler = Sampler(backend, hz=50)
    sampler.start()
    w = apply_overrides(load_workload("quick"), {"batch_size": [2], "min_reps": 3, "min_seconds": 0,
                                                 "engine": ["simulated"], "output_len": [33]})
    runner = Runner(w, resolve_device("cpu"), sampler, "test")
    (result,) = list(runner.run(expand(w)))
    sampler.stop()
    row = result.row
    assert row["status"] == "ok", row["detail"]
    assert row["energy_source"] == "nvml-counter"
    # Two cards at 100 W + 200 W: 300 W over 3 repetitions of 32 decode steps of 12 ms each.
    decode_seconds = 3 * 32 * step_s(2)
    assert row["energy_decode_j"] == pytest.approx(300 * decode_seconds, abs=0.01)
    assert row["energy_j_per_token"] == pytest.approx(300 * decode_seconds / (3 * 2 * 32), abs=1e-4)
    assert row["decode_tok_s"] == pytest.approx(2 / step_s(2))
    assert row["tok_s_per_w"] == pytest.approx(row["decode_tok_s"] / 300, rel=1e-3)
    assert row["power_w_mean"] == pytest.approx(150.0, rel=1e-3)  # mean per card
    assert row["power_w_max"] == pytest.approx(200.0)
    assert row["throttled"] == "sw_power_cap"
    assert {d for r, _ in result.telemetry for d in [r.device]} == {"gpu0", "gpu1"}
    # Per repetition, for the regression gate: J/token and mean power per card.
    for sample in result.samples:
        assert sample["energy_j_per_token"] == pytest.approx(300 * 32 * step_s(2) / (2 * 32), abs=1e-4)
        assert sample["power_w"] == pytest.approx(150.0, rel=1e-3)


def test_every_row_records_the_power_limit_in_force_and_a_cap_says_so(monkeypatch, virtual_clock):
    """The limit read back after each case: the default 700 W unremarked; a card capped at 450 W gives 450 and a
    detail naming the cap beside the default (a capped card's figures are not the card's)."""
    from bench.run.runner import Runner

    backend = NvmlBackend(fake_nvml)
    sampler = Sampler(backend, hz=50)
    sampler.start()
    w = apply_overrides(load_workload("quick"), {"batch_size": [1, 2], "min_reps": 2, "min_seconds": 0,
                                                 "engine": ["simulated"], "output_len": [9]})
    rows = []
    try:
        for result in Runner(w, resolve_device("cpu"), sampler, "test").run(expand(w)):
            rows.append(result.row)
            monkeypatch.setitem(fake_nvml.LIMITS, 0, 450000)  # the second case on a capped card
    finally:
        sampler.stop()
    assert rows[0]["power_limit_w"] == 700 and "power limit not the default" not in rows[0]["detail"]
    assert rows[1]["power_limit_w"] == 450
    assert "power limit not the default: gpu0 450 W (default 700 W)" in rows[1]["detail"]


def test_only_the_cards_a_case_ran_on_count(monkeypatch, virtual_clock):
    """On a machine with more cards than the case used, the others' energy is not the case's: torch names the
    case's cards by UUID, NVML's labels are found by the same UUIDs, and energy sums those cards only."""
    from bench.engines.simulated import step_s
    from bench.hardware import devices
    from bench.run.runner import Runner

    backend = NvmlBackend(fake_nvml)
    assert backend.labels_for(["fake-1"]) == ["gpu1"] and backend.labels_for(["GPU-fake-0", "fake-1"]) == \
        ["gpu0", "gpu1"]
    assert backend.labels_for(["fake-7"]) == []  # a card NVML does not list: cannot tell, so every card counts
    monkeypatch.setattr(devices, "card_uuids", lambda device, count, indices=None: ["fake-1"])  # the case ran on card 1 only
    sampler = Sampler(backend, hz=50)
    sampler.start()
    w = apply_overrides(load_workload("quick"), {"batch_size": [2], "min_reps": 3, "min_seconds": 0,
                                                 "engine": ["simulated"], "output_len": [33]})
    (result,) = list(Runner(w, resolve_device("cpu"), sampler, "test").run(expand(w)))
    sampler.stop()
    row = result.row
    assert row["per_card"].startswith("gpu1:") and "gpu0" not in row["per_card"]
    assert row["power_w_mean"] == pytest.approx(200.0, rel=1e-3)  # card 1's 200 W, not the machine's 300
    assert row["energy_decode_j"] == pytest.approx(200 * 3 * 32 * step_s(2), rel=0.01)


def make_rapl(root, energy_uj, max_uj=1000_000_000):
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    sub = root / "intel-rapl:0:0"  # a sub-zone must not be counted again
    sub.mkdir(exist_ok=True)
    (sub / "energy_uj").write_text("5\n")
    (sub / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_rapl_from_fake_sysfs_with_wraparound(tmp_path):
    zone = make_rapl(tmp_path, 999_000_000)  # 999 J, counter wraps at 1000 J
    backend = CpuBackend(tmp_path)
    assert backend.energy_method == "rapl"
    assert backend.capabilities()["energy_j"] is None
    (first,) = backend.read()
    (zone / "energy_uj").write_text("4000000\n")  # wrapped: 999 J -> 1004 J
    (second,) = backend.read()
    assert second.energy_j - first.energy_j == pytest.approx(5.0)
    assert second.power_w is not None and second.power_w > 0


def test_cpu_backend_without_rapl_says_why(tmp_path):
    backend = CpuBackend(tmp_path / "missing")
    assert backend.energy_method == "none"
    assert backend.energy_reason().startswith("none: no power sensor readable")
    (r,) = backend.read()
    assert r.power_w is None and r.energy_j is None
    assert r.mem_used_gb > 0


def test_real_rapl_when_readable():
    backend = CpuBackend()
    if not backend.domains:
        pytest.skip(f"RAPL not readable here: {backend.rapl_reason}")
    a = backend.read()[0].energy_j
    sum(i * i for i in range(2_000_000))
    assert backend.read()[0].energy_j > a  # a package draws power while it computes


def test_probe_falls_back_to_the_cpu_on_a_machine_without_gpus(monkeypatch):
    """Asked for a GPU's telemetry where NVML and AMD SMI cannot start: the CPU backend, and why not the others."""
    import pynvml

    def no_driver():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    backend, tried = probe_backend("cuda")
    assert backend.name == "cpu"
    assert set(backend.capabilities()) == set(FIELDS)
    from bench.core.plugins import backends

    # every accelerator backend found, in probe order, each with why it did not start here
    assert [t.split(":")[0] for t in tried] == [n for n in backends() if n != "cpu"]


def test_sampler_runs_in_the_background_and_drains():
    sampler = Sampler(CpuBackend(), hz=50)
    sampler.start()
    time.sleep(0.25)
    sampler.stop()
    drained = sampler.drain()
    assert len(drained) >= 5
    assert sampler.drain() == []


def test_idle_baseline_brackets_its_window():
    """The idle window lies between two readings, so every card gets a mean power (it was empty on a real H200)."""
    backend = NvmlBackend(nvml=fake_nvml)
    sampler = Sampler(backend, hz=10)  # not started: only the baseline's own readings
    idle = sampler.idle_baseline(0.2)
    assert idle == pytest.approx({"gpu0": 100.0, "gpu1": 200.0}, rel=0.02)


TOY_MODULE = """# A vendor's backend as a new module declares it (a stand-in: this machine has no such card)

from bench.telemetry.base import FIELDS, NoTelemetry


class ToyBackend(NoTelemetry):
    name = "toy"
    probe_rank = 500
    energy_method = "toy-counter"
    power_method = "toy-power"
    reads = ("power_w",)

    def __init__(self) -> None:
        super().__init__("toy")

    def capabilities(self):
        return {f: (None if f in self.reads else "toy: not read") for f in FIELDS}
"""


@pytest.fixture
def telemetry_folder(tmp_path, monkeypatch):
    """A second folder of bench.telemetry's modules, for a test to drop a backend module into."""
    import bench.telemetry
    from bench.core import plugins

    monkeypatch.setattr(bench.telemetry, "__path__", [*bench.telemetry.__path__, str(tmp_path)])
    plugins.backends.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    for name in [m for m in sys.modules if m.startswith("bench.telemetry.toy")]:
        del sys.modules[name]
    plugins.backends.cache_clear()


def test_a_backend_is_its_module(telemetry_folder):
    """A module dropped beside the others that declares its name and probe rank is found with nothing else
    edited: tried in its rank's place (before the CPU's) on an accelerator run, skipped on a CPU run, named in
    its rows' energy method (attribution names no vendor); a second module declaring the same name is refused."""
    from bench.core import plugins

    (telemetry_folder / "toy_vendor.py").write_text(TOY_MODULE)
    assert list(plugins.backends())[-2:] == ["toy", "cpu"]
    backend, tried = probe_backend("cuda")
    assert backend.name == "toy" and backend.energy_reason() == "toy-counter"
    assert [t.split(":")[0] for t in tried] == [n for n in plugins.backends() if n not in ("toy", "cpu")]
    assert probe_backend("cpu")[0].name == "cpu"  # an accelerator backend is not tried on a CPU run
    (telemetry_folder / "toy_again.py").write_text(TOY_MODULE)
    plugins.backends.cache_clear()
    with pytest.raises(RuntimeError, match="'toy' is declared twice"):
        plugins.backends()


def test_sampler_cost_pairs_trials_and_says_whether_it_is_noise():
    from bench.scenarios.sampler_cost import sampler_costs

    def row(tok_s, trial, on, bs=1, status="ok"):
        tags = ";".join(t for t in ("" if on else "telemetry=off", f"trial={trial}" if trial > 1 else "") if t)
        return {"status": status, "model": "tiny", "dtype": "bfloat16", "batch_size": bs, "input_len": 64,
                "output_len": 64, "decode_tok_s": tok_s, "tags": tags}

    # On 2% slower in every pair, with the pairs' spread small: measurable, and the figure is the pairs' mean.
    rows = [row(98, 1, True), row(100, 1, False), row(98.2, 2, True), row(100.1, 2, False),
            row(97.9, 3, True), row(99.8, 3, False)]
    (cost,) = sampler_costs(rows)
    assert cost.pairs == 3 and 1.5 < cost.slowdown_pct < 2.5 and cost.low_pct > 0 and not cost.within_noise
    assert "measurable" in cost.text() and "3 on/off pairs" in cost.text()
    # Pairs that disagree in sign: the interval holds 0; a failed case is no pair; another batch is its own case.
    rows = [row(101, 1, True), row(100, 1, False), row(99, 2, True), row(100, 2, False),
            row(50, 3, True, status="error"), row(100, 3, False), row(700, 1, True, bs=8)]
    costs = sampler_costs(rows)
    assert len(costs) == 1 and costs[0].pairs == 2 and costs[0].within_noise and "within noise" in costs[0].text()
    (one,) = sampler_costs([row(99, 1, True), row(100, 1, False)])
    assert "more trials" in one.text()  # one pair cannot tell a cost from noise
    assert sampler_costs([row(99, 1, True)]) == []


def test_telemetry_overhead_workload_answers_with_the_sampler_cost(out_dir):
    """End to end on the simulated engine (exact timings): on and off take the same time, so the cost is 0."""
    from tests.helpers import FAST, run_bench

    proc = run_bench("run", "--workload", "telemetry-overhead", "--engine", "simulated", "--quick", *FAST,
                     "--set", "trial=1,2", "--out", str(out_dir))
    assert proc.returncode == 0, proc.stderr
    assert "the telemetry sampler costs +0.0% decode tok/s" in proc.stdout and "2 on/off pairs" in proc.stdout


def test_two_threads_sampling_at_once_keep_each_timeline_in_order():
    """The sampling thread and a window's edge read at once: a slow earlier read must not land after a fast
    later one (a node's timeline went backwards under Ray on a busy machine)."""
    import threading
    import time

    from bench.telemetry.base import Backend, Reading

    class SlowFirst(Backend):
        name = "slow-first"

        def __init__(self) -> None:
            self.calls = 0

        def devices(self) -> list[str]:
            return ["gpu0"]

        def capabilities(self) -> dict:
            return {}

        def read(self) -> list[Reading]:
            self.calls += 1
            taken = time.perf_counter()
            if self.calls == 1:
                time.sleep(0.3)  # the first read is slow to answer
            return [Reading(t=taken, device="gpu0", power_w=1.0)]

    sampler = Sampler(SlowFirst(), hz=1)
    slow = threading.Thread(target=sampler.sample_now)
    slow.start()
    time.sleep(0.05)
    sampler.sample_now()  # the window's edge, while the slow read is still out
    slow.join()
    times = [r.t for r in sampler.readings]
    assert len(times) == 2 and times == sorted(times)
