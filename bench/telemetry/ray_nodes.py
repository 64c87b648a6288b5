"""Ray: telemetry from every node of a cluster on the driver's timeline (optional extra, `.[ray]`).

claimbench does not run its own cluster: it joins the Ray cluster the user already runs (vLLM's
`distributed_backend=ray` places models on the same one). On each node that takes part it starts one small
actor (no CPU or GPU reserved, pinned to the node by node-affinity scheduling) that probes the node's own
telemetry backend and samples it in a thread. The driver's sampler reads them all through `RayTelemetry`,
one Backend like any other: every reading carries its node and card (`node/gpu0`) and a timestamp moved onto
the driver's clock by the offset measured at start (the round trip with the smallest delay; its half-width is
the offset's uncertainty, said in run.json). The head attributes energy per card over the measured windows as
for local cards. A node whose actor dies stops giving readings: its cards' energy is then a gap (empty with
the reason), and the reason is kept.
"""

from __future__ import annotations

import socket
from dataclasses import asdict
from typing import Any

from bench.core import clock
from bench.core.errors import BadInput
from bench.telemetry.base import FIELDS, Backend, Reading
from bench.telemetry.probe import probe_backend

RAY_INSTALL = 'pip install -e ".[ray]"'
CONNECT_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 10.0
OFFSET_ROUNDS = 5


def require_ray() -> Any:
    """The ray module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BadInput(f"--ray needs Ray, which is not installed here: {RAY_INSTALL}") from None
    return ray


def connect(address: str) -> Any:
    """Join the Ray cluster at `address` (host:port of its GCS; 'auto' or '' for the one running here), within a
    bounded wait; one line and exit 2 when nothing answers."""
    ray = require_ray()
    address = address.strip()
    if address not in ("", "auto") and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise BadInput(f"--ray {address[:80]!r}: give HOST:PORT of the cluster's head, or auto")
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise BadInput(f"--ray {address}: nothing answers there within {CONNECT_TIMEOUT_S:g} s "
                           f"({exc.__class__.__name__}); start the cluster (ray start --head) or give its address"
                           ) from None
    if not ray.is_initialized():
        try:
            ray.init(address=address or "auto", ignore_reinit_error=True, log_to_driver=False,
                     logging_level="ERROR", configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BadInput(f"--ray {address or 'auto'}: could not join a Ray cluster ({str(exc)[:160]})") from None
    return ray


def alive_nodes(ray: Any, resource: str = "") -> list[dict[str, Any]]:
    """The cluster's alive nodes (those with `resource`, e.g. 'GPU', when one is named), head first."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if resource:
        nodes = [n for n in nodes if n.get("Resources", {}).get(resource, 0) > 0]
    return sorted(nodes, key=lambda n: (not n.get("Resources", {}).get("node:__internal_head__"), n["NodeID"]))


def node_name(node: dict[str, Any]) -> str:
    """A short, stable name for a node in labels and paths: its Ray node name, else its id's first 8 digits."""
    name = str(node.get("NodeName") or "")
    same_host = name == node.get("NodeManagerAddress")  # several nodes of one host share the address
    return node["NodeID"][:8] if not name or same_host else name.replace("/", "_")


def pinned(ray: Any, node_id: str) -> Any:
    """The scheduling strategy that keeps a task or actor on one node (never moved elsewhere)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


class NodeTelemetry:
    """Runs inside the actor on one node: that node's own backend and sampler."""

    def __init__(self, device_type: str, hz: float) -> None:
        import os

        from bench.telemetry.sampler import Sampler

        self.backend, self.tried = probe_backend(device_type)
        self.sampler = Sampler(self.backend, hz=hz)
        self.sampler.start()
        self.host = socket.gethostname()
        self.pid = os.getpid()

    def info(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "backend": self.backend.name, "devices": self.backend.devices(),
                "capabilities": self.backend.capabilities(), "energy_method": self.backend.energy_method,
                "energy_reason": self.backend.energy_reason(), "fingerprint": self.backend.fingerprint(),
                "max_power_gap_s": self.backend.max_power_gap_s, "tried": self.tried}

    def now(self) -> float:
        return clock.now()

    def drain(self, settle_after: float | None = None) -> list[dict[str, Any]]:
        """Readings not yet handed out; settle_after (on this node's clock): first take one at or after it."""
        if settle_after is not None:
            self.sampler.sample_now(settle=True)
        return [asdict(r) for r, _ in self.sampler.drain()]

    def stop(self) -> None:
        self.sampler.stop()
        self.backend.close()


class RayTelemetry(Backend):
    """Every node's telemetry through one actor per node, on the driver's clock."""

    name = "ray"

    def __init__(self, ray: Any, nodes: list[dict[str, Any]], device_type: str, hz: float = 10.0) -> None:
        if not nodes:
            raise BadInput("the Ray cluster has no alive node to read telemetry on")
        self.ray = ray
        remote = ray.remote(num_cpus=0, num_gpus=0, max_restarts=0)(NodeTelemetry)
        self.names = [node_name(n) for n in nodes]
        self.actors = {name: remote.options(scheduling_strategy=pinned(ray, n["NodeID"])).remote(device_type, hz)
                       for name, n in zip(self.names, nodes)}
        self.node_ids = {name: n["NodeID"] for name, n in zip(self.names, nodes)}
        self.infos = dict(zip(self.names, ray.get([a.info.remote() for a in self.actors.values()],
                                                  timeout=CALL_TIMEOUT_S * 3)))
        self.offsets = {name: self._offset(actor) for name, actor in self.actors.items()}
        self.dead: dict[str, str] = {}
        self._pending: list[Reading] = []
        methods = {i["energy_method"] for i in self.infos.values()}
        self.energy_method = methods.pop() if len(methods) == 1 else "mixed: " + ", ".join(
            f"{n} {i['energy_method']}" for n, i in self.infos.items())
        self.power_method = self.energy_method

    def _offset(self, actor: Any) -> dict[str, float]:
        """The actor's clock minus the driver's, from the round trip with the least delay."""
        best = None
        for _ in range(OFFSET_ROUNDS):
            before = clock.now()
            remote = self.ray.get(actor.now.remote(), timeout=CALL_TIMEOUT_S)
            after = clock.now()
            if best is None or after - before < best[1]:
                best = (remote - (before + after) / 2, after - before)
        assert best is not None
        return {"offset_s": best[0], "uncertainty_s": best[1] / 2}

    @property
    def max_power_gap_s(self) -> float:
        return max(float(i["max_power_gap_s"]) for i in self.infos.values())

    def devices(self) -> list[str]:
        return [f"{name}/{d}" for name, info in self.infos.items() for d in info["devices"]]

    def capabilities(self) -> dict[str, str | None]:
        caps: dict[str, str | None] = {}
        for field in FIELDS:
            reasons = [f"{n}: {i['capabilities'].get(field)}" for n, i in self.infos.items()
                       if i["capabilities"].get(field)]
            caps[field] = "; ".join(reasons) or None  # a node that died later is said per case (silent_reason)
        return caps

    def _gather(self, settle_after: float | None = None) -> list[Reading]:
        alive = {n: a for n, a in self.actors.items() if n not in self.dead}
        refs = {n: a.drain.remote(None if settle_after is None else settle_after + self.offsets[n]["offset_s"])
                for n, a in alive.items()}
        out = []
        for name, ref in refs.items():
            try:
                rows = self.ray.get(ref, timeout=CALL_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a dead node or actor: its readings stop, the reason stays
                self.dead[name] = f"telemetry actor died at t={clock.now():.1f} ({exc.__class__.__name__})"
                continue
            shift = self.offsets[name]["offset_s"]
            for row in rows:
                row["t"] -= shift
                row["device"] = f"{name}/{row['device']}"
                row["throttle"] = tuple(row.get("throttle") or ())
                out.append(Reading(**row))
        return sorted(out, key=lambda r: r.t)

    def silent_reason(self, devices: list[str]) -> str:
        return "; ".join(f"{n}: {why}" for n, why in self.dead.items() if any(d.startswith(f"{n}/") for d in devices))

    def read(self) -> list[Reading]:
        pending, self._pending = self._pending, []
        return sorted(pending + self._gather(), key=lambda r: r.t)

    def settle(self, after: float) -> None:
        """Every node takes a reading at or after `after` (the end of a window), handed out by the next read."""
        self._pending = self._gather(settle_after=after)

    def fingerprint(self) -> list[dict[str, Any]]:
        return [{**card, "device": f"{name}/{card.get('device', '')}", "node": name}
                for name, info in self.infos.items() for card in info["fingerprint"]]

    def meta(self) -> dict[str, Any]:
        """For run.json: each node, its backend and its clock offset onto the driver's, and nodes that died."""
        return {"cluster": {"nodes": {n: {"node_id": self.node_ids[n], "host": self.infos[n]["host"],
                                          "backend": self.infos[n]["backend"], "devices": self.infos[n]["devices"],
                                          "energy": self.infos[n]["energy_reason"], **self.offsets[n]}
                                      for n in self.names},
                            "dead": dict(self.dead)}}

    def close(self) -> None:
        for name, actor in self.actors.items():
            try:
                if name not in self.dead:
                    self.ray.get(actor.stop.remote(), timeout=CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - gone already
                pass
            self.ray.kill(actor, no_restart=True)
