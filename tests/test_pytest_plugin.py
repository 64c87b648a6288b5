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


def test_save_compare_and_fail_on_a_slowdown(tmp_path):
    storage = f"--benchmark-storage=file://{tmp_path / 'store'}"
    saved = pytest_run("--benchmark-autosave", storage, cwd=tmp_path)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    (record,) = (tmp_path / "store").rglob("*.json")
    data = json.loads(record.read_text())
    info = data["benchmarks"][0]["extra_info"]
    assert info["decode_tok_s"] > 0 and info["tpot_ms_p50"] > 0 and info["device_name"]
    assert data["benchmarks"][0]["stats"]["rounds"] == 5
    # The same code again, against a baseline doctored to be ten times faster: a 10% gate must fail.
    for bench in data["benchmarks"]:
        for key in ("min", "max", "mean", "median"):
            bench["stats"][key] /= 10
    record.write_text(json.dumps(data))
    compared = pytest_run("--benchmark-compare", "--benchmark-compare-fail=mean:10%", storage, cwd=tmp_path)
    assert compared.returncode != 0, compared.stdout
    assert "Performance has regressed" in compared.stdout + compared.stderr
