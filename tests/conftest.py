"""The test environment (offline, no user cache, no inherited terminal size) and the shared fixtures; the
helpers are tests/helpers.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# pytest-xdist workers set COLUMNS=80: tests that want a terminal width ask for one themselves.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Two xdist workers share the cores: torch's OpenMP threads that spin while waiting for work burn the cores
# the other worker needs (two default `bench run`s side by side on 2 cores took 66 s each; with the threads
# sleeping instead, 19 s). No test asserts a speed, so here, and in every `bench` child, they sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One cache for the whole session (model shapes, probed ceilings), never the user's own.
os.environ["CLAIMBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="claimbench-cache-")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers a core. Much of a test's time is a `bench` child, a stub server or a Ray cluster
    that it waits on, and with the OpenMP threads sleeping while they wait (above), a second worker per core
    keeps the cores busy (one worker a core left 35% of 2 cores idle)."""
    return 2 * len(os.sched_getaffinity(0))


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def virtual_clock():
    """Tests that run the simulated engine in-process: the harness clock is real again afterwards."""
    from bench.core import clock

    yield clock
    clock.use_real()
