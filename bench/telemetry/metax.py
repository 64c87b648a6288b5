"""MetaX GPUs (C500...) through `mx-smi`, one block per card ("GPU#N  NAME  BUS").

`mx-smi --show-usage | --show-memory | --show-temperature | --show-board-power` print, under each card's
"GPU#N" line, "name : value unit" lines: the GPU utilisation in %, "vis_vram used" / "vis_vram total" in KB,
"hotspot" in C, and the board's "Total" power in W, as SwanLab's public MetaX probe reads them (and FlagPerf's
metax monitor the overview table); tests/fixtures/smi/mx-smi/SOURCE.md. Four calls per sample, at most 0.5 Hz.
MetaX cards present as cuda to torch. No energy counter: energy integrates the sampled power.
"""

from __future__ import annotations

import re
from typing import Any

from bench.telemetry.smi import SmiBackend, card_blocks, gib, number

CARD = re.compile(r"^\s*GPU#(\d+)\b")


def blocks(text: str) -> dict[str, dict[str, str]]:
    """Per card ('0'), its 'name' -> 'value unit' lines (names lower-cased)."""
    return card_blocks(text, CARD)


class MetaxBackend(SmiBackend):
    name = "mx-smi"
    probe_rank = 120
    tool = "mx-smi"
    vendor = "mx"
    torch_type = "cuda"
    max_hz = 0.5
    install = "MetaX's MACA driver (mx-smi) and its torch build for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c")

    def discover(self) -> list[str]:
        return list(blocks(self.run("--show-memory")))

    def sample(self) -> dict[str, dict[str, Any]]:
        usage, memory = blocks(self.run("--show-usage")), blocks(self.run("--show-memory"))
        temp, power = blocks(self.run("--show-temperature")), blocks(self.run("--show-board-power"))
        return {card: {
            "util": number(usage.get(card, {}).get("gpu")),
            "mem_used_gb": gib(memory.get(card, {}).get("vis_vram used"), bare="kb"),
            "temp_c": number(temp.get(card, {}).get("hotspot")),
            "power_w": number(power.get(card, {}).get("total")),
        } for card in self.cards}
