"""What the report and the trend page weigh and take to build, from 2 to 200 runs (goal: each page under 2 MB and
built in under 30 s at the largest size), with a screenshot of each at 1280 px where Chromium is installed.

    python tests/benchmarks/page_weight.py [--runs 2,20,200] [--commits 50] [--shots DIR] [--keep DIR]

The runs are copies of one fresh simulated run of 12 cases (batch 1-32, input 128 and 512): each copy its own
commit a minute apart, its decode figures jittered by 1%, and a 10% decode slowdown from two thirds of the way
on (so the trend page has regressions to lead with). The report reads the first N copies; the trend page
`bench history` over --commits copies: 12 cases x 9 gated metrics = some 100 series.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.benchmarks.history_scale import _scaled  # noqa: E402


def make_runs(root: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` copies of one 12-case simulated run, a commit each, a minute apart, a 10% step at two thirds."""
    import numpy as np

    template_root = root / "_template"
    if not template_root.exists():
        subprocess.run([sys.executable, "-m", "bench", "run", "--engine", "simulated", "--set",
                        "batch_size=1,2,4,8,16,32", "--set", "input_len=128,512", "--set", "min_reps=3", "--set",
                        "min_seconds=0", "--set", "idle_seconds=0", "--set", "canary_seconds=0", "--out",
                        str(template_root)], check=True, capture_output=True, cwd=ROOT)
    template = next(p for p in template_root.iterdir() if p.is_dir())
    meta = json.loads((template / "run.json").read_text())
    rng = np.random.default_rng(seed)
    out = root / f"runs-{count}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    runs = []
    for i in range(count):
        name = f"20260101T{i // 60:02d}{i % 60:02d}00Z-vm-throughput"
        run_dir = out / name
        run_dir.mkdir()
        level = 0.9 if i >= count * 2 // 3 and count > 2 else 1.0
        (run_dir / "samples.csv").write_text(_scaled(template / "samples.csv", level, rng, 0.01))
        (run_dir / "results.csv").write_text(_scaled(template / "results.csv", level, rng, 0.0))
        git = {"commit": f"{i:07x}" + "0" * 33, "dirty": False,
               "commit_time": f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00+00:00"}
        (run_dir / "run.json").write_text(json.dumps(dict(meta, run_id=name, start=name[:16],
                                                          fingerprint=dict(meta["fingerprint"], git=git))))
        runs.append(run_dir)
    return runs


def build(args: list[str], page: Path) -> tuple[float, int]:
    """(seconds, bytes) of one `bench` command writing `page`."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", *args, "-o", str(page)], capture_output=True, text=True,
                          cwd=ROOT)
    took = time.perf_counter() - t
    if proc.returncode not in (0, 1):  # history exits 1 with --fail-on only
        raise SystemExit(f"bench {args[0]} failed: {proc.stderr[-1000:]}")
    return took, page.stat().st_size


def screenshot(page: Path, png: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1280,900", f"--screenshot={png}", page.as_uri()], capture_output=True,
                       timeout=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="2,20,200")
    p.add_argument("--commits", type=int, default=50)
    p.add_argument("--shots", type=Path, help="write a 1280 px screenshot of each page here")
    p.add_argument("--keep", type=Path, help="build the runs here and keep them")
    a = p.parse_args()
    root = a.keep or Path(tempfile.mkdtemp())
    root.mkdir(parents=True, exist_ok=True)
    if a.shots:
        a.shots.mkdir(parents=True, exist_ok=True)
    print(f"{'page':<24}{'build s':>9}{'MB':>8}")
    for n in [int(x) for x in a.runs.split(",")]:
        runs = make_runs(root, n)
        page = root / f"report-{n}.html"
        took, size = build(["report", *map(str, runs)], page)
        print(f"{f'report, {n} runs':<24}{took:>9.1f}{size / 1e6:>8.2f}", flush=True)
        if a.shots:
            screenshot(page, a.shots / f"report-{n}.png")
    runs = make_runs(root, a.commits)
    page = root / "trend.html"
    took, size = build(["history", str(runs[0].parent)], page)
    print(f"{f'trend, {a.commits} commits':<24}{took:>9.1f}{size / 1e6:>8.2f}")
    if a.shots:
        screenshot(page, a.shots / "trend.png")


if __name__ == "__main__":
    main()
