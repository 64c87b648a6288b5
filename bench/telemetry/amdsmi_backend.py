"""AMD GPUs through AMD SMI (module amdsmi), when importable.

Unverified on real hardware in this project so far: every call is guarded and a
refused reading is reported with its reason.
"""

from __future__ import annotations

import contextlib
from typing import Any

from bench.core import clock
from bench.telemetry.base import FIELDS, Backend, NotPresent, Reading


class AmdSmiBackend(Backend):
    """All AMD GPUs AMD SMI can see."""

    name = "amdsmi"
    probe_rank = 30
    reads = FIELDS
    energy_method = "amdsmi"

    def __init__(self, amdsmi: Any = None) -> None:
        if amdsmi is None:
            import amdsmi
        self.smi = amdsmi
        amdsmi.amdsmi_init()
        self.handles = amdsmi.amdsmi_get_processor_handles()
        if not self.handles:
            raise NotPresent("AMD SMI sees no GPU")
        self._labels = [f"gpu{i}" for i in range(len(self.handles))]
        self._unsupported: dict[str, str] = {}
        first = self._read_one(self.handles[0], "gpu0", probe=True)
        for field in FIELDS:
            if getattr(first, field) in (None, ()) and field not in self._unsupported:
                self._unsupported[field] = "AMD SMI: not reported"

    def _try(self, field: str, fn_name: str, *args: Any, probe: bool = False) -> Any:
        fn = getattr(self.smi, fn_name, None)
        if fn is None:
            if probe:
                self._unsupported[field] = f"AMD SMI has no {fn_name}"
            return None
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - amdsmi raises its own error types
            if probe:
                self._unsupported[field] = f"AMD SMI: {exc}"
            return None

    def _read_one(self, h: Any, label: str, probe: bool = False) -> Reading:
        power = self._try("power_w", "amdsmi_get_power_info", h, probe=probe) or {}
        energy = self._try("energy_j", "amdsmi_get_energy_count", h, probe=probe) or {}
        vram = self._try("mem_used_gb", "amdsmi_get_gpu_vram_usage", h, probe=probe) or {}
        activity = self._try("util", "amdsmi_get_gpu_activity", h, probe=probe) or {}
        watts = power.get("current_socket_power") or power.get("average_socket_power")
        joules = None
        if "energy_accumulator" in energy and "counter_resolution" in energy:
            joules = energy["energy_accumulator"] * energy["counter_resolution"] / 1e6
        return Reading(
            t=clock.now(),
            device=label,
            power_w=float(watts) if isinstance(watts, (int, float)) else None,
            energy_j=joules,
            mem_used_gb=vram["vram_used"] / 1024 if "vram_used" in vram else None,
            util=float(activity["gfx_activity"]) if isinstance(activity.get("gfx_activity"), (int, float)) else None,
        )

    def devices(self) -> list[str]:
        return list(self._labels)

    def capabilities(self) -> dict[str, str | None]:
        return {f: self._unsupported.get(f) for f in FIELDS}

    def read(self) -> list[Reading]:
        return [self._read_one(h, lbl) for lbl, h in zip(self._labels, self.handles)]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # shutting down: nothing useful to do on failure
            self.smi.amdsmi_shut_down()
