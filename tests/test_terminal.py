"""What a person sees in an 80-column terminal: no table cell is cut, no line is wider than the terminal."""

from __future__ import annotations

import pandas as pd

from tests.helpers import run_bench, single_run_dir

NARROW = {"COLUMNS": "80"}


def assert_fits(text: str) -> None:
    assert "…" not in text, text  # rich marks a cut cell with an ellipsis
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


def test_run_compare_check_and_verify_fit_80_columns(tmp_path):
    out = tmp_path / "results"
    args = ("run", "--engine", "simulated", "--workload", "latency", "--set", "batch_size=1,8,32",
            "--set", "model=qwen2.5-0.5b,llama-3.2-1b", "--set", "min_reps=3", "--set", "min_seconds=0",
            "--set", "idle_seconds=0", "--out")
    first = run_bench(*args, str(out / "a"), env=NARROW)
    assert first.returncode == 0, first.stderr
    assert_fits(first.stdout)
    assert "TTFT p50 ms" in first.stdout and "qwen2.5-0.5b" in first.stdout and "llama-3.2-1b" in first.stdout
    wide = run_bench(*args, str(out / "b"), "--wide", env={"COLUMNS": "200"})
    assert wide.returncode == 0 and "prefill tok/s" in wide.stdout and "prefill" not in first.stdout  # every column
    a, b = single_run_dir(out / "a"), single_run_dir(out / "b")
    for cmd in (["compare", str(a), str(b)], ["check", "--baseline", str(a), str(b)], ["verify", str(a)]):
        proc = run_bench(*cmd, env=NARROW)
        assert proc.returncode == 0, proc.stderr
        assert_fits(proc.stdout)
    # A failing check: its regressions, its rule and the per-case floors fit too, and every metric name is whole.
    samples = pd.read_csv(b / "samples.csv")
    samples["decode_tok_s"] *= 0.5
    samples.to_csv(b / "samples.csv", index=False)
    proc = run_bench("check", "--baseline", str(a), str(b), env=NARROW)
    assert proc.returncode == 1 and "regression" in proc.stdout, proc.stdout + proc.stderr
    assert_fits(proc.stdout)
    assert "decode_tok_s" in proc.stdout.split("smallest slowdown")[1]
    # verify on real-looking rows: every claim id whole in its cell.
    root = tmp_path / "root" / "20260101T000000Z-h-latency"
    root.mkdir(parents=True)
    pd.DataFrame([{"schema_version": 1, "workload": "latency", "case": 0, "status": "ok", "model": "qwen2.5-0.5b",
                   "params": 4.9e8, "engine": "transformers", "device_name": "Intel(R) Xeon(R) Processor",
                   "batch_size": 1, "input_len": 128, "output_len": 32, "itl_ms_p99": 111.3}]).to_csv(
        root / "results.csv", index=False)
    proc = run_bench("verify", str(root.parent), env=NARROW)
    assert_fits(proc.stdout)
    for claim in ("big-card-long-context", "distilled-fits-small", "nvidia-weak-spots"):
        assert claim in proc.stdout
    assert "edge-latency-10ms: figure checked on Intel(R) Xeon(R) Processor" in " ".join(proc.stdout.split())


def test_lists_and_plans_fit_80_columns(tmp_path):
    """bench list and a --dry-run plan: every value whole (a claim id, a model name, a weight format)."""
    for what in ("workloads", "models", "claims", "engines"):
        proc = run_bench("list", what, env=NARROW)
        assert proc.returncode == 0, proc.stderr
        assert_fits(proc.stdout)
    assert "distilled-fits-small" in run_bench("list", "workloads", env=NARROW).stdout
    # At 80 columns workloads and claims are lists wrapped at words: every word of every description whole,
    # in about half the lines the table took (159), and every model of a claim's conditions whole.
    from bench.analysis.claims import load_claims
    from bench.spec.workload import available_workloads, load_workload

    listed = run_bench("list", "workloads", env=NARROW).stdout
    words = set(listed.split())
    assert len(listed.splitlines()) < 100
    for path in available_workloads().values():
        text = load_workload(str(path)).description if "suite" not in path.read_text()[:300] else ""
        assert not set(text.split()) - words, set(text.split()) - words
    claims = set(run_bench("list", "claims", env=NARROW).stdout.split())
    for claim in load_claims():
        models = claim.conditions.get("model", [])
        for model in models if isinstance(models, list) else [models]:
            assert any(model in w for w in claims), model
    for workload in ("edge", "prefix-reuse", "matmul"):
        proc = run_bench("run", "--workload", workload, "--dry-run", env=NARROW, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert_fits(proc.stdout)
    plan = run_bench("run", "--workload", "edge", "--dry-run", env=NARROW, cwd=tmp_path).stdout
    assert "gemma-2-2b" in plan and "int4" in plan and "every case:" in plan
