"""The front door, as a new user meets it: every reader finds every run and says what it read, a gate that
compared nothing fails, the report says what the terminal says, and big or bad input gets one clear line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import FAST, run_bench

SIM = ["--engine", "simulated", *FAST]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A ./results as people have it: a plain run, a suite's root inside the root, a reference/ sub-root."""
    home = tmp_path_factory.mktemp("home")
    root = home / "results"
    for out, extra in ((root, []), (root / "latency-claims", ["--workload", "latency", "--quick"]),
                       (root / "reference" / "Some-Card", ["--set", "batch_size=1,2"])):
        proc = run_bench("run", "--out", str(out), *SIM, *extra)
        assert proc.returncode == 0, proc.stderr
    return home


def test_verify_and_report_read_results_at_any_depth_by_default(results):
    """./results at any depth, but not results/reference (a checkout's committed runs of other machines: a
    new user's first verdicts are their own machine's) unless named."""
    proc = run_bench("verify", cwd=results)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("read 2 runs under results, 1 machine"), first
    assert "results/reference left out (runs of other machines: name it to read them)" in first, first
    report = run_bench("report", "-o", "r.html", cwd=results)
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith("read 2 runs under results")
    named = run_bench("verify", "results", cwd=results)
    assert named.stdout.startswith("read 3 runs under results, 1 machine (") and "left out" not in named.stdout
    # The same run named twice, or a root and a run inside it: one run.
    inner = next((results / "results" / "latency-claims").glob("*/results.csv")).parent
    twice = run_bench("verify", "results", str(inner), str(inner / "results.csv"), cwd=results)
    assert twice.returncode == 0 and twice.stdout.startswith("read 3 runs"), twice.stdout[:200]


def test_a_root_with_no_run_and_an_unreadable_run(results, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_bench("verify", str(empty))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "no runs in it" in proc.stderr
    copy = tmp_path / "results"
    shutil.copytree(results / "results", copy)
    broken = next(copy.glob("*/results.csv"))
    df = pd.read_csv(broken, dtype=str, keep_default_na=False)
    df.loc[0, "decode_tok_s"] = "fast"  # one unreadable cell
    df.to_csv(broken, index=False)
    proc = run_bench("compare", str(copy))
    assert proc.returncode == 0, proc.stderr
    assert f"skipped {broken.parent}" in proc.stderr and proc.stdout.startswith("read 2 runs")


def test_a_gate_that_compared_nothing_fails(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_bench("run", "--out", str(a), *SIM, "--set", "batch_size=1").returncode == 0
    assert run_bench("run", "--out", str(b), *SIM, "--set", "batch_size=2").returncode == 0
    (run_a,), (run_b,) = list(a.iterdir()), list(b.iterdir())
    proc = run_bench("check", "--baseline", str(run_a), str(run_b))
    assert proc.returncode == 2 and "share no case" in proc.stderr, proc.stdout + proc.stderr
    # Without samples.csv no metric has repetitions on either side: nothing could be judged.
    for run in (run_a, run_b):
        (run / "samples.csv").unlink()
    b2 = tmp_path / "b2"
    shutil.copytree(run_a, b2 / run_a.name)
    proc = run_bench("check", "--baseline", str(run_a), str(b2 / run_a.name))
    assert proc.returncode == 2 and "per-repetition values" in proc.stderr, proc.stderr
    assert "min_reps" not in proc.stdout + proc.stderr  # no advice that cannot help


def test_a_negative_tolerance_requires_an_improvement(tmp_path):
    a = tmp_path / "a"
    for _ in range(2):
        assert run_bench("run", "--out", str(a), *SIM, "--set", "min_reps=5").returncode == 0
    first, second = sorted(a.iterdir())
    assert run_bench("check", "--baseline", str(first), str(second), "--tolerance", "5%").returncode == 0
    proc = run_bench("check", "--baseline", str(first), str(second), "--tolerance", "-5%")
    assert "expected one argument" not in proc.stderr and proc.returncode == 1, proc.stdout + proc.stderr


@pytest.mark.parametrize(("args", "said"), [
    (["--set", "model=" + "m" * 100_000], "characters long"),
    (["--set", "input_len=" + "9" * 100_000], "characters long"),
    (["--set", "input_len=99999999999"], "must be <="),
    (["--set", "batch_size=9" + "0" * 20], "out of range"),
    (["--set", "batch_size=" + "9" * 12], "must be <="),
    (["--set", "batchsize=2"], "did you mean batch_size"),
    (["--workload", "throughtput"], "did you mean throughput"),
    (["--model", "qwen2.5-0.5"], "qwen2.5-0.5b"),
    (["--label", "x" * 500], "at most 80"),
    (["--label", "x" * 5000], "at most 1000"),
])
def test_big_and_bad_input_is_one_short_line(args, said):
    proc = run_bench("run", "--dry-run", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[:500]
    assert said in lines[0] and len(lines[0]) < 400, lines[0][:400]


def test_answers_lead_the_table_and_compare_says_better_or_worse(tmp_path):
    proc = run_bench("run", "--workload", "long-context", "--quick", "--out", str(tmp_path / "lc"), *SIM)
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.split("long-context on")[0]
    assert "answer tiny:" in head and "predicted max context" in head
    a = tmp_path / "a"
    assert run_bench("run", "--out", str(a), *SIM).returncode == 0
    assert run_bench("run", "--out", str(a), *SIM, "--set", "sim_kv_tokens=0").returncode == 0
    first, second = sorted(a.iterdir())
    proc = run_bench("compare", str(first), str(second))
    assert proc.returncode == 0 and "same" in proc.stdout, proc.stdout


def test_the_report_says_what_the_terminal_says(results):
    html = (results / "r.html")
    if not html.exists():
        assert run_bench("report", "-o", "r.html", cwd=results).returncode == 0
    text = html.read_text()
    assert 'id="warnings"' in text and "few-reps" in text  # noise is said, not hidden
    assert "decode_tok_s (tok/s)" in text and "peak_mem_gb (GB)" in text  # units on every column
    # Nothing measured (the simulated engine answers no claim): one line, after the measured results.
    assert "None of the 19 claims is answered" in text and 'id="verdicts"' not in text
    assert text.index('id="cases"') < text.index("None of the 19 claims")
    assert "2<sup>" not in text and "2^{" not in text  # batch sizes as numbers
