"""Iluvatar CoreX GPUs (BI-V150, MR-V100, MR-V50) through `ixsmi`, the nvidia-smi look-alike of their driver, run
once per sample, every card in one call: where its NVML-compatible library (libixml.so, the nvml-compat backend)
cannot be loaded, the tool still can be.

One CSV line per card, values with their units ("0 %", "116 MiB", "30 C", "9.26 W"), for the query a public
reader runs (gpustack-runtime's Iluvatar detector: tests/fixtures/smi/ixsmi/SOURCE.md). As nvidia-smi does, a
field the card does not give reads "N/A" or "[Not Supported]": empty, never 0. No energy counter: energy
integrates the sampled power.
"""

from __future__ import annotations

import csv
from typing import Any

from bench.telemetry.smi import SmiBackend, SmiError, gib, number

FIELDS = ("index", "name", "utilization.gpu", "memory.total", "memory.used", "temperature.gpu",
          "power.default_limit", "power.draw")
QUERY = ("--format=csv,noheader", "--query-gpu=" + ",".join(FIELDS))


def cards_of(text: str) -> dict[str, dict[str, str]]:
    """Per card index, its query fields by name; lines of another shape (a banner, an error) are skipped."""
    cards = {}
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) == len(FIELDS) and row[0].strip().isdigit():
            cards[row[0].strip()] = dict(zip(FIELDS, (cell.strip() for cell in row), strict=True))
    return cards


class IluvatarBackend(SmiBackend):
    name = "ixsmi"
    probe_rank = 25  # after the library (nvml-compat), which reads the same cards in-process
    tool = "ixsmi"
    vendor = "ix"
    torch_type = "cuda"  # Iluvatar's CoreX torch presents the cards as cuda
    max_hz = 2.0
    install = "Iluvatar's CoreX driver (ixsmi) and its CUDA-compatible torch for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c")

    def discover(self) -> list[str]:
        cards = cards_of(self.run(*QUERY))
        if not cards:
            raise SmiError(f"ixsmi {' '.join(QUERY)} printed no card line")
        return list(cards)

    def sample(self) -> dict[str, dict[str, Any]]:
        return {card: {"power_w": number(v["power.draw"]), "mem_used_gb": gib(v["memory.used"]),
                       "util": number(v["utilization.gpu"]), "temp_c": number(v["temperature.gpu"])}
                for card, v in cards_of(self.run(*QUERY)).items()}
