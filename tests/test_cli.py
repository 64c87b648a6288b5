"""The real `bench` CLI in a subprocess, on the tiny model, with the real files."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.core.schema import RESULT_COLUMN_NAMES, SAMPLE_COLUMNS, TELEMETRY_COLUMNS
from tests.helpers import FAST, ROOT, run_bench, single_run_dir

# results.csv's contract, copied from DESIGN.md (written out, so a schema change cannot move it silently).
DESIGN_CONTRACT = ["schema_version", "run_id", "workload", "case", "model", "weights", "engine", "device", "device_name", "device_count", "dtype", "batch_size", "input_len", "output_len", "repetitions", "status", "detail", "ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99", "itl_ms_p99", "e2e_ms_p50", "prefill_tok_s", "decode_tok_s", "decode_tok_s_per_user", "output_tok_s", "decode_tok_s_cv", "peak_mem_gb", "host_peak_rss_gb", "power_w_mean", "power_w_max", "energy_j", "energy_j_per_token", "tok_s_per_w", "energy_source", "throttled", "roofline_decode_tok_s", "mbu", "mfu"]


def test_bench_run_with_no_arguments(tmp_path):
    """`bench run` alone: default workload, tiny model, a table, and a complete run directory."""
    proc = run_bench("run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = single_run_dir(tmp_path / "results")
    assert run.name.endswith("-quick")
    df = pd.read_csv(run / "results.csv")
    assert list(df.columns)[:len(DESIGN_CONTRACT)] == DESIGN_CONTRACT  # the fixed names, in their order
    # Beyond the contract, only what a plain generate run can fill (no long-context, prefix, membw columns).
    assert set(df.columns) <= set(RESULT_COLUMN_NAMES)
    assert not {"measured_max_context", "ttft_speedup", "bandwidth_gb_s", "tflops", "fits_budget"} & set(df.columns)
    assert {"params", "kv_bytes_per_token", "itl_ms_p50"} <= set(df.columns)
    assert (df["status"] == "ok").all()
    assert set(df["model"]) == {"tiny"} and set(df["weights"]) == {"random"}
    assert (df["decode_tok_s"] > 0).all() and (df["ttft_ms_p50"] > 0).all()
    assert (df["repetitions"] >= 3).all()
    # Not measurable on this machine -> empty with a reason, never 0.
    if df["energy_source"].str.startswith("none").all():
        assert df["energy_j"].isna().all() and df["power_w_mean"].isna().all()
    samples = pd.read_csv(run / "samples.csv")
    assert list(samples.columns) == list(SAMPLE_COLUMNS)
    assert len(samples) == df["repetitions"].sum()
    telemetry = pd.read_csv(run / "telemetry.csv")
    assert list(telemetry.columns) == list(TELEMETRY_COLUMNS)
    meta = json.loads((run / "run.json").read_text())
    assert meta["complete"] is True and meta["schema_version"] == 1
    assert meta["fingerprint"]["versions"]["torch"]
    assert meta["workload"]["name"] == "quick"
    for when in ("start", "end"):  # the machine's canary brackets the run (bench check/history's machine-drift)
        assert meta["canary"][when]["bandwidth_gb_s"] > 0 and meta["canary"][when]["tflops"] > 0
    assert "decode tok/s" in proc.stdout  # the results table


def test_list_and_env(capsys):
    from bench.cli import main

    for what, expected in (("workloads", "long-context"), ("models", "llama-3.1-8b"), ("engines", "simulated"),
                            ("claims", "kv-reuse")):
        assert main(["list", what]) == 0
        assert expected in capsys.readouterr().out
    proc = run_bench("env")
    assert proc.returncode == 0, proc.stderr
    assert "telemetry" in proc.stdout and "torch" in proc.stdout
    proc = run_bench("env", "--json")
    info = json.loads(proc.stdout)
    caps = info["telemetry"]["capabilities"]
    assert caps.get("power_w") or caps.get("package_power_w")  # a CPU names its fields for what they are
    if info["telemetry"]["backend"] == "cpu":
        assert "sm_clock_mhz" not in caps and "cpu_clock_mhz" in caps
        assert all(a.get("cpu_freq_max_mhz") != 0 for a in info["accelerators"])  # unmeasured is empty, never 0


def test_gpu_allocator_defaults_to_expandable_segments_unless_chosen():
    """A fragmented caching allocator must not pass for the card's memory limit (seen on an H200)."""
    env = {k: "" for k in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_HIP_ALLOC_CONF")}
    info = json.loads(run_bench("env", "--json", env=env).stdout)
    assert info["allocator_conf"] == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    chosen = json.loads(run_bench("env", "--json", env={**env, "PYTORCH_ALLOC_CONF": "max_split_size_mb:512"}).stdout)
    assert chosen["allocator_conf"] == {"PYTORCH_ALLOC_CONF": "max_split_size_mb:512"}


def test_dry_run_lists_cases_without_running(out_dir):
    proc = run_bench("run", "--workload", "throughput", "--dry-run", "--set", "batch_size=1,2,4", "--out",
                     str(out_dir))
    assert proc.returncode == 0, proc.stderr
    assert not out_dir.exists()
    assert "12 case(s)" in proc.stdout and "every case: model tiny" in proc.stdout  # 3 batches x 2 inputs x 2 outputs
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == [str(i) for i in range(12)]  # one row per case: bs, in, out
    assert {tuple(r[1:]) for r in rows} == {(b, i, o) for b in "124" for i in ("128", "512") for o in ("64", "256")}
    # The edge plan's three weight formats per model are three rows that say which (a plan needs no torchao).
    edge = run_bench("run", "--workload", "edge", "--dry-run", "--out", str(out_dir))
    assert edge.stdout.count("int8") == 3 and edge.stdout.count("none") == 3, edge.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--workload", "nope"], "unknown workload"),
        (["run", "--model", "gpt-17"], "unknown model"),
        (["run", "--engine", "magic"], "unknown engine"),
        (["run", "--device", "tpu9"], "unknown device"),
        (["run", "--device", "cuda:7"], "cuda"),
        (["run", "--set", "batchsize=2"], "unknown key"),
        (["run", "--set", "batch_size=two"], "must be an integer"),
        (["run", "--dtype", "int3"], "must be one of"),
        (["run", "--bogus"], "unrecognized arguments"),
        (["list", "things"], "invalid choice"),
        (["run", "--set", "output_len=1"], "output_len must be >= 2"),
        (["run", "--workload", "prefix-reuse", "--set", "prefix_len=5000"], "prefix_len"),
        (["run", "--engine", "openai"], "needs --set base_url"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = run_bench(*args, "--dry-run") if args[0] == "run" else run_bench(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_toml_and_model_dir_without_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[params\n")
    proc = run_bench("run", "--workload", str(bad), "--dry-run")
    assert proc.returncode == 2 and "malformed TOML" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_bench("run", "--model", str(tmp_path), "--dry-run")
    assert proc.returncode == 2 and "no config.json" in proc.stderr


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_bench("run", "--out", str(blocker / "results"), *FAST)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "output directory" in proc.stderr
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        proc = run_bench("run", "--out", str(ro), *FAST)
        assert proc.returncode == 2 and "not writable" in proc.stderr


def test_runs_never_overwrite_each_other(out_dir):
    for _ in range(2):
        proc = run_bench("run", "--out", str(out_dir), "--quick", "--engine", "simulated", *FAST)
        assert proc.returncode == 0, proc.stderr
    runs = sorted(p.name for p in out_dir.iterdir())
    assert len(runs) == 2 and runs[0] != runs[1]


def test_sigkill_after_the_first_case_keeps_its_row(out_dir):
    """Rows are flushed per case: a run killed mid-sweep leaves every finished row readable."""
    # Each case lasts at least 4 s, so after the first row the run has 20 s or more to go: a busy machine that
    # notices the row late still signals a run in progress (at 0.5 s a case, a loaded one finished first).
    cmd = [sys.executable, "-m", "bench", "run", "--out", str(out_dir), "--set", "batch_size=1,2,3,4,5,6",
           "--set", "min_reps=2", "--set", "min_seconds=4", "--set", "idle_seconds=0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 240
    results = None
    while time.time() < deadline:
        found = list(out_dir.glob("*/results.csv")) if out_dir.exists() else []
        if found and len(found[0].read_text().splitlines()) >= 2:  # header + first case
            results = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert results is not None, "first case never finished"
    df = pd.read_csv(results)
    assert 1 <= len(df) < 6
    assert (df["status"] == "ok").all() and df["decode_tok_s"].notna().all()
    meta = json.loads((results.parent / "run.json").read_text())
    assert meta["complete"] is False  # written before the first case, never completed


def test_long_context_quick_over_a_memory_budget_is_measured_then_marked(out_dir):
    proc = run_bench("run", "--workload", "long-context", "--quick", "--out", str(out_dir), *FAST,
                     "--set", "max_context=2048", "--set", "max_mem_gb=0.001")
    assert proc.returncode == 0, proc.stderr  # over budget is a result, not a failure
    df = pd.read_csv(single_run_dir(out_dir) / "results.csv")
    assert df.loc[0, "status"] == "over_budget" and "max_mem_gb=0.001" in df.loc[0, "detail"]
    assert df.loc[0, "peak_mem_gb"] > 0.001 and df.loc[0, "repetitions"] >= 1  # it ran, on the real engine


def test_model_directory_with_real_weights(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from bench.spec.models import resolve_model

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(resolve_model("tiny").config).save_pretrained(tmp_path / "m")
    proc = run_bench("run", "--model", str(tmp_path / "m"), "--quick", "--out", str(tmp_path / "r"), *FAST)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(single_run_dir(tmp_path / "r") / "results.csv")
    assert df.loc[0, "weights"] == "pretrained" and df.loc[0, "status"] == "ok"


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_stops_cleanly_and_keeps_finished_rows(out_dir, sig, code, word):
    """Ctrl-C is held down (21 presses 0.01 s apart), as impatient people do: the presses after the first land in
    the saving of what finished (or the interpreter's shutdown) and must not cut it or print a traceback."""
    # Each case lasts at least 4 s, so after the first row the run has 20 s or more to go: a busy machine that
    # notices the row late still signals a run in progress (at 0.5 s a case, a loaded one finished first).
    cmd = [sys.executable, "-m", "bench", "run", "--out", str(out_dir), "--set", "batch_size=1,2,3,4,5,6",
           "--set", "min_reps=2", "--set", "min_seconds=4", "--set", "idle_seconds=0"]
    # A shell's background job (`pytest ... &`) starts with SIGINT ignored, and a child inherits that: bench then
    # rightly ignores Ctrl-C (as under nohup). This test is of bench's handling, so the child gets the default.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline:
        found = list(out_dir.glob("*/results.csv")) if out_dir.exists() else []
        if found and len(found[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    for _ in range(20 if sig == signal.SIGINT else 0):
        time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    try:  # generous: on a machine loaded 3x over, a clean stop (rows flushed, run.json completed) is slow
        _out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        raise AssertionError(f"bench did not stop within 300 s of the signal; its stderr: {err[-2000:]}") from None
    assert proc.returncode == code, err
    assert "Traceback" not in err and "Exception ignored" not in err and word in err
    run = found[0].parent
    df = pd.read_csv(run / "results.csv")
    assert len(df) >= 1 and (df["status"] == "ok").all()
    meta = json.loads((run / "run.json").read_text())
    assert meta["interrupted"] is True and meta["finished_cases"] == len(df)
    assert meta["ended_by"] == word and meta["end"]


def _hub_cache(cache: Path, repo_id: str, files: Path) -> None:
    """Lay files out as huggingface_hub does: blobs by hash, a snapshot of symlinks, refs/main."""
    import hashlib

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in files.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        (repo / "blobs" / digest).write_bytes(f.read_bytes())
        (snapshot / f.name).symlink_to(Path("..", "..", "blobs", digest))


def test_a_hub_id_resolves_through_the_local_cache_offline(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from bench.spec.models import resolve_model

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(resolve_model("tiny").config).save_pretrained(tmp_path / "m")
    cache = tmp_path / "hub"
    _hub_cache(cache, "test-org/tiny-llm", tmp_path / "m")
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    proc = run_bench("run", "--model", "test-org/tiny-llm", "--quick", "--out", str(tmp_path / "r"), *FAST, env=env)
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(single_run_dir(tmp_path / "r") / "results.csv").iloc[0]
    assert row["model"] == "test-org/tiny-llm" and row["weights"] == "pretrained" and row["status"] == "ok"
    # Not in the cache: one line that says how to get it, exit 2; never a download unless asked.
    proc = run_bench("run", "--model", "test-org/absent", "--dry-run", env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "hf download test-org/absent" in proc.stderr and "allow_download=true" in proc.stderr
