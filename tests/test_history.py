"""bench history: series over commits from real run directories (the simulated engine's exact numbers, its
timing model slowed at one commit), change points by Apache Otava, the terminal table, the gate and the page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FAST, run_bench

pytest.importorskip("otava")


def _history(tmp_path: Path, values: list[float], noise: float = 0.01) -> Path:
    """A results root of len(values) runs, one per commit, decode tok/s scaled to each value (with a little
    seeded noise per repetition), made from one real run directory."""
    import numpy as np

    seed = tmp_path / "seed"
    proc = run_bench("run", "--out", str(seed), "--engine", "simulated", *FAST, "--set", "min_reps=5",
                     "--set", "batch_size=1")
    assert proc.returncode == 0, proc.stderr
    (template,) = list(seed.iterdir())
    root = tmp_path / "results"
    rng = np.random.default_rng(0)
    for i, scale in enumerate(values):
        run = root / f"2026{i // 28 + 1:02d}{i % 28 + 1:02d}T000000Z-ci-quick"
        shutil.copytree(template, run)
        meta = json.loads((run / "run.json").read_text())
        meta["fingerprint"]["git"] = {"commit": f"{i:04d}abcdef", "dirty": False,
                                      "commit_time": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00"}
        (run / "run.json").write_text(json.dumps(meta))
        samples = pd.read_csv(run / "samples.csv")
        samples["decode_tok_s"] = samples["decode_tok_s"] * scale * (1 + noise * rng.standard_normal(len(samples)))
        samples.to_csv(run / "samples.csv", index=False)
        results = pd.read_csv(run / "results.csv")
        results["decode_tok_s"] = samples["decode_tok_s"].median()
        results.to_csv(run / "results.csv", index=False)
    return root


def test_a_step_is_found_at_its_commit_and_fails_the_gate(tmp_path):
    root = _history(tmp_path, [1.0] * 8 + [0.85] * 6)  # a 15% slowdown at the ninth commit
    out = tmp_path / "trend.html"
    proc = run_bench("history", str(root), "-o", str(out), "--fail-on", "regression")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "regression" in proc.stdout and "0007abcdef..0008abcdef" in proc.stdout, proc.stdout
    page = out.read_text()
    assert page.count('<figure class="plot"') >= 1 and 'data-label="regression"' in page


def test_noise_alone_is_no_regression_and_one_run_is_insufficient(tmp_path):
    root = _history(tmp_path, [1.0] * 12)
    proc = run_bench("history", str(root), "--fail-on", "regression")
    assert proc.returncode == 0 and "regression" not in proc.stdout.split("series:")[1].split("\n", 1)[1], \
        proc.stdout
    one = tmp_path / "one"
    shutil.copytree(next(root.iterdir()), one / next(root.iterdir()).name)
    proc = run_bench("history", str(one), "--fail-on", "regression")
    assert proc.returncode == 0 and "insufficient data" in proc.stdout
