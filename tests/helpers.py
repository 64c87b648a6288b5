"""Test helpers, one module (conftest.py keeps the environment and the fixtures): the real `bench` CLI, in
this process where that changes nothing a test can see and in a subprocess where it would (signals, the
console script, a real engine's model load); one way to make a slowed copy of a run; a headless Chromium."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
# Settings that keep a CLI run to a few seconds on a 2-core CPU.
FAST = ["--set", "min_reps=2", "--set", "min_seconds=0", "--set", "idle_seconds=0"]
# Commands that read runs and never load a model: each call in this process saves a Python start and the
# imports of torch and pandas (a second or two on 2 cores, times some 150 calls).
READERS = {"compare", "check", "verify", "report", "history", "list"}


def auto_bytes_per_element() -> int:
    """Bytes per weight of a CPU case under dtype=auto here: 2 (bf16) on a CPU with native bf16, else 4 (fp32);
    the machine CI runs on changes from one run to the next (AMD EPYC without, Intel Xeon with AMX)."""
    import torch

    from bench.hardware.devices import pick_dtype, resolve_device

    return torch.finfo(pick_dtype("auto", resolve_device("cpu"))[0]).bits // 8


def run_bench(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path | None = None
              ) -> subprocess.CompletedProcess:
    """`bench ARGS` with its output captured: in this process for the readers and for runs of the simulated
    engine or dry runs (the CLI's own exit codes and output, nothing a subprocess would show differently),
    else `python -m bench ARGS` in a subprocess."""
    if in_process(args) and "PYTHONPATH" not in (env or {}):  # what a process imports is its own
        return run_here(*args, env=env, cwd=cwd)
    return run_subprocess(*args, timeout=timeout, env=env, cwd=cwd)


def in_process(args: tuple[str, ...]) -> bool:
    command = args[0] if args else ""
    if command in READERS:
        return True
    simulated = any(a == "simulated" and b in ("--engine", "engine") for a, b in zip(args[1:], args)) or \
        "engine=simulated" in args
    return command == "run" and ("--dry-run" in args or simulated) and "--ray" not in args


def run_here(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """bench.cli.main(ARGS) in this process, with the environment, directory, argv and signal handlers a
    subprocess would have had, all restored afterwards."""
    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    os.environ.update({"HF_HUB_OFFLINE": "1", **(env or {})})
    sys.argv = [str(ROOT / "bench" / "__main__.py"), *args]
    try:
        os.chdir(cwd or ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help, or a usage error
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return subprocess.CompletedProcess(["bench", *args], code, out.getvalue(), err.getvalue())


def run_subprocess(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path | None = None
                   ) -> subprocess.CompletedProcess:
    """Run `python -m bench ARGS` in a subprocess and capture its output."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


def single_run_dir(out: Path) -> Path:
    """The one run directory a test's --out holds."""
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


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


def slowed(run: Path, dest: Path, factor: float, spread: list[float] | None = None) -> Path:
    """A copy of a run with every speed times `factor` (and per repetition times `spread[i]` if given):
    rates divided, times multiplied, in samples.csv and the rows alike. The one way tests doctor a run."""
    shutil.copytree(run, dest)
    samples = pd.read_csv(dest / "samples.csv")
    results = pd.read_csv(dest / "results.csv")
    per_rep = np.array(spread if spread else [1.0] * (int(samples["repetition"].max()) + 1 if len(samples) else 1))
    per_rep = per_rep[samples["repetition"].to_numpy()]
    middle = factor * float(np.median(spread or [1.0]))
    for col in ("decode_tok_s", "prefill_tok_s", "output_tok_s"):
        if col in samples:
            samples[col] = samples[col] * factor * per_rep
    for col in ("decode_tok_s", "prefill_tok_s", "output_tok_s", "decode_tok_s_per_user"):
        if col in results:
            results[col] = results[col] * middle
    for col in ("ttft_ms", "tpot_ms", "e2e_ms", "itl_ms_p99"):
        if col in samples:
            samples[col] = samples[col] / (factor * per_rep)
    for col in ("ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50", "itl_ms_p99"):
        if col in results:
            results[col] = results[col] / middle
    samples.to_csv(dest / "samples.csv", index=False)
    results.to_csv(dest / "results.csv", index=False)
    return dest
