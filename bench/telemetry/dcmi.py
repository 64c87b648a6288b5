"""Huawei Ascend NPUs through CANN's DCMI library (libdcmi.so), in-process: no tool to start per sample.

Calls and units as Huawei's DCMI API reference gives them (and public readers use them: nvtop's Ascend
support, several exporters): dcmi_init(); dcmi_get_card_list(&num, list, len) (older drivers:
dcmi_get_card_num_list); dcmi_get_device_num_in_card(card, &n); dcmi_get_device_power_info(card, dev, &p) in
0.1 W; dcmi_get_device_temperature(card, dev, &t) in C; dcmi_get_device_utilization_rate(card, dev, 2, &r),
type 2 the AI Core, in %; dcmi_get_device_hbm_info(card, dev, &info) with memory_size and memory_usage in MB.
No energy counter: energy integrates the sampled power. Without the library, the npu-smi backend reads the
same through the tool.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from bench.core import clock
from bench.telemetry.base import FIELDS, Backend, NotPresent, Reading

LIBRARIES = ("libdcmi.so", "/usr/local/dcmi/libdcmi.so", "/usr/local/Ascend/driver/lib64/driver/libdcmi.so")
LIBRARY_ENV = "CLAIMBENCH_DCMI_LIBRARY"
AICORE = 2  # dcmi_get_device_utilization_rate input_type: the AI Core
MAX_CARDS = 64


class HbmInfo(ctypes.Structure):
    _fields_ = [("memory_size", ctypes.c_ulonglong), ("freq", ctypes.c_uint), ("memory_usage", ctypes.c_ulonglong),
                ("temp", ctypes.c_int), ("bandwith_util_rate", ctypes.c_uint)]


class DcmiBackend(Backend):
    name = "dcmi"
    probe_rank = 50  # before Ascend's tool (npu-smi): in-process where CANN's library is
    vendor = "npu"
    energy_method = "dcmi-power"
    power_method = "dcmi-power"
    max_hz = 10.0
    install = "Ascend driver (libdcmi.so) and torch_npu for the device"
    reads = ("power_w", "mem_used_gb", "util", "temp_c")
    field_names = {"util": "aicore_util_pct"}

    def __init__(self, library: str | None = None) -> None:
        named = library or os.environ.get(LIBRARY_ENV)
        errors = []
        for path in [named] if named else LIBRARIES:
            try:
                self.lib = ctypes.CDLL(path)
                self.library = path
                break
            except OSError as exc:
                errors.append(f"{path}: {str(exc)[:80]}")
        else:
            raise FileNotFoundError("no DCMI library (" + "; ".join(errors) + f"); name one with {LIBRARY_ENV}=PATH")
        if self.lib.dcmi_init() != 0:
            raise RuntimeError("dcmi_init failed")
        self.chips = [(card, dev) for card in self._cards() for dev in range(self._devices_in(card))]
        if not self.chips:
            raise NotPresent("DCMI lists no NPU")
        first = self.read()
        self._unsupported = {f: "DCMI does not report it" for f in FIELDS
                             if f not in self.reads or all(getattr(r, f) is None for r in first)}

    def _cards(self) -> list[int]:
        num, cards = ctypes.c_int(0), (ctypes.c_int * MAX_CARDS)()
        fn = getattr(self.lib, "dcmi_get_card_list", None) or self.lib.dcmi_get_card_num_list
        if fn(ctypes.byref(num), cards, MAX_CARDS) != 0:
            raise RuntimeError("dcmi_get_card_list failed")
        return list(cards[: max(0, min(num.value, MAX_CARDS))])

    def _devices_in(self, card: int) -> int:
        n = ctypes.c_int(0)
        return n.value if self.lib.dcmi_get_device_num_in_card(card, ctypes.byref(n)) == 0 else 0

    def _int(self, fn: str, card: int, dev: int, *args: Any) -> int | None:
        value = ctypes.c_int(0)
        call = getattr(self.lib, fn, None)
        if call is None or call(card, dev, *args, ctypes.byref(value)) != 0:
            return None  # a call the chip refuses is an empty field, never 0
        return value.value

    def devices(self) -> list[str]:
        return [f"npu{card}-{dev}" for card, dev in self.chips]

    def capabilities(self) -> dict[str, str | None]:
        return {f: self._unsupported.get(f) for f in FIELDS}

    def read(self) -> list[Reading]:
        out = []
        for card, dev in self.chips:
            t = clock.now()
            power = self._int("dcmi_get_device_power_info", card, dev)
            util = self._int("dcmi_get_device_utilization_rate", card, dev, AICORE)
            hbm, hbm_info = HbmInfo(), getattr(self.lib, "dcmi_get_device_hbm_info", None)
            used = (hbm.memory_usage * (1 << 20) / 1e9
                    if hbm_info is not None and hbm_info(card, dev, ctypes.byref(hbm)) == 0 else None)
            out.append(Reading(t, f"npu{card}-{dev}", power_w=power / 10 if power is not None else None,
                               temp_c=self._int("dcmi_get_device_temperature", card, dev), util=util,
                               mem_used_gb=used))
        return out

    def fingerprint(self) -> list[dict[str, Any]]:
        return [{"device": d, "library": self.library, "unsupported": self._unsupported} for d in self.devices()]
