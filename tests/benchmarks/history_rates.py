"""How often `bench history` is wrong, measured: A/A false change points, detection of a step and of a drift,
and whether the commit it names is the right one (the history's counterpart of gate_rates.py).

    python tests/benchmarks/history_rates.py [RUN_DIR] [--series 10] [--points 40]

The noise is this machine's: the per-repetition decode tok/s of a real run (RUN_DIR, default: the newest
throughput run under ./results, else a fresh `bench run --workload throughput --quick`), its relative spread
resampled point by point; each point is the median of that many repetitions, as bench history takes it.
Prints a table of rates for bench.analysis.history's defaults (MAX_PVALUE, MIN_MAGNITUDE).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def real_noise(run_dir: Path | None) -> tuple[np.ndarray, int, str]:
    """Relative deviations of decode tok/s repetitions from their case's median, and repetitions per run."""
    import pandas as pd

    if run_dir is None:
        found = sorted(Path("results").rglob("*-throughput/samples.csv")) if Path("results").is_dir() else []
        if found:
            run_dir = found[-1].parent
        else:
            out = Path(tempfile.mkdtemp())
            subprocess.run([sys.executable, "-m", "bench", "run", "--workload", "throughput", "--quick", "--out",
                            str(out)], check=True, capture_output=True)
            run_dir = next(out.iterdir())
    samples = pd.read_csv(run_dir / "samples.csv")
    devs = []
    reps = 3
    for _, g in samples.groupby("case"):
        values = g["decode_tok_s"].dropna().to_numpy(float)
        if len(values) >= 2:
            devs.extend(values / np.median(values) - 1)
            reps = len(values)
    return np.asarray(devs), reps, str(run_dir)


def series(rng: np.random.Generator, noise: np.ndarray, reps: int, levels: np.ndarray) -> list[float]:
    """One point per level: the median of `reps` repetitions drawn from the real noise around it."""
    return [float(np.median(level * (1 + rng.choice(noise, reps)))) for level in levels]


def main() -> None:
    from bench.analysis.history import MAX_PVALUE, MIN_MAGNITUDE, Point, Series, detect

    p = argparse.ArgumentParser()
    p.add_argument("run", nargs="?", type=Path)
    p.add_argument("--series", type=int, default=10)
    p.add_argument("--points", type=int, default=40)
    a = p.parse_args()
    noise, reps, where = real_noise(a.run)
    rng = np.random.default_rng(0)

    def judge(values: list[float]) -> Series:
        pts = [Point(f"r{i}", f"c{i:03d}", f"{i:05d}", v, [], "") for i, v in enumerate(values)]
        return detect(Series("case", "decode_tok_s", "machine", pts), MAX_PVALUE, MIN_MAGNITUDE)

    def regressions(s: Series) -> list:
        return [c for c in s.change_points if c.label == "regression"]

    false = sum(len([c for c in judge(series(rng, noise, reps, np.ones(a.points))).change_points
                     if c.label != "suspicious"]) for _ in range(a.series))
    caught = exact = 0
    for _ in range(a.series):  # a 10% slowdown after 5 points of it
        levels = np.r_[np.ones(a.points - 5), np.full(5, 0.9)]
        found = regressions(judge(series(rng, noise, reps, levels)))
        caught += bool(found)
        exact += any(c.first_bad == f"c{a.points - 5:03d}" for c in found)
    drift_points = []
    for _ in range(a.series):  # 3% a week, a point a week, over 20 points: when is it first flagged?
        levels = 0.97 ** np.arange(20)
        for n in range(MIN_POINTS_FLOOR, 21):
            if regressions(judge(series(rng, noise, reps, levels[:n]))):
                drift_points.append(n)
                break
    print(f"noise from {where}: {len(noise)} repetitions, relative sd {noise.std():.1%}, {reps} per run")
    print(f"defaults: max_pvalue {MAX_PVALUE:g}, min change {MIN_MAGNITUDE:.0%}")
    print(f"A/A false change points: {false} in {a.series * a.points} points "
          f"({100 * false / (a.series * a.points):.2f} per 100)")
    print(f"10% step after 5 points of it: detected in {caught} of {a.series}, commit named exactly in {exact}")
    print(f"3%/week drift: flagged in {len(drift_points)} of {a.series} series within 20 points" +
          (f", after {int(np.median(drift_points))} points (median)" if drift_points else ""))


MIN_POINTS_FLOOR = 5

if __name__ == "__main__":
    main()
