"""The regression gate: its rule on hand-made repetitions, and the real CLI on simulated runs (exact numbers)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis.stats import judge
from tests.helpers import run_bench, slowed

SIM = ["--engine", "simulated", "--set", "min_seconds=0", "--set", "idle_seconds=0", "--set", "batch_size=1,4",
       "--set", "output_len=8", "--set", "input_len=32"]


def test_rule_with_few_repetitions_needs_no_overlap():
    base = np.array([100.0, 101.0, 99.0])
    assert judge(base, base * 0.5, +1, 10, 0.01)[0] == "regression"  # 2x slower, 3 vs 3
    assert judge(base[:2], base[:2] * 0.5, +1, 10, 0.01)[0] == "regression"  # 2 vs 2 can fire too
    assert judge(base, np.array([70.0, 75.0, 99.5]), +1, 10, 0.01)[0] == "inconclusive"  # overlaps
    assert judge(base, base * 0.95, +1, 10, 0.01)[0] == "ok"  # inside the tolerance never fails
    assert judge(base, base * 1.5, +1, 10, 0.01)[0] == "ok"  # faster
    latency = np.array([10.0, 10.2, 9.9])
    assert judge(latency, latency * 1.3, -1, 10, 0.01)[0] == "regression"  # lower is better


def test_rule_with_five_or_more_repetitions_uses_mann_whitney():
    rng = np.random.default_rng(0)
    base = 100 + rng.normal(0, 1, 8)
    verdict, worse, p, note = judge(base, base * 0.8, +1, 10, 0.01)
    assert verdict == "regression" and p < 0.01 and worse == pytest.approx(20, abs=0.5)
    noisy = np.array([60.0, 140.0, 62.0, 138.0, 61.0, 139.0])
    verdict, _, p, note = judge(np.full(6, 100.0), noisy, +1, 10, 0.01)
    assert verdict in ("ok", "inconclusive") and "min_reps" in note or verdict == "ok"


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    proc = run_bench("run", "--out", str(out), *SIM, "--set", "min_reps=3")
    assert proc.returncode == 0, proc.stderr
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_identical_runs_pass_and_a_2x_slowdown_fails(sim_run, tmp_path):
    proc = run_bench("check", "--baseline", str(sim_run), str(slowed(sim_run, tmp_path / "same", 1.0)))
    assert proc.returncode == 0 and "ok:" in proc.stdout, proc.stdout + proc.stderr
    slow = slowed(sim_run, tmp_path / "slow", 0.5)
    proc = run_bench("check", "--baseline", str(sim_run), str(slow))
    assert proc.returncode == 1, proc.stdout
    assert "regression" in proc.stdout and "decode_tok_s" in proc.stdout and "every candidate repetition" in proc.stdout
    wide = run_bench("check", "--baseline", str(sim_run), str(slow), "--wide", env={"COLUMNS": "400"}).stdout
    assert "worse by 100.0% (every candidate repetition worse than every baseline one)" in wide
    assert run_bench("check", "--baseline", str(sim_run), str(slow), "--tolerance", "150%").returncode == 0
    faster = slowed(sim_run, tmp_path / "fast", 2.0)
    assert run_bench("check", "--baseline", str(sim_run), str(faster)).returncode == 0


def test_an_inconsistent_change_is_inconclusive_and_fails_only_when_strict(sim_run, tmp_path):
    odd = slowed(sim_run, tmp_path / "odd", 1.0, spread=[0.7, 0.75, 1.01])  # median 25% slower, one rep faster
    proc = run_bench("check", "--baseline", str(sim_run), str(odd), "--metric", "decode_tok_s")
    assert proc.returncode == 0, proc.stdout
    assert "inconclusive" in proc.stdout and "--set min_reps=6" in proc.stdout  # 3 a side now
    strict = run_bench("check", "--baseline", str(sim_run), str(odd), "--metric", "decode_tok_s", "--strict")
    assert strict.returncode == 1


@pytest.mark.parametrize("flag", [["--tolerance", "nan"], ["--tolerance", "-3"], ["--tolerance", "abc"],
                                  ["--tolerance", "decode_tok_s=inf"], ["--tolerance", "nosuch=5"],
                                  ["--alpha", "5"], ["--alpha", "0"], ["--alpha", "nan"], ["--metric", "mbu"]])
def test_bad_gate_settings_are_exit_2(sim_run, flag):
    proc = run_bench("check", "--baseline", str(sim_run), str(sim_run), *flag)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_percent_sign_is_accepted(sim_run, tmp_path):
    same = slowed(sim_run, tmp_path / "same", 1.0)
    proc = run_bench("check", "--baseline", str(sim_run), str(same), "--tolerance", "10%",
                     "--tolerance", "ttft_ms_p50=5%")
    assert proc.returncode == 0, proc.stderr


def test_a_results_root_is_a_pooled_history(sim_run, tmp_path):
    """--baseline ROOT pools the newest runs on the candidate's hardware; the candidate itself never counts."""
    root = tmp_path / "history"
    root.mkdir()
    for i in range(3):
        shutil.copytree(sim_run, root / f"{sim_run.name}-{i}")
    proc = run_bench("check", "--baseline", str(root), str(sim_run), "--history", "2")
    assert proc.returncode == 0 and "ok:" in proc.stdout, proc.stdout + proc.stderr
    slow = slowed(sim_run, tmp_path / "slow", 0.8)  # 25% slower
    proc = run_bench("check", "--baseline", str(root), str(slow), "--metric", "decode_tok_s")
    assert proc.returncode == 1 and "decode_tok_s" in proc.stdout, proc.stdout
    assert "9/3" in proc.stdout  # 3 runs x 3 repetitions pooled against the candidate's 3
    assert run_bench("check", "--baseline", str(root), str(slow), "--history", "0").returncode == 2
    # A newer run of another workload in the root is not history: it shares no case with the candidate.
    other = root / "29991231T000000Z-h-latency"
    shutil.copytree(sim_run, other)
    results = pd.read_csv(other / "results.csv")
    results["workload"] = "latency"
    results.to_csv(other / "results.csv", index=False)
    proc = run_bench("check", "--baseline", str(root), str(slow), "--metric", "decode_tok_s", "--history", "1")
    assert proc.returncode == 1 and "3/3" in proc.stdout, proc.stdout + proc.stderr
    # The candidate as its own baseline gates nothing: bad input.
    proc = run_bench("check", "--baseline", str(slow), str(slow))
    assert proc.returncode == 2 and "candidate run itself" in proc.stderr


def test_other_hardware_warns_or_with_require_same_hardware_fails(sim_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(sim_run, other)
    results = pd.read_csv(other / "results.csv")
    results["device_name"] = "Some Other CPU"
    results.to_csv(other / "results.csv", index=False)
    proc = run_bench("check", "--baseline", str(other), str(sim_run))
    assert proc.returncode == 0 and "differs from the candidate in device" in proc.stderr
    strict = run_bench("check", "--baseline", str(other), str(sim_run), "--require-same-hardware")
    assert strict.returncode == 2 and "Some Other CPU" in strict.stderr


def test_the_ci_template_runs_the_commands_these_tests_run(sim_run, tmp_path):
    """Every `bench` command in examples/github-actions.yml, run for real on a history of simulated runs."""
    import re
    import shlex

    from tests.helpers import ROOT

    text = (ROOT / "examples" / "github-actions.yml").read_text()
    commands = [line.strip() for line in text.splitlines() if re.match(r"\s*(run: )?bench ", line)]
    assert {shlex.split(c.removeprefix("run: "))[1] for c in commands} >= {"run", "check", "report"}
    history = tmp_path / "results" / "history"
    history.mkdir(parents=True)
    for i in range(2):
        shutil.copytree(sim_run, history / f"{sim_run.name}-{i}")
    for command in commands:
        args = shlex.split(command.removeprefix("run: ").replace('"$new"', str(history / f"{sim_run.name}-1")))[1:]
        if args[0] == "run":
            args += SIM  # the template's workload, on the simulated engine to keep this test fast
        proc = run_bench(*args, cwd=tmp_path)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)


def _quant_run(tmp_path, name: str, decode: dict[str, float], quant_column: bool = True) -> str:
    """A run of one shape at two weight formats (none, int4): same model, dtype, batch and lengths."""
    run = tmp_path / f"20260101T00000{len(name)}Z-{name}-edge"
    run.mkdir(parents=True)
    base = {"schema_version": 1, "run_id": run.name, "workload": "edge", "model": "qwen2.5-0.5b", "engine": "transformers",
            "device_name": "cpu", "dtype": "bfloat16", "batch_size": 1, "input_len": 64, "output_len": 16,
            "status": "ok", "repetitions": 3}
    rows, samples = [], []
    for case, (quant, tok_s) in enumerate(decode.items()):
        rows.append({**base, "case": case, "decode_tok_s": tok_s, **({"quant": quant} if quant_column else {})})
        samples += [{"run_id": run.name, "case": case, "repetition": i, "decode_tok_s": tok_s * f}
                    for i, f in enumerate((0.99, 1.0, 1.01))]
    pd.DataFrame(rows).to_csv(run / "results.csv", index=False)
    pd.DataFrame(samples).to_csv(run / "samples.csv", index=False)
    return str(run)


def test_cases_that_differ_only_in_a_parameter_are_never_pooled(tmp_path):
    """quant none and int4 share model, dtype, batch and lengths: a 20% slowdown of the bf16 case is a
    regression of that case, not hidden in a baseline pooled with the int4 one (whose median is far lower)."""
    from bench.analysis.compare import compare_table
    from bench.analysis.gate import check
    from bench.store.runs import load_run

    before = load_run(_quant_run(tmp_path, "before", {"none": 10.0, "int4": 3.0}))
    after = load_run(_quant_run(tmp_path, "after", {"none": 8.0, "int4": 3.0}))
    findings = {(f.case, f.metric): f for f in check(before, after, {})}
    none = findings[("edge qwen2.5-0.5b bfloat16 bs=1 in=64 out=16", "decode_tok_s")]
    int4 = findings[("edge qwen2.5-0.5b bfloat16 bs=1 in=64 out=16 int4", "decode_tok_s")]
    assert none.verdict == "regression" and none.baseline == 10.0 and none.worse_pct == pytest.approx(20)
    assert int4.verdict == "ok" and int4.baseline == 3.0
    table = compare_table([before, after], ["decode_tok_s"])
    assert list(table["quant"]) == ["none", "int4"] and list(table["decode_tok_s x1/0"]) == [0.8, 1.0]
    # A run written before the quant column existed is bf16 weights: it matches the new run's none case.
    old = load_run(_quant_run(tmp_path, "old", {"none": 10.0}, quant_column=False))
    table = compare_table([old, after], ["decode_tok_s"])
    assert table["decode_tok_s x1/0"].tolist()[0] == 0.8
    assert "quant" not in compare_table([old, old], ["decode_tok_s"]).columns  # every row at the default


def test_an_older_prefix_reuse_run_takes_its_prefix_from_run_json(tmp_path):
    """A run written before prefix_len and reuse were columns: run.json's workload gave one prefix_len, and
    only the reusing case of a pair has a ttft_speedup."""
    import json

    from bench.core.caseid import param_text
    from bench.store.runs import load_run, with_case_params

    run = tmp_path / "20260101T000000Z-h-prefix-reuse"
    run.mkdir()
    base = {"schema_version": 1, "workload": "prefix-reuse", "model": "llama-3.1-8b", "status": "ok", "batch_size": 1,
            "input_len": 8256, "output_len": 16, "params": 8.03e9, "engine": "transformers"}
    pd.DataFrame([{**base, "case": 0, "ttft_ms_p50": 254.0}, {**base, "case": 1, "ttft_ms_p50": 26.0,
                                                               "ttft_speedup": 9.77}]).to_csv(run / "results.csv",
                                                                                              index=False)
    (run / "run.json").write_text(json.dumps({"workload": {"name": "prefix-reuse", "kind": "prefix-reuse", "params": {
        "prefix_len": [8192], "reuse": [False, True], "quant": "none"}}}))
    loaded = load_run(run)
    filled = with_case_params(loaded, loaded.results)
    assert list(filled["prefix_len"]) == ["8192", "8192"] and list(filled["reuse"]) == ["false", "true"]
    assert [param_text(v) for v in (True, "True", 8192.0, np.int64(3), "int4", float("nan"))] == \
        ["true", "true", "8192", "3", "int4", ""]
    assert param_text(1048576.0) != param_text(1048580)  # every digit counts: two contexts, two cases
    # So kv-reuse (prefix_len >= 1024) is answered by it, as by a run that wrote the columns.
    from bench.analysis.claims import load_claims
    from bench.analysis.verify import verify_claim

    (kv_reuse,) = [c for c in load_claims() if c.id == "kv-reuse"]
    verdict = verify_claim(kv_reuse, [loaded])
    assert verdict.verdict == "does not hold" and verdict.measured == 9.77 and "prefix=8192 reused" in verdict.conditions


def test_one_card_and_two_cards_are_different_cases(tmp_path):
    from bench.analysis.compare import compare_table
    from bench.store.runs import load_run

    runs = []
    for name in ("a", "bb"):
        path = Path(_quant_run(tmp_path, name, {"none": 10.0, "int4": 3.0}))
        results = pd.read_csv(path / "results.csv")
        results["quant"], results["device_count"] = "none", [1, 2]
        results.to_csv(path / "results.csv", index=False)
        runs.append(load_run(path))
    table = compare_table(runs, ["decode_tok_s"])
    assert list(table["device_count"]) == ["1", "2"] and list(table["decode_tok_s [1]"]) == [10.0, 3.0]


def test_tok_s_per_user_is_judged_on_its_repetitions(sim_run, tmp_path):
    """decode_tok_s_per_user has no samples.csv column of its own: its repetitions are decode tok/s's, in
    proportion (as verify's intervals take them), so it is judged like every other figure, never 'reps 0/0'."""
    from bench.analysis.gate import gate

    result = gate([str(sim_run)], str(slowed(sim_run, tmp_path / "slow", 0.5)), [], 0.01, None, 1, False)
    per_user = [f for f in result.findings if f.metric == "decode_tok_s_per_user"]
    assert per_user and all(f.reps == (3, 3) and f.rule and f.verdict == "regression" for f in per_user), per_user


def test_one_repetition_a_side_is_inconclusive_for_every_figure(tmp_path):
    """A 10% slowdown seen in one repetition against one: no figure can call that consistent, decode tok/s no
    more than tok/s per user (one was a regression, the other inconclusive)."""
    out = tmp_path / "one"
    assert run_bench("run", "--out", str(out), *SIM, "--set", "min_reps=1").returncode == 0
    (run,) = list(out.iterdir())
    proc = run_bench("check", "--baseline", str(run), str(slowed(run, tmp_path / "slow", 0.9)), "--tolerance", "5",
                     "--wide", env={"COLUMNS": "300"})
    assert proc.returncode == 0, proc.stdout
    assert "regression" not in proc.stdout.split("inconclusive change(s)")[0]
    assert "one repetition cannot show a consistent change" in proc.stdout
    narrow = run_bench("check", "--baseline", str(run), str(tmp_path / "slow"), "--tolerance", "5",
                       env={"COLUMNS": "80"}).stdout  # the last line is long: wrapped at a word, not cut in one
    assert all(len(line) <= 80 for line in narrow.splitlines()), narrow
    assert "inconclusive" in narrow.split()[-1] or "inconclusive" in narrow.splitlines()[-1], narrow


def test_a_required_improvement_is_not_explained_away_by_the_machine(sim_run, tmp_path):
    """--tolerance -5%: the same run again improved nothing. Its speed may be the machine's (the candidate's
    canary says it ran 10% slower) but its peak memory is not the machine's speed: that fails the gate. The
    table says shortfalls from the target, not negative slowdowns."""
    import json

    same = slowed(sim_run, tmp_path / "same", 1.0)
    for run, speed in ((sim_run, 1.0), (same, 0.9)):
        meta = json.loads((run / "run.json").read_text())
        taken = {"bandwidth_gb_s": 20.0 * speed, "tflops": 0.5 * speed, "seconds": 1.0}
        meta["canary"] = {"start": taken, "end": taken}
        (run / "run.json").write_text(json.dumps(meta))
    proc = run_bench("check", "--baseline", str(sim_run), str(same), "--tolerance", "-5%", "--wide",
                     env={"COLUMNS": "300"})
    assert proc.returncode == 1, proc.stdout
    regressions = proc.stdout.split("regression(s)")[1].split("change(s) the machine explains")[0]
    assert "peak_mem_gb" in regressions, proc.stdout
    said = " ".join(proc.stdout.split())
    assert "smallest shortfall (%) from the required 5% improvement" in said and "smallest slowdown" not in said
