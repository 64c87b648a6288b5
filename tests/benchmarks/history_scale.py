"""Time `bench history` over a 10,000-run history (goal: under 30 s): copies of one real simulated run, each
with its own commit, commit time and decode figure (a 10% step two thirds of the way), then the real CLI.

    python tests/benchmarks/history_scale.py [--runs 10000] [--keep DIR]

Prints the time to build the runs (not counted), the CLI's wall time and peak memory, and the change points
it reported (the step must be among them).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np


def _scaled(path: Path, factor: float, rng: np.random.Generator, noise: float) -> str:
    """The CSV's text with its decode_tok_s column scaled (and jittered): plain csv, 10,000 times over."""
    rows = list(csv.reader(path.read_text().splitlines()))
    col = rows[0].index("decode_tok_s")
    for row in rows[1:]:
        if row[col]:
            row[col] = repr(float(row[col]) * factor * (1 + rng.normal(0, noise)))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def make_history(root: Path, runs: int, seed: int = 0) -> int:
    """`runs` copies of a fresh simulated throughput run, one commit each, a minute apart; returns the index of
    the first run of a 10% decode slowdown (two thirds of the way)."""
    template_root = root / "_template"
    subprocess.run([sys.executable, "-m", "bench", "run", "--workload", "throughput", "--engine", "simulated",
                    "--quick", "--set", "min_reps=3", "--out", str(template_root)], check=True, capture_output=True)
    template = next(template_root.iterdir())
    meta = json.loads((template / "run.json").read_text())
    rng = np.random.default_rng(seed)
    step_at = runs * 2 // 3
    history = root / "history"
    history.mkdir()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(runs):
        when = start + timedelta(minutes=i)
        run_dir = history / f"{when:%Y%m%dT%H%M%S}Z-vm-throughput"
        run_dir.mkdir()
        level = 0.9 if i >= step_at else 1.0
        (run_dir / "samples.csv").write_text(_scaled(template / "samples.csv", level, rng, 0.01))
        (run_dir / "results.csv").write_text(_scaled(template / "results.csv", level, rng, 0.0))
        git = {"commit": f"{i:07x}" + "0" * 33, "dirty": False, "commit_time": when.isoformat()}
        m = dict(meta, run_id=run_dir.name, fingerprint=dict(meta["fingerprint"], git=git))
        (run_dir / "run.json").write_text(json.dumps(m))
    return step_at


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--keep", type=Path, help="build the history here and keep it")
    a = p.parse_args()
    root = a.keep or Path(tempfile.mkdtemp())
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    step_at = make_history(root, a.runs)
    print(f"built {a.runs} runs in {time.perf_counter() - t:.0f} s (not counted); the step is at run {step_at}")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", "history", str(root / "history"), "-o",
                           str(root / "trend.html")], capture_output=True, text=True)
    took = time.perf_counter() - t
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the history's own CPU (the template run's is small)
    peak, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    print(f"bench history over {a.runs} runs: {took:.1f} s wall (goal < 30 s), {cpu:.1f} s CPU (with the template "
          f"run), peak {peak:.0f} MB, exit {proc.returncode}")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
