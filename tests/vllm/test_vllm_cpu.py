"""vLLM for real on CPU (vllm-cpu): the vllm engine in-process, and the openai engine against `vllm serve`.

Run by .ci/run's vLLM stage in its own venv; skipped where vLLM is not installed.
"""

import os
import socket
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest

from tests.conftest import ROOT, run_bench, single_run_dir

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

VLLM_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "0-1" if (os.cpu_count() or 1) <= 2 else "all", "HF_HUB_OFFLINE": "1"}
FAST = ["--set", "min_reps=3", "--set", "min_seconds=0", "--set", "idle_seconds=0", "--set", "output_len=16"]


def test_vllm_engine_on_the_tiny_model(tmp_path):
    proc = run_bench("run", "--engine", "vllm", "--quick", "--out", str(tmp_path), *FAST, "--set",
                     "batch_size=1,4", env=VLLM_ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv")
    assert list(df["status"]) == ["ok", "ok"], df["detail"].tolist()
    assert (df["engine"] == "vllm").all() and (df["decode_tok_s"] > 0).all()
    assert df.loc[1, "decode_tok_s"] > df.loc[0, "decode_tok_s"]  # batching helps
    assert df["peak_mem_gb"].isna().all()  # the engine core is another process: not ours to count


def test_the_claims_suite_plans_its_vllm_steps_where_vllm_is_installed():
    """The CPU steps of the claims suite also on vLLM's kernels here; the verdicts then take the faster path."""
    proc = run_bench("run", "--workload", "claims", "--quick", "--dry-run", env=VLLM_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "vllm is not installed" not in said
    assert "engine vllm" in " ".join(proc.stdout.split())  # the vLLM steps are planned, engine named


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def vllm_server():
    """A real OpenAI-compatible vLLM server of the tiny model on 127.0.0.1, stopped after the test."""
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(ROOT / "workloads/models/tiny"),
           "--served-model-name", "tiny", "--load-format", "dummy", "--skip-tokenizer-init", "--dtype", "bfloat16",
           "--enforce-eager", "--gpu-memory-utilization", "0.25", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **VLLM_ENV},
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 240  # bounded start
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"vllm server exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("vllm server did not start within 240 s")
        yield url
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def test_openai_engine_against_vllm_serve(vllm_server, tmp_path):
    proc = run_bench("run", "--engine", "openai", "--set", f"base_url={vllm_server}", "--quick", "--out",
                     str(tmp_path), *FAST, "--set", "batch_size=1,4", env=VLLM_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv")
    assert list(df["status"]) == ["ok", "ok"], df["detail"].tolist()
    assert (df["ttft_ms_p50"] > 0).all() and (df["decode_tok_s"] > 0).all()
    # Poisson arrivals against the same server.
    proc = run_bench("run", "--engine", "openai", "--set", f"base_url={vllm_server}", "--quick", "--out",
                     str(tmp_path / "poisson"), *FAST, "--set", "request_rate=20", "--set", "num_requests=8",
                     env=VLLM_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # A wrong model name is an error row, not a crash.
    proc = run_bench("run", "--engine", "openai", "--set", f"base_url={vllm_server}", "--set", "served_model=nope",
                     "--quick", "--out", str(tmp_path / "wrong"), *FAST, env=VLLM_ENV)
    assert proc.returncode == 1
    assert "does not serve model 'nope'" in pd.read_csv(single_run_dir(tmp_path / "wrong") / "results.csv").loc[
        0, "detail"]
