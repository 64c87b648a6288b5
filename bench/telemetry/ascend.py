"""Huawei Ascend NPUs through `npu-smi` (CANN's management tool), one chip per device label.

`npu-smi info watch -s ptaicmb -d 1` is left running: it prints a header (NpuID(Idx) ChipId(Idx) Pwr(W)
Temp(C) AI Core(%) AI Cpu(%) Ctrl Cpu(%) Memory(%) Memory BW(%)) and then a row per chip per second, so power,
temperature and AI Core use cost no process per sample. HBM use and the AI Core clock are not in the watch
rows: `info -t usages -i NPU -c CHIP` ("Name : value" lines: "HBM Capacity(MB)", "HBM Usage Rate(%)",
"Aicore Freq(MHZ)") is read once per slow period. Chips from `info -m` (NPU ID, Chip ID, Chip Logic ID, Chip
Name; the MCU has no logic id). Formats as public readers parse them (tests/fixtures/smi/npu-smi/SOURCE.md).
No energy counter: energy integrates the sampled power. Where CANN's DCMI library is present the `dcmi`
backend reads the same through the library instead.
"""

from __future__ import annotations

import re
from typing import Any

from bench.telemetry.smi import WatchSmiBackend, first, key_values, number

UTIL = ("Aicore Usage Rate(%)", "NPU Utilization(%)", "Chip Usage Rate(%)")
HBM_RATE = ("HBM Usage Rate(%)",)
HBM_TOTAL = ("HBM Capacity(MB)",)
CLOCK = ("Aicore Freq(MHZ)", "Aicore curFreq(MHZ)")
COLUMN = re.compile(r"[A-Za-z][A-Za-z ]*?\([^)]*\)")  # header names hold single spaces ("AI Core(%)")
WATCH_FIELDS = {"Pwr(W)": "power_w", "Temp(C)": "temp_c", "AI Core(%)": "util"}


class AscendBackend(WatchSmiBackend):
    name = "npu-smi"
    probe_rank = 60  # Ascend's tool, after the in-process library (dcmi)
    tool = "npu-smi"
    vendor = "npu"
    period_s = 1.0
    install = "Ascend driver and CANN toolkit; torch_npu for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c", "sm_clock_mhz")
    field_names = {"sm_clock_mhz": "aicore_clock_mhz", "util": "aicore_util_pct"}

    def __init__(self) -> None:
        self._columns: list[str] = []
        super().__init__()

    def discover(self) -> list[str]:
        cards = []
        for line in self.run("info", "-m").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 4 and parts[0].isdigit() and parts[1].isdigit() and parts[2].isdigit():
                cards.append(f"{parts[0]}-{parts[1]}")  # the MCU has no logic id: not a compute chip
        return cards

    def watch_args(self) -> list[str]:
        return ["info", "watch", "-s", "ptaicmb", "-d", f"{self.period_s:g}"]

    def parse_line(self, line: str) -> list[tuple[str, dict[str, Any]]]:
        if line.lstrip().startswith("NpuID"):
            self._columns = COLUMN.findall(line)  # read by name: a version that reorders columns is read right
            return []
        parts = line.split()
        if not self._columns or len(parts) != len(self._columns) or not (parts[0].isdigit() and parts[1].isdigit()):
            return []
        values = dict(zip(self._columns, parts, strict=True))
        return [(f"{parts[0]}-{parts[1]}", {field: number(values.get(col)) for col, field in WATCH_FIELDS.items()})]

    def slow_sample(self) -> dict[str, dict[str, Any]]:
        out = {}
        for card in self.cards:
            npu, chip = card.split("-")
            usage = key_values(self.run("info", "-t", "usages", "-i", npu, "-c", chip))
            rate, total = number(first(usage, *HBM_RATE)), number(first(usage, *HBM_TOTAL))
            out[card] = {
                "mem_used_gb": rate * total / 100 * (1 << 20) / 1e9 if rate is not None and total is not None else None,
                "sm_clock_mhz": number(first(usage, *CLOCK)),
                "util": number(first(usage, *UTIL)),  # only where the watch row gave none
            }
        return out
