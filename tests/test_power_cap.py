"""A card's power limit changed for a case, only with leave, read back, and put back however the run ends, on
the stand-in NVML (tests/fake_nvml.py: this machine has no NVIDIA driver). Never run against a borrowed card:
there only the read-back may run."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from bench.hardware.devices import resolve_device
from bench.run.session import run_session
from bench.spec.workload import apply_overrides, expand, load_workload
from bench.telemetry.nvml import NvmlBackend
from bench.telemetry.power_cap import PowerCap, describe_left, left_changed, state_path
from tests import fake_nvml
from tests.helpers import ROOT, run_bench


@pytest.fixture
def cards(monkeypatch, tmp_path):
    """Both stand-in cards at their default 700 W, the state file in a fresh cache directory."""
    monkeypatch.setenv("CLAIMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fake_nvml, "LIMITS", {0: 700000, 1: 700000})
    monkeypatch.setattr(fake_nvml, "STUCK", set())
    return fake_nvml


def _sweep(tmp_path, caps, allow=True, interrupt_after=None, monkeypatch=None):
    w = apply_overrides(load_workload("quick"), {"engine": ["simulated"], "batch_size": [1], "output_len": [9],
                                                 "min_reps": 2, "min_seconds": 0, "power_limit_w": caps,
                                                 "idle_seconds": 0, "canary_seconds": 0})
    if interrupt_after is not None:
        from bench.run import runner

        real = runner.Runner.run_case
        done = []

        def run_case(self, case, probing=False):
            if len(done) == interrupt_after:
                raise KeyboardInterrupt
            done.append(case)
            return real(self, case, probing)
        monkeypatch.setattr(runner.Runner, "run_case", run_case)
    return run_session(w, expand(w), resolve_device("cpu"), tmp_path / "out", Console(file=io.StringIO()),
                       telemetry=NvmlBackend(fake_nvml), allow_power_limit=allow)


def test_a_cap_sweep_runs_each_case_under_its_cap_and_puts_the_default_back(cards, tmp_path):
    outcome = _sweep(tmp_path, [450.0, 300.0])
    assert [r["status"] for r in outcome.rows] == ["ok", "ok"], [r["detail"] for r in outcome.rows]
    assert [r["power_limit_w"] for r in outcome.rows] == [450, 300]  # read back after each case
    assert [r["tags"] for r in outcome.rows] == ["cap=450W", "cap=300W"]
    assert "power limit not the default: gpu0 450 W (default 700 W)" in outcome.rows[0]["detail"]
    assert cards.LIMITS == {0: 700000, 1: 700000} and not state_path().exists()


def test_a_cap_that_does_not_take_effect_is_an_error_row(cards, tmp_path):
    cards.STUCK.add(1)  # gpu1 accepts the call and keeps 700 W
    outcome = _sweep(tmp_path, [450.0])
    (row,) = outcome.rows
    assert row["status"] == "error" and "did not take effect: asked 450 W, gpu1 reads 700.0 W" in row["detail"]
    assert cards.LIMITS == {0: 700000, 1: 700000}


def test_a_case_without_a_cap_after_a_capped_one_runs_at_the_cards_own_limit(cards, tmp_path):
    """A sweep 450, 0: the second case asked for no cap, so it must not run under the first one's."""
    outcome = _sweep(tmp_path, [450.0, 0.0])
    assert [r["power_limit_w"] for r in outcome.rows] == [450, 700]
    assert outcome.rows[1]["tags"] == "" and "power limit not the default" not in outcome.rows[1]["detail"]


def test_a_cap_outside_the_cards_range_is_an_error_row_with_nvmls_reason(cards, tmp_path):
    """NVML refuses a limit outside the card's constraints (200-700 W here): the case is an error row naming
    the refusal, the next case runs, and no card is left changed."""
    outcome = _sweep(tmp_path, [100.0, 300.0])
    assert outcome.rows[0]["status"] == "error"
    assert "setting gpu0's power limit to 100 W failed: NVML: Invalid Argument" in outcome.rows[0]["detail"]
    assert outcome.rows[1]["status"] == "ok" and outcome.rows[1]["power_limit_w"] == 300
    assert cards.LIMITS == {0: 700000, 1: 700000} and not state_path().exists()


def test_ctrl_c_mid_sweep_puts_the_default_back(cards, tmp_path, monkeypatch):
    outcome = _sweep(tmp_path, [450.0, 300.0], interrupt_after=1, monkeypatch=monkeypatch)
    assert outcome.interrupted == "interrupted" and len(outcome.rows) == 1
    assert cards.LIMITS == {0: 700000, 1: 700000} and not state_path().exists()


def test_a_killed_run_leaves_word_and_the_next_run_puts_the_cap_back(cards, tmp_path):
    """SIGKILL cannot be caught: the originals were written down before the first change, bench env says so, and
    the next run restores them before its first case."""
    cap = PowerCap(NvmlBackend(fake_nvml))
    assert cap.apply(400.0, None) == ""
    assert cards.LIMITS == {0: 400000, 1: 400000}  # ...and the process dies here
    assert left_changed() == {"gpu0": 700.0, "gpu1": 700.0}
    assert "power limit left changed on gpu0 by a killed run: its own limit is 700 W" in describe_left()[0]
    outcome = _sweep(tmp_path, [0.0])
    assert outcome.rows[0]["power_limit_w"] == 700 and cards.LIMITS == {0: 700000, 1: 700000}
    assert not state_path().exists()


def test_without_leave_a_cap_is_refused_in_one_line(cards, tmp_path):
    outcome = _sweep(tmp_path, [450.0], allow=False)
    assert outcome.rows[0]["status"] == "error" and "needs --allow-power-limit" in outcome.rows[0]["detail"]
    assert cards.LIMITS == {0: 700000, 1: 700000}
    proc = run_bench("run", "--engine", "simulated", "--set", "power_limit_w=450", "--out", str(tmp_path / "cli"))
    assert proc.returncode == 2 and "add --allow-power-limit" in proc.stderr and proc.stderr.count("\n") == 1


def _child_env(tmp_path) -> dict[str, str]:
    """A `bench` child whose pynvml is the stand-in, its card limits in a file that outlives it."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "pynvml.py").write_text("from tests.fake_nvml import *  # noqa: F401,F403 - stand-in cards\n")
    limits = tmp_path / "limits.json"
    if not limits.exists():
        limits.write_text(json.dumps({"0": 700000, "1": 700000}))
    return {**os.environ, "PYTHONPATH": f"{shim}:{ROOT}", "CLAIMBENCH_TELEMETRY": "nvml",
            "FAKE_NVML_LIMITS": str(limits), "CLAIMBENCH_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}


def _capped_child(tmp_path, env):
    """`bench run` of the tiny model held for a minute under a 450 W cap; returns once the cap is on the cards."""
    child = subprocess.Popen([sys.executable, "-m", "bench", "run", "--model", "tiny", "--set", "power_limit_w=450",
                              "--allow-power-limit", "--set", "min_seconds=60", "--set", "max_seconds=60",
                              "--set", "output_len=8", "--set", "idle_seconds=0", "--set", "canary_seconds=0",
                              "--out", str(tmp_path / "out")], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             # a background shell job starts with SIGINT ignored and a child inherits that
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while json.loads((tmp_path / "limits.json").read_text())["0"] != 450000:
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()[1][-2000:]
        time.sleep(0.2)
    return child


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_signalled_run_puts_the_cards_limit_back_or_leaves_word(tmp_path, sig):
    """A real `bench run` child on stand-in cards, signalled while capped. Ctrl-C: it puts 700 W back itself
    (exit 130). SIGKILL: the cards stay at 450 W, `bench env` names them, and the next run puts them back."""
    env = _child_env(tmp_path)
    child = _capped_child(tmp_path, env)
    child.send_signal(sig)
    child.communicate(timeout=120)
    limits = json.loads((tmp_path / "limits.json").read_text())
    if sig == signal.SIGINT:
        assert child.returncode == 130 and limits == {"0": 700000, "1": 700000}
        assert not (tmp_path / "cache" / "power-limits-changed.json").exists()
        return
    assert limits == {"0": 450000, "1": 450000}
    said = subprocess.run([sys.executable, "-m", "bench", "env"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert "power limit left changed on gpu0 by a killed run: its own limit is 700 W" in said.stdout
    again = subprocess.run([sys.executable, "-m", "bench", "run", "--engine", "simulated", "--set", "min_reps=1",
                            "--set", "idle_seconds=0", "--out", str(tmp_path / "again")], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "power limit put back on gpu0: 700 W" in again.stderr
    assert json.loads((tmp_path / "limits.json").read_text()) == {"0": 700000, "1": 700000}
