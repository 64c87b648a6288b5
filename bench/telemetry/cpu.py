"""The host: RAPL package energy from /sys/class/powercap when readable, memory and CPU use via psutil."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil

from bench.core import clock
from bench.telemetry.base import FIELDS, Backend, Reading

POWERCAP = Path("/sys/class/powercap")


class RaplDomain:
    """One top-level RAPL package domain; unwraps its energy counter across reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = (path / "name").read_text().strip() if (path / "name").exists() else path.name
        self.wrap_j = int((path / "max_energy_range_uj").read_text()) / 1e6
        self._last_raw: float | None = None
        self._offset = 0.0

    def read_j(self) -> float:
        """Cumulative energy in J, monotonic across counter wraparound."""
        raw = int((self.path / "energy_uj").read_text()) / 1e6
        if self._last_raw is not None and raw < self._last_raw:
            self._offset += self.wrap_j
        self._last_raw = raw
        return raw + self._offset


def find_rapl_domains(root: Path = POWERCAP) -> tuple[list[RaplDomain], str | None]:
    """Top-level package domains (intel-rapl:N, not their sub-zones, to count nothing twice)."""
    if not root.is_dir():
        return [], f"no RAPL: {root} does not exist"
    domains, reasons = [], []
    for zone in sorted(root.glob("*rapl:*")):
        if zone.name.count(":") != 1:
            continue  # sub-zone (core, uncore, dram) of a package already counted
        try:
            domain = RaplDomain(zone)
            domain.read_j()
            domains.append(domain)
        except (OSError, ValueError) as exc:
            reasons.append(f"{zone}/energy_uj not readable ({exc.__class__.__name__})")
    if domains:
        return domains, None
    return [], "; ".join(reasons) or f"no RAPL package zone under {root}"


class CpuBackend(Backend):
    """One pseudo-device 'cpu': package power/energy (RAPL), host memory used, CPU utilisation."""

    name = "cpu"
    probe_rank = 1000  # last: the host is always there, the fallback where no card's backend starts
    accelerator = False
    field_names = {"sm_clock_mhz": "cpu_clock_mhz", "mem_used_gb": "host_mem_used_gb", "util": "cpu_util_pct",
                   "mem_clock_mhz": "host_mem_clock_mhz", "temp_c": "cpu_temp_c", "power_w": "package_power_w",
                   "energy_j": "package_energy_j"}
    reads = ("power_w", "energy_j", "mem_used_gb", "util", "sm_clock_mhz", "temp_c")

    def __init__(self, powercap_root: Path = POWERCAP) -> None:
        self.domains, self.rapl_reason = find_rapl_domains(powercap_root)
        self.energy_method = "rapl" if self.domains else "none"
        self._last: tuple[float, float] | None = None  # (t, joules) for power from energy deltas
        psutil.cpu_percent(None)  # prime: the first call has no interval to measure

    def devices(self) -> list[str]:
        return ["cpu"]

    def capabilities(self) -> dict[str, str | None]:
        caps: dict[str, str | None] = dict.fromkeys(FIELDS, None)
        for field in ("power_w", "energy_j"):
            caps[field] = None if self.domains else f"no power sensor readable ({self.rapl_reason})"
        caps["sm_clock_mhz"] = None if psutil.cpu_freq() else "cpu frequency not readable"
        caps["mem_clock_mhz"] = "not exposed for host memory"
        caps["temp_c"] = None if _cpu_temp() is not None else "no CPU temperature sensor readable"
        caps["throttle"] = "CPU throttling is not reported by the kernel interface used here"
        return caps

    def read(self) -> list[Reading]:
        t = clock.now()
        energy = sum(d.read_j() for d in self.domains) if self.domains else None
        power = None
        if energy is not None and self._last is not None and t > self._last[0]:
            power = (energy - self._last[1]) / (t - self._last[0])
        if energy is not None:
            self._last = (t, energy)
        freq = psutil.cpu_freq()
        return [Reading(
            t=t,
            device="cpu",
            power_w=power,
            energy_j=energy,
            mem_used_gb=psutil.virtual_memory().used / 1e9,
            util=psutil.cpu_percent(None),
            sm_clock_mhz=freq.current if freq and freq.current > 0 else None,
            temp_c=_cpu_temp(),
        )]

    def fingerprint(self) -> list[dict[str, Any]]:
        freq = psutil.cpu_freq()
        return [{
            "device": "cpu",
            "rapl_domains": [d.name for d in self.domains],
            "rapl": self.rapl_reason or "readable",
            "cpu_freq_max_mhz": freq.max if freq and freq.max > 0 else None,  # a VM reports 0: not measured
        }]


def _cpu_temp() -> float | None:
    """Hottest CPU package/core sensor psutil can see, or None."""
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return None
    try:
        temps = reader()
    except OSError:
        return None
    values = [s.current for name in ("coretemp", "k10temp", "zenpower", "cpu_thermal") for s in temps.get(name, [])]
    return max(values) if values else None
