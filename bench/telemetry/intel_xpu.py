"""Intel data-center GPUs through `xpu-smi` (XPU Manager's CLI), its dump mode left running.

Cards from `xpu-smi discovery -j` ({"device_list": [{"device_id", "device_name", ...}]}); readings from
`xpu-smi dump -d IDS -m 0,1,2,3,18 -i 1`, which prints a CSV header ("Timestamp, DeviceId, GPU Utilization (%),
GPU Power (W), GPU Frequency (MHz), GPU Core Temperature (Celsius Degree), GPU Memory Used (MiB)") and then a
row per card per second until stopped; columns are read by name. Formats from XPU Manager's own user guide
(tests/fixtures/smi/xpu-smi-intel/SOURCE.md). Kunlunxin ships a tool of the same name with another format:
each backend starts only on the output it knows. Energy integrates the sampled power (metric 8, "GPU Energy
Consumed", is not used: the guide does not say whether it is a running total).
"""

from __future__ import annotations

import json
from typing import Any

from bench.telemetry.smi import SmiError, WatchSmiBackend, gib, number

METRICS = "0,1,2,3,18"
COLUMNS = {"GPU Utilization": "util", "GPU Power": "power_w", "GPU Frequency": "sm_clock_mhz",
           "GPU Core Temperature": "temp_c", "GPU Memory Used": "mem_used_gb"}


class IntelXpuBackend(WatchSmiBackend):
    name = "xpu-smi"
    probe_rank = 110
    tool = "xpu-smi"
    vendor = "xpu"
    period_s = 1.0
    install = "Intel's XPU Manager (xpu-smi) and a torch build with XPU support"
    reads = ("power_w", "mem_used_gb", "util", "temp_c", "sm_clock_mhz")

    def __init__(self) -> None:
        self._columns: list[str] = []
        super().__init__()

    def discover(self) -> list[str]:
        try:
            data = json.loads(self.run("discovery", "-j"))
        except json.JSONDecodeError as exc:
            raise SmiError(f"xpu-smi discovery printed no JSON ({exc.msg}): not Intel's xpu-smi "
                           "(Kunlunxin's tool has the same name)") from None
        except SmiError as exc:
            raise SmiError(f"{exc}: not Intel's xpu-smi (Kunlunxin's tool has the same name)") from None
        cards = data.get("device_list") if isinstance(data, dict) else None
        if not isinstance(cards, list):
            raise SmiError("xpu-smi discovery JSON has no device_list")
        return [str(c["device_id"]) for c in cards if isinstance(c, dict) and "device_id" in c]

    def watch_args(self) -> list[str]:
        return ["dump", "-d", ",".join(self.cards), "-m", METRICS, "-i", f"{self.period_s:g}"]

    def parse_line(self, line: str) -> list[tuple[str, dict[str, Any]]]:
        cells = [c.strip() for c in line.split(",")]
        if cells and cells[0] == "Timestamp":
            self._columns = cells
            return []
        if not self._columns or len(cells) != len(self._columns) or "DeviceId" not in self._columns:
            return []
        values = dict(zip(self._columns, cells, strict=True))
        card = values["DeviceId"]
        fields: dict[str, Any] = {}
        for column, text in values.items():
            for prefix, field in COLUMNS.items():
                if column.startswith(prefix):
                    fields[field] = gib(text) if field == "mem_used_gb" else number(text)
        return [(card, fields)] if card.isdigit() else []
