"""A fleet in one command: `bench run --ray ADDRESS --each-node` runs the same workload on every node of a Ray
cluster (or every node with a given resource, `--accelerator-type GPU`) as Ray tasks pinned to their node,
brings each node's run directory back into one results root on the driver, and ends with `bench compare` over
them (fingerprint differences included). A node that fails, or leaves the cluster mid-run, gives error rows for
its cases; the others go on. Each node needs claimbench installed in the Python that Ray runs there.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bench.core.errors import BadInput
from bench.core.schema import SCHEMA_VERSION
from bench.telemetry import ray_nodes

NODE_TIMEOUT_S = 6 * 3600.0


def node_argv(args: Any) -> list[str]:
    """The `bench run` arguments each node runs: the driver's own, without the fleet's and the output root."""
    argv = ["run", "--workload", args.workload]
    for flag in ("model", "engine", "device", "dtype", "label"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", getattr(args, flag)]
    for item in args.sets:
        argv += ["--set", item]
    return argv + (["--quick"] if args.quick else [])


def _run_here(argv: list[str]) -> dict[str, Any]:
    """Inside the task, on its node: `bench run` into a temporary root, its run directories packed."""
    import socket

    with tempfile.TemporaryDirectory(prefix="claimbench-fleet-") as tmp:
        proc = subprocess.run([sys.executable, "-m", "bench", *argv, "--out", tmp], capture_output=True, text=True,
                              timeout=NODE_TIMEOUT_S, preexec_fn=_die_with_parent)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for run_dir in sorted(p for p in Path(tmp).iterdir() if p.is_dir()):
                tar.add(run_dir, arcname=run_dir.name)
        return {"returncode": proc.returncode, "stderr": proc.stderr[-2000:], "host": socket.gethostname(),
                "tar": buffer.getvalue()}


def _die_with_parent() -> None:
    """In the child: be killed when the Ray worker that started it dies (its node left the cluster), so no run
    is left behind on a node the fleet gave up on (Linux; elsewhere a no-op)."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _unpack(data: bytes, into: Path) -> list[Path]:
    """The node's run directories, extracted under `into` (members that would leave it are refused)."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(into, filter="data")
    return sorted(p for p in into.iterdir() if p.is_dir())


def _error_run(into: Path, node: str, planned: Any, reason: str) -> Path:
    """A run directory for a node that gave no result: one error row per planned case, saying why."""
    from bench.store.results import RunWriter

    writer = RunWriter(into, planned.workload.name)
    writer.write_meta(workload=planned.workload.to_dict(), cases=len(planned.cases), complete=False,
                      fleet={"node": node, "error": reason})
    for case in planned.cases:
        p = case.params
        writer.append_case({"schema_version": SCHEMA_VERSION, "run_id": writer.run_id, "workload": planned.workload.name,
                            "case": case.index, "model": p["model"], "engine": p["engine"], "device": "",
                            "device_name": f"node {node}", "dtype": p["dtype"], "batch_size": p["batch_size"],
                            "input_len": p["input_len"], "output_len": p["output_len"], "repetitions": 0,
                            "status": "error", "detail": f"node {node}: {reason}"}, [], [], 0.0)
    writer.close()
    return writer.path


def run_fleet(args: Any, planned: Any, console: Any) -> tuple[Path, list[Path], int]:
    """Every node's run into one new root; returns the root, the run directories and how many nodes failed."""
    from bench.store.results import new_run_dir

    ray = ray_nodes.connect(args.ray)
    nodes = ray_nodes.alive_nodes(ray, args.accelerator_type or "")
    if not nodes:
        raise BadInput(f"the Ray cluster has no alive node{' with ' + args.accelerator_type if args.accelerator_type else ''}")
    root = new_run_dir(Path(args.out), f"fleet-{planned.workload.name}")
    task = ray.remote(num_cpus=1, max_retries=0)(_run_here)
    argv = node_argv(args)
    pending = {task.options(scheduling_strategy=ray_nodes.pinned(ray, n["NodeID"])).remote(argv): ray_nodes.node_name(n)
               for n in nodes}
    console.print(f"[bold]fleet[/]: {planned.workload.name} on {len(nodes)} node(s): {', '.join(pending.values())} "
                  f"-> {root}", markup=True)
    runs, failed = [], 0
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=NODE_TIMEOUT_S)
        if not done:
            break
        ref = done[0]
        node = pending.pop(ref)
        try:
            result = ray.get(ref)
            got = _unpack(result["tar"], root / node)
            if not got:
                raise RuntimeError(f"bench exited {result['returncode']} with no run: "
                                   f"{(result['stderr'].strip().splitlines() or [''])[-1][:200]}")
            runs += got
            console.print(f"  {node} ({result['host']}): {len(got)} run(s), exit {result['returncode']}", markup=False)
        except Exception as exc:  # noqa: BLE001 - a node that died or failed: error rows, the others go on
            failed += 1
            reason = f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
            runs.append(_error_run(root / node, node, planned, reason))
            console.print(f"  {node}: failed ({reason}); error rows written", markup=False)
    for ref, node in pending.items():  # past the bound: the node never answered
        failed += 1
        ray.cancel(ref, force=True)
        runs.append(_error_run(root / node, node, planned, f"no answer within {NODE_TIMEOUT_S:g} s"))
    return root, runs, failed


def cluster_telemetry(address: str, device: Any, workload: Any) -> Any:
    """Telemetry from every node of the cluster at `address` (those with the device's accelerator resource,
    every node for a CPU run), for one run on this driver."""
    ray = ray_nodes.connect(address)
    resource = {"cuda": "GPU"}.get(device.type, "")
    nodes = ray_nodes.alive_nodes(ray, resource) or ray_nodes.alive_nodes(ray)
    return ray_nodes.RayTelemetry(ray, nodes, device.type, hz=workload.params["telemetry_hz"])


def fleet_command(args: Any, planned: Any, console: Any) -> tuple[Path, list[Path], int]:
    """`bench run --ray ADDRESS --each-node`: the fleet's root, its run directories and how many nodes failed
    (their error rows are in the root); the front door compares them."""
    if args.ray is None:
        raise BadInput("--each-node and --accelerator-type run on a Ray cluster: give --ray ADDRESS (or auto)")
    return run_fleet(args, planned, console)
