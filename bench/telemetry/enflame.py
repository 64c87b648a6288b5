"""Enflame GCUs (S60, i20...) through `efsmi -q -d DEVICE,POWER,TEMP,MEMORY,USAGE`, every card in one call.

Blocks start at "DEV ID N"; inside, "Name : value unit" lines, as public readers parse them: gpustack's and
gpu_tools' efsmi detectors ("Dev Name", "GCU Temp : 34 C", "GCU Usage : 0.0 %", memory as "Mem Size" /
"Mem Usage" in some versions and "Total Size" / "Used Size" in others, MiB) and a public collector's query of
"Cur Power" (tests/fixtures/smi/efsmi/SOURCE.md). The format varies by version: names are tried in turn.
No energy counter: energy integrates the sampled power.
"""

from __future__ import annotations

import re
from typing import Any

from bench.telemetry.smi import SmiBackend, card_blocks, first, gib, number

DEV = re.compile(r"^\s*DEV ID (\d+)\s*$")
QUERY = ("-q", "-d", "DEVICE,POWER,TEMP,MEMORY,USAGE")


def devices_of(text: str) -> dict[str, dict[str, str]]:
    """Per card, its 'name' -> 'value unit' lines (names lower-cased; `first` reads them in any case)."""
    return card_blocks(text, DEV)


class EnflameBackend(SmiBackend):
    name = "efsmi"
    probe_rank = 130
    tool = "efsmi"
    vendor = "gcu"
    max_hz = 1.0
    install = "Enflame's TopsRider driver (efsmi) and torch_gcu for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c")

    def discover(self) -> list[str]:
        return list(devices_of(self.run(*QUERY)))

    def sample(self) -> dict[str, dict[str, Any]]:
        return {card: {
            "power_w": number(first(v, "Cur Power", "Power Usage", "Power")),
            "temp_c": number(first(v, "GCU Temp", "Temperature")),
            "util": number(first(v, "GCU Usage", "Device Usage")),
            "mem_used_gb": gib(first(v, "Mem Usage", "Used Size")),
        } for card, v in devices_of(self.run(*QUERY)).items()}
