"""bench history: series over commits from real run directories (the simulated engine's exact numbers, its
timing model slowed at one commit), change points by Apache Otava, the terminal table, the gate and the page."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import FAST, ROOT, headless_chromium, run_bench

pytest.importorskip("otava")


def _history(tmp_path: Path, values: list[float], noise: float = 0.01, canary: list[float] | None = None,
             commits: bool = True) -> Path:
    """A results root of len(values) runs, one per commit, decode tok/s scaled to each value (with a little
    seeded noise per repetition), made from one real run directory. canary: the machine's speed per run, as
    its canary would have measured it (the simulated engine takes none: it stands in for a machine that
    slowed down)."""
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
                                      "commit_time": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00"} \
            if commits else {"commit": None, "dirty": None, "commit_time": None}
        meta["start"] = f"2026-02-01T00:{i // 60:02d}:{i % 60:02d}+00:00"
        if canary is not None:
            speed = {"bandwidth_gb_s": 20.0 * canary[i], "tflops": 0.5 * canary[i], "seconds": 1.0}
            meta["canary"] = {"start": speed, "end": speed}
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
    # As a person sees it: Chromium renders the page, regressions first, the commit range on the plot.
    flags = headless_chromium(tmp_path)
    dom = subprocess.run([*flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120).stdout
    first = dom.index('<tr class="series"')  # the series table leads with the regression, its chart first
    assert 'data-label="regression"' in dom[first:first + 200], dom[first:first + 200]
    chart = dom.index('<figure class="plot"')
    assert "regression" in dom[chart:chart + 200].split('data-label="')[1].split('"')[0]
    assert "0007abcdef..0008abcdef" in dom and "<svg" in dom
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "trend.png"
    subprocess.run([*flags, "--window-size=1000,1400", f"--screenshot={shot}", out.as_uri()], capture_output=True,
                   timeout=120)
    assert shot.stat().st_size > 10_000


def test_noise_alone_is_no_regression_and_one_run_is_insufficient(tmp_path):
    root = _history(tmp_path, [1.0] * 12)
    proc = run_bench("history", str(root), "--fail-on", "regression")
    assert proc.returncode == 0 and "regression" not in proc.stdout.split("series:")[1].split("\n", 1)[1], \
        proc.stdout
    one = tmp_path / "one"
    shutil.copytree(next(root.iterdir()), one / next(root.iterdir()).name)
    proc = run_bench("history", str(one), "--fail-on", "regression")
    assert proc.returncode == 0 and "insufficient data" in proc.stdout


def test_a_step_the_machine_explains_is_machine_drift_not_a_regression(tmp_path):
    # The figure fell 20% at the ninth commit and the machine's canary fell as much: drift, exit 0; --strict 1.
    root = _history(tmp_path, [1.0] * 8 + [0.8] * 6, canary=[1.0] * 8 + [0.8] * 6)
    proc = run_bench("history", str(root), "--fail-on", "regression")
    assert proc.returncode == 0 and "machine-drift" in proc.stdout and "machine %" in proc.stdout, proc.stdout
    assert "-20" in proc.stdout.split("machine-drift")[-1]  # the canary's own change is shown beside it
    assert run_bench("history", str(root), "--fail-on", "regression", "--strict").returncode == 1
    # The same step on a machine whose canary held still is a regression.
    steady = _history(tmp_path / "steady", [1.0] * 8 + [0.8] * 6, canary=[1.0] * 14)
    proc = run_bench("history", str(steady), "--fail-on", "regression")
    assert proc.returncode == 1 and "machine-drift" not in proc.stdout, proc.stdout
    # The same step where the canary changed dtype (bf16 to fp32: a CPU without native bf16 once took bf16)
    # says nothing of the machine: a regression, in history and in check.
    switched = _history(tmp_path / "switched", [1.0] * 8 + [0.8] * 6, canary=[1.0] * 8 + [0.8] * 6)
    for run in sorted(switched.iterdir())[8:]:
        meta = json.loads((run / "run.json").read_text())
        meta["canary"] = {k: {**v, "dtype": "float32"} for k, v in meta["canary"].items()}
        (run / "run.json").write_text(json.dumps(meta))
    proc = run_bench("history", str(switched), "--fail-on", "regression")
    assert proc.returncode == 1 and "machine-drift" not in proc.stdout, proc.stdout
    runs = sorted(switched.iterdir())
    proc = run_bench("check", "--baseline", str(runs[7]), str(runs[8]))
    assert proc.returncode == 1 and "machine-drift" not in proc.stdout, proc.stdout


def test_check_says_machine_drift_when_the_canary_moved_as_much(tmp_path):
    root = _history(tmp_path, [1.0] + [0.75], canary=[1.0, 0.76])
    baseline, candidate = sorted(root.iterdir())
    proc = run_bench("check", "--baseline", str(baseline), str(candidate))
    assert proc.returncode == 0 and "machine-drift" in proc.stdout and "-24" in proc.stdout, proc.stdout
    assert run_bench("check", "--baseline", str(baseline), str(candidate), "--strict").returncode == 1
    # A slowdown twice the machine's is still a regression, with the machine's share said.
    root = _history(tmp_path / "more", [1.0] + [0.6], canary=[1.0, 0.8])
    baseline, candidate = sorted(root.iterdir())
    proc = run_bench("check", "--baseline", str(baseline), str(candidate))
    assert proc.returncode == 1 and "regression" in proc.stdout, proc.stdout


def test_history_reads_what_the_full_reader_reads(tmp_path):
    """The light reader (read_record) and load_run agree on a real run: case labels, values, repetitions."""
    from bench.analysis.compare import case_rows
    from bench.analysis.history import read_record
    from bench.analysis.stats import case_values
    from bench.store.runs import load_run

    root = _history(tmp_path, [1.0])
    (run_dir,) = list(root.iterdir())
    record, run = read_record(run_dir), load_run(run_dir)
    rows = case_rows(run)
    from bench.core.caseid import case_label

    assert [case_label(r) for r in record.rows] == [case_label(r) for _, r in rows.iterrows()]
    assert [r["decode_tok_s"] for r in record.rows] == pytest.approx(list(rows["decode_tok_s"]))
    case = rows["case"].iloc[0]
    assert record.samples[str(case)]["decode_tok_s"] == pytest.approx(list(case_values(run, case, "decode_tok_s")))
    (run_dir / "samples.csv").write_text((run_dir / "samples.csv").read_text().replace(",", ",inf,", 1))
    from bench.core.errors import BadInput

    with pytest.raises(BadInput):
        read_record(run_dir)


def test_order_is_the_commits_not_the_directories_and_bad_runs_are_skipped(tmp_path):
    root = _history(tmp_path, [1.0] * 8 + [0.85] * 6)
    runs = sorted(root.iterdir())
    for i, run in enumerate(runs):  # directory names now run against the commit order
        run.rename(root / f"tmp-{i}")
    for i in range(len(runs)):
        (root / f"tmp-{i}").rename(root / f"2026{(13 - i) // 28 + 1:02d}{(13 - i) % 28 + 1:02d}T000000Z-ci-quick")
    newest = sorted(root.iterdir())[0]  # the last commit, in the first directory
    meta = json.loads((newest / "run.json").read_text())
    del meta["fingerprint"]["git"]  # a run without a commit: ordered by its start, here after every commit
    meta["start"] = "2026-06-01T00:00:00+00:00"
    (newest / "run.json").write_text(json.dumps(meta))
    future = root / "20270101T000000Z-ci-quick"
    shutil.copytree(newest, future)
    results = pd.read_csv(future / "results.csv")
    results["schema_version"] = 99
    results.to_csv(future / "results.csv", index=False)
    broken = root / "20270102T000000Z-ci-quick"
    shutil.copytree(newest, broken)
    (broken / "results.csv").write_text((broken / "results.csv").read_text()[:-40])  # truncated
    proc = run_bench("history", str(root), "--fail-on", "regression")
    assert proc.returncode == 1 and "0007abcdef..0008abcdef" in proc.stdout, proc.stdout + proc.stderr
    assert "read 14 runs" in proc.stdout and "2 unreadable" in proc.stdout, proc.stdout
    assert "schema version" in proc.stderr and "truncated" in proc.stderr, proc.stderr


def test_runs_made_outside_a_checkout_are_ordered_by_time_and_named_by_run(tmp_path):
    """No commit in run.json (bench installed from a wheel): the series are ordered by start time and say so,
    a change point names its runs (not '-..-'), and the trend page's axis says runs, with ticks; an output
    that cannot be written is one line before any work."""
    root = _history(tmp_path, [1.0] * 8 + [0.85] * 6, commits=False)
    out = tmp_path / "trend.html"
    proc = run_bench("history", str(root), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "ordered by run, by start time (the runs name no commit" in proc.stdout
    assert "-..-" not in proc.stdout and "20260108T000000Z-ci-quick..20260109T000000Z-ci-quick" in \
        " ".join(proc.stdout.split()).replace(" ", ""), proc.stdout
    page = out.read_text()
    assert "run, by start time" in page and ">commit (oldest first)<" not in page and "01-09 00:00" in page
    for bad in ("/proc/x.html", str(tmp_path)):
        proc = run_bench("history", str(root), "-o", bad)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert proc.stdout == "", proc.stdout  # said before reading a single run
