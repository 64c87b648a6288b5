"""Moore Threads GPUs through `mthreads-gmi -q --json` (its nvidia-smi-like query), every card in one call.

The JSON as mthreads-gmi prints it: {"Driver Version", "GPU": [{"Index", "Product Name", "FB Memory Usage":
{"Total", "Used"}, "Utilization": {"Gpu"}, "Temperature": {"GPU Current Temp"}, "Power Readings": {"Power Draw "}}]}
(the power key carries a trailing space in the versions SwanLab's public parser reads; both spellings are taken).
Source: tests/fixtures/smi/mthreads-gmi/SOURCE.md. No energy counter: energy integrates the sampled power.
The Python binding mthreads-ml-py would avoid a process per sample; not used yet.
"""

from __future__ import annotations

import json
from typing import Any

from bench.telemetry.smi import SmiBackend, SmiError, first, gib, number


class MooreThreadsBackend(SmiBackend):
    name = "mthreads-gmi"
    probe_rank = 80  # after Moore Threads' binding (mtml)
    tool = "mthreads-gmi"
    vendor = "musa"
    install = "the MUSA driver (mthreads-gmi) and torch_musa for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c", "sm_clock_mhz")

    def _query(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.run("-q", "--json"))
        except json.JSONDecodeError as exc:
            raise SmiError(f"mthreads-gmi printed no JSON ({exc.msg})") from None
        cards = data.get("GPU") if isinstance(data, dict) else None
        if not isinstance(cards, list):
            raise SmiError("mthreads-gmi JSON has no GPU list")
        return [c for c in cards if isinstance(c, dict)]

    def discover(self) -> list[str]:
        return [str(c.get("Index", i)) for i, c in enumerate(self._query())]

    def sample(self) -> dict[str, dict[str, Any]]:
        out = {}
        for i, card in enumerate(self._query()):
            memory = card.get("FB Memory Usage") or {}
            clocks = card.get("Clocks") or {}
            out[str(card.get("Index", i))] = {
                "power_w": number(first(card.get("Power Readings") or {}, "Power Draw ", "Power Draw")),
                "mem_used_gb": gib(memory.get("Used")),
                "util": number((card.get("Utilization") or {}).get("Gpu")),
                "temp_c": number((card.get("Temperature") or {}).get("GPU Current Temp")),
                "sm_clock_mhz": number(first(clocks, "Graphics", "GPU")),
            }
        return out
