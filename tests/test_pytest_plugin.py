"""The pytest-benchmark plugin round trip: save, compare, and fail on a doctored slowdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "test_claimbench_benchmarks.py"


def pytest_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Not an xdist worker's environment: pytest-benchmark turns itself off under xdist.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", str(EXAMPLE), "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", "-p", "no:xdist", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def pytest_file(path: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Not an xdist worker's environment: pytest-benchmark turns itself off under xdist.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", "-p", "no:xdist", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def test_the_example_records_real_inference(tmp_path):
    """The example as a user runs it (the real engine on the tiny model): claimbench's metrics of the timed calls
    and the machine go into extra_info. No timing is compared here: a busy machine cannot fail it."""
    storage = f"--benchmark-storage=file://{tmp_path / 'store'}"
    saved = pytest_run("--benchmark-autosave", storage, cwd=tmp_path)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    (record,) = (tmp_path / "store").rglob("*.json")
    data = json.loads(record.read_text())
    info = data["benchmarks"][0]["extra_info"]
    assert info["decode_tok_s"] > 0 and info["tpot_ms_p50"] > 0 and info["device_name"]
    assert data["benchmarks"][0]["stats"]["rounds"] == 5


SIMULATED = """
def test_simulated_decode(claimbench_case):
    metrics = claimbench_case(workload="quick", engine="simulated", batch_size=1, input_len=64, output_len=16,
                              rounds=5, warmup_rounds=1)
    assert metrics["decode_tok_s"] > 0
"""


def test_save_compare_and_fail_on_a_slowdown(tmp_path):
    """The gate's round trip on exact timings: the simulated engine on claimbench's virtual clock, given to
    pytest-benchmark as its timer, takes the same time on a quiet machine and a busy one. The same code passes
    against its own baseline and fails against one doctored to be ten times faster."""
    bench_file = tmp_path / "test_sim_benchmark.py"
    bench_file.write_text(SIMULATED)
    storage = f"--benchmark-storage=file://{tmp_path / 'store'}"
    timer = "--benchmark-timer=bench.core.clock.now"
    saved = pytest_file(bench_file, "--benchmark-autosave", timer, storage, cwd=tmp_path)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    (record,) = (tmp_path / "store").rglob("*.json")
    data = json.loads(record.read_text())
    stats = data["benchmarks"][0]["stats"]
    assert stats["rounds"] == 5 and stats["min"] == stats["max"] > 0  # exact: every round took the same time
    same = pytest_file(bench_file, "--benchmark-compare", "--benchmark-compare-fail=mean:10%", timer, storage,
                       cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    for bench in data["benchmarks"]:
        for key in ("min", "max", "mean", "median"):
            bench["stats"][key] /= 10
    record.write_text(json.dumps(data))
    compared = pytest_file(bench_file, "--benchmark-compare", "--benchmark-compare-fail=mean:10%", timer, storage,
                           cwd=tmp_path)
    assert compared.returncode != 0, compared.stdout
    assert "Performance has regressed" in compared.stdout + compared.stderr
