"""Huawei Ascend NPUs through `npu-smi` (CANN's management tool), one chip per device label.

Formats as npu-smi prints them (`npu-smi info -m`: NPU ID, Chip ID, Chip Logic ID, Chip Name; `info -t power|usages|temp
-i NPU -c CHIP`: "Name : value" lines; the power line is "Power Dissipation(W)" on some chips and "NPU Real-time
Power(W)" on others), as read by SwanLab's and ait's public parsers (tests/fixtures/smi/npu-smi/SOURCE.md).
No energy counter: energy integrates the sampled power. DCMI (libdcmi.so) would be faster; not used yet.
"""

from __future__ import annotations

from typing import Any

from bench.telemetry.smi import SmiBackend, first, key_values, number

POWER = ("Power Dissipation(W)", "NPU Real-time Power(W)", "Power(W)", "Chip Power(W)")
UTIL = ("Aicore Usage Rate(%)", "NPU Utilization(%)", "Chip Usage Rate(%)")
HBM_RATE = ("HBM Usage Rate(%)",)
HBM_TOTAL = ("HBM Capacity(MB)",)
TEMP = ("Temperature(C)", "NPU Temperature(C)", "Chip Temperature(C)", "NPU Real-time Temperature(C)")
CLOCK = ("Aicore Freq(MHZ)", "Aicore curFreq(MHZ)")


class AscendBackend(SmiBackend):
    name = "npu-smi"
    tool = "npu-smi"
    vendor = "npu"
    max_hz = 1.0  # three calls per chip per sample
    install = "Ascend driver and CANN toolkit; torch_npu for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c", "sm_clock_mhz")
    field_names = {"sm_clock_mhz": "aicore_clock_mhz", "util": "aicore_util_pct"}

    def discover(self) -> list[str]:
        cards = []
        for line in self.run("info", "-m").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 4 and parts[0].isdigit() and parts[1].isdigit() and parts[2].isdigit():
                cards.append(f"{parts[0]}-{parts[1]}")  # the MCU has no logic id: not a compute chip
        return cards

    def sample(self) -> dict[str, dict[str, Any]]:
        out = {}
        for card in self.cards:
            npu, chip = card.split("-")
            power = key_values(self.run("info", "-t", "power", "-i", npu, "-c", chip))
            usage = key_values(self.run("info", "-t", "usages", "-i", npu, "-c", chip))
            temp = key_values(self.run("info", "-t", "temp", "-i", npu, "-c", chip))
            rate, total = number(first(usage, *HBM_RATE)), number(first(usage, *HBM_TOTAL))
            out[card] = {
                "power_w": number(first(power, *POWER)),
                "util": number(first(usage, *UTIL)),
                "mem_used_gb": rate * total / 100 * (1 << 20) / 1e9 if rate is not None and total is not None else None,
                "temp_c": number(first(temp, *TEMP)),
                "sm_clock_mhz": number(first(usage, *CLOCK)),
            }
        return out
