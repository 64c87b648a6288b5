"""Ray for real: a local three-node cluster (ray.cluster_utils.Cluster, one CPU per node), each node with its
own stand-in NVML cards (tests/fake_nvml.py behind a `pynvml` shim on the nodes' PYTHONPATH, its own card
UUIDs): the one stand-in here is the GPU this machine lacks. Telemetry actors per node on one timeline, per-card
energy summed, a fleet run with one run per node, a node removed mid-run, bad addresses, and no process left
behind. Skipped where Ray is not installed (CI installs the `.[ray]` extra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import ROOT, run_bench

ray = pytest.importorskip("ray")

FAST = ["--set", "idle_seconds=0", "--set", "canary_seconds=0", "--set", "output_len=16"]


def _node_env(shim: Path, name: str) -> dict[str, str]:
    return {"PYTHONPATH": f"{shim}:{ROOT}", "FAKE_NVML_NODE": name, "CLAIMBENCH_TELEMETRY": "nvml",
            "HF_HUB_OFFLINE": "1"}


def _start(shim: Path) -> tuple:
    from ray.cluster_utils import Cluster

    (shim / "pynvml.py").write_text("from tests.fake_nvml import *  # noqa: F401,F403 - this node's stand-in cards\n")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "env_vars": _node_env(shim, "head"),
                                                            "node_name": "head"})
    nodes = {name: cluster.add_node(num_cpus=1, env_vars=_node_env(shim, name), node_name=name) for name in ("n1", "n2")}
    cluster.wait_for_nodes()
    return cluster, nodes


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory):
    cluster, nodes = _start(tmp_path_factory.mktemp("shim"))
    yield cluster
    cluster.shutdown()


def _leftovers(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


def test_telemetry_from_every_node_on_the_drivers_timeline(three_nodes, tmp_path):
    """One run on the driver, telemetry through one actor per node: six cards (two per node) on one timeline,
    each node's clock offset in run.json, and the row's energy the sum of every card's over the same windows."""
    proc = run_bench("run", "--ray", three_nodes.address, "--out", str(tmp_path), "--set", "min_seconds=2",
                     "--set", "batch_size=1", *FAST, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = tmp_path.iterdir()
    meta = json.loads((run / "run.json").read_text())
    nodes = meta["cluster"]["nodes"]
    assert set(nodes) == {"head", "n1", "n2"} and not meta["cluster"]["dead"]
    assert all(abs(n["offset_s"]) < 1 and n["uncertainty_s"] < 1 and n["backend"] == "nvml" for n in nodes.values())
    uuids = {a["uuid"] for a in meta["fingerprint"]["accelerators"]}
    assert uuids == {f"GPU-fake-{n}-{i}" for n in ("head", "n1", "n2") for i in (0, 1)}
    tel = pd.read_csv(run / "telemetry.csv")
    cards = {f"{n}/gpu{i}" for n in ("head", "n1", "n2") for i in (0, 1)}
    assert set(tel["device"]) == cards
    assert tel.groupby("device")["t"].apply(lambda t: t.is_monotonic_increasing).all()  # one timeline per card
    row = pd.read_csv(run / "results.csv").iloc[0]
    per_card = dict(part.split(":", 1) for part in row["per_card"].split(";"))
    assert set(per_card) == cards
    joules = {card: float(text.split("energy=")[1].split("J")[0]) for card, text in per_card.items()}
    assert sum(joules.values()) == pytest.approx(row["energy_j"], rel=0.01)
    # gpu1 draws 200 W, gpu0 100 W on every node, over the same measured windows
    for node in ("head", "n1", "n2"):
        assert joules[f"{node}/gpu1"] == pytest.approx(2 * joules[f"{node}/gpu0"], rel=0.02)
    # 900 W over the repetitions' windows; measured_seconds also holds the bookkeeping between them, more of
    # it on a busy machine, so the bound is loose (the per-card sums above are the exact check)
    assert 0.7 * 900 * row["measured_seconds"] <= row["energy_j"] <= 900 * row["measured_seconds"] * 1.01


def test_a_fleet_runs_the_workload_on_every_node_and_compares(three_nodes, tmp_path):
    """`--each-node`: one run per node, brought back into one root, then `bench compare` over them."""
    proc = run_bench("run", "--ray", three_nodes.address, "--each-node", "--engine", "simulated", "--quick",
                     "--set", "min_reps=2", "--set", "min_seconds=0", *FAST, "--out", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root,) = tmp_path.iterdir()
    per_node = {p.name: list(p.glob("*/results.csv")) for p in root.iterdir() if p.is_dir()}
    assert set(per_node) == {"head", "n1", "n2"} and all(len(v) == 1 for v in per_node.values())
    for results in per_node.values():
        assert (pd.read_csv(results[0])["status"] == "ok").all()
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "fleet: 3 run(s)" in said and "0 node(s) failed" in said and "[2]" in said  # compare's run list
    verified = run_bench("verify", str(root))
    assert verified.returncode in (0, 1), verified.stderr


def test_a_node_removed_mid_run_gives_error_rows_while_the_others_finish(tmp_path):
    """The fleet on a cluster of its own: n2 leaves while every node is measuring; its cases become error rows
    saying why, the other nodes' runs finish, and nothing is left running."""
    shim = tmp_path / "shim"
    shim.mkdir()
    cluster, nodes = _start(shim)
    try:
        fleet = subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "--ray", cluster.address, "--each-node", "--set", "min_seconds=12",
             "--set", "batch_size=1", *FAST, "--out", str(tmp_path / "out")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + 300  # until every node's `bench run` has started (a loaded machine is slow)
        while len(_leftovers("claimbench-fleet-")) < 3 and time.monotonic() < deadline and fleet.poll() is None:
            time.sleep(0.5)
        time.sleep(3)  # and is measuring
        cluster.remove_node(nodes["n2"], allow_graceful=False)
        out, err = fleet.communicate(timeout=600)
        assert fleet.returncode == 1, err[-3000:]
        (root,) = (tmp_path / "out").iterdir()
        rows = {p.name: pd.read_csv(next(p.glob("*/results.csv"))) for p in root.iterdir() if p.is_dir()}
        assert set(rows) == {"head", "n1", "n2"}
        assert (rows["n2"]["status"] == "error").all() and rows["n2"]["detail"].str.contains("node n2").all()
        assert (rows["head"]["status"] == "ok").all() and (rows["n1"]["status"] == "ok").all()
        assert "1 node(s) failed" in " ".join(err.split())
    finally:
        cluster.shutdown()
    time.sleep(1)
    assert not _leftovers("claimbench-fleet-"), "a node's bench run was left running"


def test_a_node_whose_telemetry_dies_leaves_its_cards_empty_with_the_reason(tmp_path):
    """A --ray run of two cases; n2 leaves after the first: the second case keeps the other nodes' per-card
    figures, n2's cards are empty, and the total energy is not given, with why."""
    import glob

    shim = tmp_path / "shim"
    shim.mkdir()
    cluster, nodes = _start(shim)
    try:
        out = tmp_path / "out"
        run = subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "--ray", cluster.address, "--set", "min_seconds=5",
             "--set", "batch_size=1,4", *FAST, "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None:
            done = glob.glob(str(out / "*" / "results.csv"))
            if done and len(Path(done[0]).read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        cluster.remove_node(nodes["n2"], allow_graceful=False)
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-3000:]
    finally:
        cluster.shutdown()
    (run_dir,) = out.iterdir()
    first, second = pd.read_csv(run_dir / "results.csv").to_dict("records")
    # gpu1 has no energy counter: its power is integrated, and a machine this busy can starve a node's sampler
    # for longer than the bound between readings; then the energy is empty and must say so, never a guess.
    assert first["energy_j"] > 0 or "readings more than" in first["energy_source"], first["energy_source"]
    assert "n2/gpu1:mean=200.0W" in first["per_card"], first["per_card"]
    assert pd.isna(second["energy_j"]) and "n2: telemetry actor died" in second["energy_source"]
    assert "n1/gpu1:mean=200.0W" in second["per_card"] and "n2/gpu1:mean=W" in second["per_card"]
    assert "n2" in json.loads((run_dir / "run.json").read_text())["cluster"]["dead"]


@pytest.mark.parametrize(("args", "message"), [
    (["--ray", "127.0.0.1:1"], "nothing answers there"),
    (["--ray", "not-an-address"], "give HOST:PORT"),
    (["--each-node"], "give --ray ADDRESS"),
    (["--workload", "claims", "--ray", "auto"], "not a suite"),
])
def test_bad_cluster_input_is_one_line_and_exit_2(tmp_path, args, message):
    proc = run_bench("run", "--engine", "simulated", *args, "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_without_ray_installed_the_line_names_the_extra(tmp_path):
    blocker = tmp_path / "noray"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('no ray here')\n")
    proc = run_bench("run", "--engine", "simulated", "--ray", "auto", "--out", str(tmp_path),
                     env={"PYTHONPATH": f"{blocker}:{ROOT}"})
    assert proc.returncode == 2 and 'pip install -e ".[ray]"' in proc.stderr, proc.stderr
