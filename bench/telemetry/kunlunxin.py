"""Kunlunxin XPUs (P800, R200...) through Kunlunxin's `xpu-smi -m`: one whitespace-separated line per card.

Positions as the public parsers read them (SwanLab's kunlunxin probe, FlagPerf's kunlunxin monitor): field 2
the XPU id, 5 the temperature (C), 9 the power (W), 18 and 19 memory used and total (MiB), 20 utilisation
(%), 22-23 the name. Source: tests/fixtures/smi/xpu-smi-kunlunxin/SOURCE.md. Intel ships a tool of the same
name: its `-m` is not this format, so this backend does not start on Intel's (and Intel's does not start
here). No watch mode is known: one process per sample, at most 1 Hz. Energy integrates the sampled power.
"""

from __future__ import annotations

from typing import Any

from bench.telemetry.smi import SmiBackend, SmiError, gib, number

MIN_FIELDS = 23


class KunlunxinBackend(SmiBackend):
    name = "xpu-smi-kunlunxin"
    probe_rank = 100  # tool shared with Intel: each refuses the other's output, so either order works
    tool = "xpu-smi"
    vendor = "klx"
    torch_type = "cuda"  # Kunlunxin's torch plugin presents the cards as cuda
    max_hz = 1.0
    install = "Kunlunxin's XRE driver (xpu-smi) and its torch plugin for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c")

    def _rows(self) -> dict[str, list[str]]:
        rows = {}
        for line in self.run("-m").splitlines():
            parts = line.split()
            if len(parts) >= MIN_FIELDS and parts[1].isdigit():
                rows[parts[1]] = parts
        if not rows:
            raise SmiError("xpu-smi -m printed no card line of Kunlunxin's format")
        return rows

    def discover(self) -> list[str]:
        try:
            return list(self._rows())
        except SmiError as exc:
            raise SmiError(f"{exc}: not Kunlunxin's xpu-smi (Intel's tool has the same name)") from None

    def sample(self) -> dict[str, dict[str, Any]]:
        return {card: {"temp_c": number(p[4]), "power_w": number(p[8]), "mem_used_gb": gib(p[17]),
                       "util": number(p[19])} for card, p in self._rows().items()}
