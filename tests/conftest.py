"""Shared test helpers: the real `bench` CLI in a subprocess, offline, on the tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# pytest-xdist workers set COLUMNS=80: tests that want a terminal width ask for one themselves.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# One cache for the whole session (model shapes, probed ceilings), never the user's own.
os.environ["CLAIMBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="claimbench-cache-")

ROOT = Path(__file__).resolve().parent.parent



def auto_bytes_per_element() -> int:
    """Bytes per weight of a CPU case under dtype=auto here: 2 (bf16) on a CPU with native bf16, else 4 (fp32);
    the machine CI runs on changes from one run to the next (AMD EPYC without, Intel Xeon with AMX)."""
    import torch

    from bench.hardware.devices import pick_dtype, resolve_device

    return torch.finfo(pick_dtype("auto", resolve_device("cpu"))[0]).bits // 8


# Settings that keep a CLI run to a few seconds on a 2-core CPU.
FAST = ["--set", "min_reps=2", "--set", "min_seconds=0", "--set", "idle_seconds=0"]


def run_bench(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path | None = None
              ) -> subprocess.CompletedProcess:
    """Run `python -m bench ARGS` and capture its output."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


def single_run_dir(out: Path) -> Path:
    """The one run directory a test's --out holds."""
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def virtual_clock():
    """Tests that run the simulated engine in-process: the harness clock is real again afterwards."""
    from bench.core import clock

    yield clock
    clock.use_real()


def headless_chromium(tmp_path: Path) -> list[str]:
    """The command line of a headless Chromium with its own profile (skips the test where none is installed)."""
    import shutil

    import pytest

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium package is not installed (.ci/run installs it)")
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}"]
