"""Hygon DCUs through `hy-smi` (DTK's ROCm-SMI-like tool), every card in one JSON call.

Keys as hy-smi prints them with --json: {"card0": {"Average Graphics Package Power (W)", "DCU use (%)",
"DCU memory use (%)", "Temperature (Sensor mem) (C)", ...}}, as SwanLab's public parser reads them; VRAM in bytes
from --showmeminfo vram where the version gives it. Source: tests/fixtures/smi/hy-smi/SOURCE.md.
No energy counter: energy integrates the sampled power.
"""

from __future__ import annotations

import json
from typing import Any

from bench.telemetry.smi import SmiBackend, SmiError, first, number

ARGS = ("--showpower", "--showuse", "--showmemuse", "--showtemp", "--showmeminfo", "vram", "--json")


class HygonBackend(SmiBackend):
    name = "hy-smi"
    probe_rank = 40
    tool = "hy-smi"
    vendor = "dcu"
    install = "Hygon's DTK (hy-smi) and its ROCm torch build for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c")

    def _query(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.run(*ARGS))
        except json.JSONDecodeError as exc:
            raise SmiError(f"hy-smi printed no JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise SmiError("hy-smi JSON is not a table of cards")
        return {k.removeprefix("card"): v for k, v in data.items() if k.startswith("card") and isinstance(v, dict)}

    def discover(self) -> list[str]:
        return list(self._query())

    def sample(self) -> dict[str, dict[str, Any]]:
        out = {}
        for card, values in self._query().items():
            used = number(first(values, "VRAM Total Used Memory (B)"))
            out[card] = {
                "power_w": number(first(values, "Average Graphics Package Power (W)", "Current Socket Graphics "
                                                "Package Power (W)")),
                "util": number(first(values, "DCU use (%)", "GPU use (%)")),
                "mem_used_gb": used / 1e9 if used is not None else None,
                "temp_c": number(first(values, "Temperature (Sensor mem) (C)", "Temperature (Sensor junction) (C)",
                                       "Temperature (Sensor edge) (C)")),
            }
        return out
