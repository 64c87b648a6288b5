"""Cambricon MLUs through `cnmon info` (Neuware's monitor), one section per card.

`cnmon info -m|-u|-e|-p` print, per card ("Card : N"), "Name : value" lines grouped under section lines
("Physical Memory Usage :" then "Total : N MiB", "Used : N MiB"; "Temperature :" then "Board", "Chip";
"Power :" then "Usage : N W"), and "MLU Average : N %" for utilisation, as SwanLab's public cambricon probe
reads them (tests/fixtures/smi/cnmon/SOURCE.md). Four calls per sample, so at most 0.5 Hz; cnmon's own
refresh mode redraws a terminal screen and is not read. No energy counter: energy integrates the power.
"""

from __future__ import annotations

from typing import Any

from bench.telemetry.smi import SmiBackend, gib, number

QUERIES = {"memory": "-m", "usage": "-u", "temperature": "-e", "power": "-p"}


def sections(text: str) -> dict[str, dict[str, str]]:
    """Per card, its 'section/name' -> value ('physical memory usage/used' -> '1024 MiB'); a line with no value
    opens a section. Card blocks start at 'Card : N'."""
    cards: dict[str, dict[str, str]] = {}
    card, section = None, ""
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, _, value = (part.strip() for part in line.partition(":"))
        if key.lower() == "card" and value.isdigit():
            card, section = value, ""
            cards.setdefault(card, {})
        elif card is not None and key:
            if value:
                cards[card].setdefault(f"{section}/{key.lower()}" if section else key.lower(), value)
            else:
                section = key.lower()
    return cards


class CambriconBackend(SmiBackend):
    name = "cnmon"
    probe_rank = 90
    tool = "cnmon"
    vendor = "mlu"
    max_hz = 0.5
    timeout_s = 5.0
    install = "Cambricon's Neuware (cnmon) and torch_mlu for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c")

    def discover(self) -> list[str]:
        return list(sections(self.run("info", "-m")))

    def sample(self) -> dict[str, dict[str, Any]]:
        got = {what: sections(self.run("info", flag)) for what, flag in QUERIES.items()}
        out = {}
        for card in self.cards:
            memory, usage = got["memory"].get(card, {}), got["usage"].get(card, {})
            temp, power = got["temperature"].get(card, {}), got["power"].get(card, {})
            out[card] = {
                "mem_used_gb": gib(memory.get("physical memory usage/used")),
                "util": number(usage.get("mlu average") or usage.get("utilization/mlu average")),
                "temp_c": number(temp.get("temperature/chip")),
                "power_w": number(power.get("power/usage")),
            }
        return out
