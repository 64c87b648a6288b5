"""Verdicts: each claim's conditions, uncertainty, scope, cross-machine ratios, suites and the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.analysis.claims import load_claims
from bench.analysis.verify import verify_claim
from bench.store.runs import Run
from tests.helpers import run_bench

CLAIMS = {c.id: c for c in load_claims()}
BASE = {"status": "ok", "device_name": "NVIDIA H200", "model": "llama-3.1-8b", "params": 8.03e9, "batch_size": 1,
        "input_len": 512, "output_len": 128, "engine": "transformers", "dtype": "bfloat16"}


def make_run(workload: str, rows: list[dict], samples: list[dict] | None = None, claims: list[str] | None = None,
             name: str | None = None) -> Run:
    results = pd.DataFrame([{**BASE, "workload": workload, "case": i, **r} for i, r in enumerate(rows)])
    return Run(name or workload, Path("."), results, pd.DataFrame(samples or []),
               {"workload": {"name": workload, "claims": claims or []}})


def test_every_claim_states_its_conditions():
    """Workloads, a model class that excludes the smoke-test model where a model runs, scope and hardware."""
    for claim in CLAIMS.values():
        assert claim.workloads and claim.scope, claim.id
        model_claim = claim.metric not in ("bandwidth_gb_s", "ridge_point", "memory_per_card_gb", "usd_per_mtok")
        if model_claim:
            cond = claim.conditions
            assert "model" in cond or "min_params" in cond, claim.id
    assert CLAIMS["long-reasoning"].conditions["min_output_len"] >= 1024
    assert CLAIMS["kv-reuse"].conditions["min_prefix_len"] >= 1024


def test_a_claim_needs_its_own_workload_model_class_and_lengths():
    edge = make_run("edge", [{"model": "llama-3.2-1b", "params": 1.24e9, "itl_ms_p99": 9.0}])
    v = verify_claim(CLAIMS["edge-latency-10ms"], [edge])
    assert v.verdict == "not measured" and "latency workload" in v.reason
    assert "bench run --workload latency --model qwen2.5-0.5b" in v.reason  # the command that measures it
    latency = make_run("latency", [{"itl_ms_p99": 21.0}])
    assert verify_claim(CLAIMS["edge-latency-10ms"], [edge, latency]).verdict == "does not hold"
    # A long prefill is not a long answer.
    short = make_run("long-generation", [{"e2e_ms_p50": 17000.0, "output_len": 16}])
    v = verify_claim(CLAIMS["long-reasoning"], [short])
    assert v.verdict == "not measured" and "output_len >= 1024" in v.reason and "runs have output_len 16" in v.reason
    long = make_run("long-generation", [{"e2e_ms_p50": 30000.0, "output_len": 2048}])
    assert verify_claim(CLAIMS["long-reasoning"], [long]).verdict == "holds"
    # A small model is not the model class of the claim.
    small = make_run("latency", [{"model": "toy-100m", "params": 1e8, "itl_ms_p99": 2.0}])
    v = verify_claim(CLAIMS["edge-latency-10ms"], [small])
    assert v.verdict == "not measured" and "params >= 4e+08" in v.reason
    # kv-reuse needs a long shared prefix.
    reuse = make_run("prefix-reuse", [{"prefix_len": 256, "input_len": 288, "ttft_speedup": 40.0}])
    v = verify_claim(CLAIMS["kv-reuse"], [reuse])
    assert v.verdict == "not measured" and "prefix_len >= 1024" in v.reason
    # A user's own workload file counts when it lists the claim; the tiny model never does.
    mine = make_run("my-latency", [{"itl_ms_p99": 8.0}], claims=["edge-latency-10ms"])
    assert verify_claim(CLAIMS["edge-latency-10ms"], [mine]).verdict == "holds"
    tiny = make_run("latency", [{"model": "tiny", "params": 1.05e7, "itl_ms_p99": 1.0}])
    v = verify_claim(CLAIMS["edge-latency-10ms"], [tiny])
    assert v.verdict == "not measured" and "tiny" in v.reason


def test_a_figure_inside_the_confidence_interval_is_inconclusive():
    """MBU 0.52 against a claimed 0.5: the 95% interval of three spread repetitions includes 0.5."""
    row = {"mbu": 0.52, "decode_tok_s": 52.0}
    spread = make_run("throughput", [row], [{"case": 0, "decode_tok_s": v} for v in (40.0, 52.0, 64.0)])
    v = verify_claim(CLAIMS["utilization-50"], [spread])
    assert v.verdict == "inconclusive"
    low, high = v.interval
    assert low < 0.5 < high and low == pytest.approx(0.52 - 4.3027 * 0.12 / 3 ** 0.5, rel=1e-3)
    assert "inside the 95% interval" in v.reason and "min_reps" in v.reason
    tight = make_run("throughput", [row], [{"case": 0, "decode_tok_s": v} for v in (51.9, 52.0, 52.1)])
    v = verify_claim(CLAIMS["utilization-50"], [tight])
    assert v.verdict == "holds" and v.interval[0] > 0.5
    assert v.run == "throughput" and v.conditions.startswith("case 0: throughput llama-3.1-8b")


def test_a_tail_latency_claim_gets_an_interval_from_each_repetitions_p99():
    """edge-latency-10ms reads ITL p99 (99% of token gaps inside 10 ms); samples.csv holds each repetition's p99."""
    row = {"itl_ms_p99": 9.5}
    spread = make_run("latency", [row], [{"case": 0, "itl_ms_p99": v} for v in (8.0, 9.5, 11.5)])
    v = verify_claim(CLAIMS["edge-latency-10ms"], [spread])
    assert v.verdict == "inconclusive" and v.interval[0] < 10 < v.interval[1]
    tight = make_run("latency", [row], [{"case": 0, "itl_ms_p99": v} for v in (9.4, 9.5, 9.6)])
    v = verify_claim(CLAIMS["edge-latency-10ms"], [tight])
    assert v.verdict == "holds" and v.interval[1] < 10


def test_scope_says_whether_the_measurement_is_on_the_claimed_hardware():
    on_h200 = make_run("latency", [{"itl_ms_p99": 21.0}])
    v = verify_claim(CLAIMS["edge-latency-10ms"], [on_h200])
    assert v.where == "figure checked on NVIDIA H200, not the claimed hardware"
    ascend = make_run("latency", [{"itl_ms_p99": 8.0, "device_name": "Huawei Ascend 910B"}])
    assert verify_claim(CLAIMS["edge-latency-10ms"], [ascend]).where.startswith("on the claimed hardware")
    assert verify_claim(CLAIMS["long-reasoning"], [make_run("long-generation", [
        {"e2e_ms_p50": 30000.0, "output_len": 2048}])]).where.startswith("general claim")


def _root(tmp_path: Path, name: str, device: str, tok_s: list[float]) -> Path:
    run = tmp_path / name / f"20260101T000000Z-{name}-throughput"
    run.mkdir(parents=True)
    rows = [{**BASE, "schema_version": 1, "workload": "throughput", "case": i, "device_name": device,
             "batch_size": b, "decode_tok_s": t} for i, (b, t) in enumerate(zip((1, 8), tok_s))]
    pd.DataFrame(rows).to_csv(run / "results.csv", index=False)
    return tmp_path / name


def test_cross_machine_ratio_claims_from_two_roots(tmp_path):
    """groq-10x from two results roots: the first is the claimed system; case by case on shared cases."""
    lpu = _root(tmp_path, "lpu", "Groq LPU", [520.0, 2000.0])
    gpu = _root(tmp_path, "gpu", "NVIDIA H100", [40.0, 400.0])
    proc = run_bench("verify", str(lpu), str(gpu), "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(__import__("io").StringIO(proc.stdout)).set_index("claim")
    # 13x at batch 1 holds, 5x at batch 8 does not: the cases disagree.
    assert df.loc["groq-10x", "verdict"] == "inconclusive"
    assert "holds on 1 of 2 shared case(s)" in df.loc["groq-10x", "why"]
    assert "claimed system: Groq LPU" in df.loc["groq-10x", "why"]
    assert df.loc["groq-10x", "where"].startswith("on the claimed hardware")
    fast = _root(tmp_path, "lpu2", "Groq LPU", [520.0, 4400.0])
    proc = run_bench("verify", str(fast), str(gpu), "--format", "csv")
    df = pd.read_csv(__import__("io").StringIO(proc.stdout)).set_index("claim")
    assert df.loc["groq-10x", "verdict"] == "holds"
    proc = run_bench("verify", str(gpu), "--format", "csv")  # one machine: no ratio to take
    df = pd.read_csv(__import__("io").StringIO(proc.stdout)).set_index("claim")
    assert df.loc["groq-10x", "verdict"] == "not measured"
    assert "CLAIMED_ROOT REFERENCE_ROOT" in df.loc["groq-10x", "why"]


SUITE = """
name = "my-suite"
kind = "suite"
[[step]]
workload = "latency"
[step.params]
engine = "simulated"
batch_size = [1]
min_seconds = 0.0
[[step]]
workload = "throughput"
[step.cpu]
engine = "simulated"
batch_size = [1, 2]
input_len = [128]
output_len = [16]
[[step]]
workload = "power"
devices = ["cuda"]
"""


def test_a_users_suite_runs_every_step_into_one_root_then_verdicts_and_report(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    out = tmp_path / "results"
    proc = run_bench("run", "--workload", str(path), "--quick", "--set", "idle_seconds=0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    (root,) = [p for p in out.iterdir() if p.is_dir()]
    assert root.name.endswith("-my-suite")
    runs = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert [r.rsplit("-", 1)[1] for r in runs] == ["latency", "throughput"]
    assert "not on this device: power (runs on cuda only)" in proc.stderr
    assert (root / "report.html").is_file() and "claims on" in proc.stdout and "edge-latency-10ms" in proc.stdout
    throughput = pd.read_csv(root / runs[1] / "results.csv")
    assert list(throughput["batch_size"]) == [1, 2] and set(throughput["engine"]) == {"simulated"}
    # A root is accepted wherever runs are.
    for cmd in (["verify", str(root)], ["compare", str(root)], ["report", str(root), "-o", str(tmp_path / "r.html")]):
        assert run_bench(*cmd).returncode == 0


@pytest.mark.parametrize(("text", "message"), [
    ('name = "s"\nkind = "suite"\n', "at least one [[step]]"),
    ('kind = "suite"\n[[step]]\nworkload = "nope"\n', "unknown workload 'nope'"),
    ('kind = "suite"\n[[step]]\nworkload = "latency"\n[step.params]\nbatch_size = -1\n', "batch_size"),
    ('kind = "suite"\n[[step]]\nworkload = "latency"\nspeed = 3\n', "unknown key(s) speed"),
    ('kind = "suite"\nsteps = 3\n', "unknown key(s) in a suite: steps"),
])
def test_a_bad_suite_is_one_line_and_exit_2_before_any_work(tmp_path, text, message):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    proc = run_bench("run", "--workload", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_the_claims_suite_plans_every_claim_workload_for_this_device():
    proc = run_bench("run", "--workload", "claims", "--quick", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    for workload in ("membw", "matmul", "edge", "latency", "throughput", "prefix-reuse", "long-generation"):
        assert f"{workload}:" in proc.stdout
    assert "tiny" not in proc.stdout  # claims need real models at their real sizes
    needed = {w for c in CLAIMS.values() for w in c.workloads}
    assert needed <= {"membw", "matmul", "edge", "latency", "throughput", "prefix-reuse", "long-generation",
                      "long-context", "power", "soak"}


def test_the_report_links_each_measured_verdict_to_its_row(tmp_path):
    run = tmp_path / "root" / "20260101T000000Z-h-latency"
    run.mkdir(parents=True)
    pd.DataFrame([{**BASE, "schema_version": 1, "workload": "latency", "case": 0, "itl_ms_p99": 21.0}]).to_csv(
        run / "results.csv", index=False)
    out = tmp_path / "report.html"
    proc = run_bench("report", str(tmp_path / "root"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    row = next(line for line in text.split("<tr") if 'data-verdict="does not hold"' in line)
    assert "edge-latency-10ms" in row and "background:#f8d7da" in row
    assert '<a href="#case-20260101T000000Z-h-latency-0">' in row
    assert 'id="case-20260101T000000Z-h-latency-0"' in text


def test_the_prefix_reuse_speedup_has_an_interval_from_both_cases():
    """kv-reuse: 20x claimed; cold TTFT ~1000 ms, warm ~50 ms with a spread that leaves 20 inside the interval."""
    rows = [{"prefix_len": 1024, "input_len": 1056, "ttft_speedup": float("nan")},
            {"prefix_len": 1024, "input_len": 1056, "ttft_speedup": 20.5}]
    samples = [{"case": 0, "ttft_ms": v} for v in (990.0, 1000.0, 1010.0)] + \
              [{"case": 1, "ttft_ms": v} for v in (40.0, 50.0, 60.0)]
    v = verify_claim(CLAIMS["kv-reuse"], [make_run("prefix-reuse", rows, samples)])
    assert v.verdict == "inconclusive" and v.interval[0] < 20 < v.interval[1]
    assert (v.interval[0] * v.interval[1]) ** 0.5 == pytest.approx(1000 / 50)  # symmetric in log around the ratio
    tight = [{"case": 0, "ttft_ms": v} for v in (999.0, 1000.0, 1001.0)] + \
            [{"case": 1, "ttft_ms": v} for v in (30.0, 30.1, 30.2)]
    v = verify_claim(CLAIMS["kv-reuse"], [make_run("prefix-reuse", [rows[0], {**rows[1], "ttft_speedup": 33.2}],
                                                   tight)])
    assert v.verdict == "holds" and v.interval[0] > 20


def test_a_verdict_says_when_its_case_warned():
    """A figure measured while other processes used the machine still answers, and the verdict says so."""
    row = {"mbu": 0.62, "detail": "warning shared-device: other processes used 1.2 CPU cores; warning few-reps: 3",
           "warnings": "shared-device;few-reps"}
    v = verify_claim(CLAIMS["utilization-50"], [make_run("throughput", [row])])
    assert v.verdict == "holds" and "its case warned: shared-device" in v.reason and "few-reps" not in v.reason


def test_the_report_opens_with_the_verdicts_when_a_claim_is_measured():
    """A measured claim: the colour-coded verdict table, one row per claim, comes before any plot."""
    from bench.report.htmlreport import render

    run = make_run("membw", [{"model": "none", "bandwidth_gb_s": 3000.0, "device_name": "NVIDIA H100"}])
    text = render([run])
    assert text.index('id="verdicts"') < text.index('<h2 id="runs">Runs</h2>')
    assert text.count('class="verdict" data-verdict=') == len(CLAIMS)
    assert 'data-verdict="not measured" style="background:#eeeeee"' in text and "None of the" not in text


def test_a_verdict_takes_the_fastest_path_measured_and_says_which():
    """The same batch-1 case on transformers' loop and on vLLM (the claims suite runs both where vLLM is): the
    claim is answered from the faster, and the reason names it and the others."""
    claim = CLAIMS["edge-latency-10ms"]
    loop = make_run("latency", [{"itl_ms_p99": 14.0, "decode_path": "loop"}], name="loop")
    vllm = make_run("latency", [{"itl_ms_p99": 8.0, "engine": "vllm"}], name="vllm")
    v = verify_claim(claim, [loop, vllm])
    assert v.verdict == "holds" and v.measured == 8.0
    assert "fastest path measured, vllm (best per path: vllm 8, transformers loop 14)" in v.reason
    one = verify_claim(claim, [loop])
    assert "fastest path" not in one.reason  # one path: nothing to choose between


def test_a_suite_step_that_needs_an_optional_package_is_skipped_with_a_line(tmp_path):
    """The claims suite's vLLM steps where vLLM is not installed: planned out, said, never an error."""
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\nkind = "suite"\n[[step]]\nworkload = "quick"\n[step.params]\nengine = "simulated"\n'
                     '[[step]]\nworkload = "quick"\nrequires = "no_such_module_here"\n[step.params]\nengine = "vllm"\n')
    proc = run_bench("run", "--workload", str(suite), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert 'quick on vllm (no_such_module_here is not installed: pip install -e ".[no_such_module_here]")' \
        in " ".join(proc.stderr.split())
    suite.write_text('name = "s"\nkind = "suite"\n[[step]]\nworkload = "quick"\nrequires = "not a module"\n')
    proc = run_bench("run", "--workload", str(suite), "--dry-run")
    assert proc.returncode == 2 and "requires must name a Python module" in proc.stderr


def test_a_suite_says_each_verdict_when_its_step_ends_and_ctrl_c_keeps_them(tmp_path):
    """The claims a step answers are printed when it ends (matmul after membw answers memory-wall before the
    next step starts) and written to the root's verdicts.md; a Ctrl-C in a later step leaves them on screen and
    there."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT

    path = tmp_path / "suite.toml"
    path.write_text('name = "slow-suite"\nkind = "suite"\n[[step]]\nworkload = "membw"\n[step.params]\n'
                    'min_seconds = 0.2\n[[step]]\nworkload = "matmul"\n[step.params]\nmin_seconds = 0.2\n[[step]]\nworkload = "throughput"\n[step.params]\n'
                    'model = "tiny"\nbatch_size = [1, 2, 4, 8]\nmin_seconds = 30.0\n')
    out = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--workload", str(path), "--out", str(out),
                             "--set", "idle_seconds=0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    def memory_wall_holds() -> bool:
        return any(line.startswith("| memory-wall |") and "| holds |" in line
                   for p in out.glob("*/verdicts.md") for line in p.read_text().splitlines())

    while time.time() < deadline and not memory_wall_holds():
        time.sleep(0.1)  # the matmul step has ended: the third, long one is starting
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    (root,) = [p for p in out.iterdir() if p.is_dir()]
    assert "bench: interrupted" in stderr
    so_far = stdout.split("answered so far")[-1]
    assert "memory-wall" in so_far and "holds" in so_far, stdout
    assert memory_wall_holds()


def test_advice_says_when_its_command_cannot_answer_on_this_machine():
    """'measure with' never sends a user to a command their machine cannot answer without saying so: a power
    claim on a machine with no power sensor, a 93 GB model on 25 GB; and a condition no row has a value for
    says so rather than 'runs have batch_size ' with nothing after it."""
    cpu = make_run("throughput", [{"batch_size": 8, "energy_source": "none: no power sensor readable (no RAPL)"}])
    cpu.meta["fingerprint"] = {"device": {"memory_total_gb": 25.3}}
    v = verify_claim(CLAIMS["iluvatar-power"], [cpu])
    assert "bench run --workload power, on another machine: this one has no power sensor readable" in v.reason
    v = verify_claim(CLAIMS["groq-500-tps"], [cpu])
    assert "mixtral-8x7b's 16-bit weights alone are 93 GB and this one has 25 GB" in v.reason, v.reason
    v = verify_claim(CLAIMS["edge-latency-10ms"], [cpu])  # a latency claim: the same machine can answer it
    assert "on another machine" not in v.reason
    blank = make_run("latency", [{"batch_size": None, "itl_ms_p99": 5.0}])
    v = verify_claim(CLAIMS["edge-latency-10ms"], [blank])
    assert "runs have no batch_size value" in v.reason and "batch_size )" not in v.reason, v.reason


def test_a_power_claim_is_answered_by_the_soaks_sustained_figure_and_says_when_it_rests_on_a_peak():
    """iluvatar-power (<= 150 W a card): a few seconds of the power workload at 140 W would hold it, but a soak
    whose last third drew 165 W (the card warm, its clocks settled) is what answers a claim about a card under
    steady load; with no soak the verdict says it rests on a peak."""
    from bench.analysis.verify import verify_claim

    claim = CLAIMS["iluvatar-power"]
    power = make_run("power", [{"model": "llama-3.1-8b", "params": 8e9, "power_w_mean": 140.0}])
    soak = make_run("soak", [{"model": "llama-3.1-8b", "params": 8e9, "power_w_mean": 150.0,
                              "soak_sustained_power_w": 165.0, "measured_seconds": 600.0}])
    alone = verify_claim(claim, [power])
    assert alone.verdict == "holds" and "rests on a peak" in alone.reason
    both = verify_claim(claim, [power, soak])
    assert both.measured == 165.0 and both.verdict == "does not hold"
    assert "the soak's sustained figure (the last third of a 600 s hold)" in both.reason
