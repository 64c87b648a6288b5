"""Telemetry backends: name -> class, tried in this order by the probe.

Each backend is one module whose class declares what it reads (`reads`, a subset of base.FIELDS),
whether it reads an accelerator (skipped on a CPU run, where the host does the work), and how it
names its energy method (`energy_method` for its counter, `power_method` when energy is integrated
from sampled power). Constructing the class is its probe: it raises when its library or card is not
there, and the probe moves on. Adding a backend is one module plus one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

BACKENDS: dict[str, str] = {
    "nvml": "bench.telemetry.nvml:NvmlBackend",
    "nvml-compat": "bench.telemetry.nvml:NvmlCompatBackend",  # Iluvatar's libixml.so, or a library named
    "amdsmi": "bench.telemetry.amdsmi_backend:AmdSmiBackend",
    "hy-smi": "bench.telemetry.hygon:HygonBackend",
    "dcmi": "bench.telemetry.dcmi:DcmiBackend",  # Ascend, in-process where CANN's library is present
    "npu-smi": "bench.telemetry.ascend:AscendBackend",  # Ascend, the tool's watch mode otherwise
    "mtml": "bench.telemetry.nvml:MtmlBackend",  # Moore Threads' binding where installed
    "mthreads-gmi": "bench.telemetry.moorethreads:MooreThreadsBackend",
    "cnmon": "bench.telemetry.cambricon:CambriconBackend",
    "xpu-smi-kunlunxin": "bench.telemetry.kunlunxin:KunlunxinBackend",  # Kunlunxin's xpu-smi -m
    "xpu-smi": "bench.telemetry.intel_xpu:IntelXpuBackend",  # Intel's xpu-smi dump
    "mx-smi": "bench.telemetry.metax:MetaxBackend",
    "efsmi": "bench.telemetry.enflame:EnflameBackend",
    "cpu": "bench.telemetry.cpu:CpuBackend",
}
ENV_BACKEND = "CLAIMBENCH_TELEMETRY"  # a backend's name: use it, and only it (a card torch cannot use yet)


def backend_class(name: str) -> Any:
    """The backend's class (its module imported; its library is imported only when it is constructed)."""
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
