"""What this run ran on: host, software versions, git state and per-device facts (for run.json and `bench env`)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from typing import Any

import psutil
import torch

from bench.core.paths import PROJECT_ROOT
from bench.core.process_env import ALLOC_CONF_VARS
from bench.hardware.devices import Device, cpu_name, pick_dtype, resolve_device
from bench.telemetry.base import Backend
from bench.telemetry.probe import accelerators_seen, probe_backend


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the claimbench checkout, when it is a git checkout."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True,
                                 timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "commit_time": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    # The commit's time orders a history (bench history): a run's own start time would order re-runs of old commits last.
    return {"commit": commit, "dirty": bool(status), "commit_time": git("show", "-s", "--format=%cI", "HEAD")}


def torch_devices() -> list[dict[str, Any]]:
    """What torch sees: CUDA/ROCm devices with their properties."""
    out = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append({
                "index": i, "name": p.name, "memory_total_gb": p.total_memory / 1e9,
                "capability": f"{p.major}.{p.minor}", "multiprocessors": p.multi_processor_count,
                "bf16": torch.cuda.is_bf16_supported(),
            })
    return out


def fingerprint(device: Device | None, backend: Backend) -> dict[str, Any]:
    """Everything that makes two results comparable or not."""
    vm = psutil.virtual_memory()
    return {
        "host": socket.gethostname(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "ram_gb": vm.total / 1e9,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {
            "claimbench": package_version("claimbench"),
            "torch": torch.__version__,
            "transformers": package_version("transformers"),
            "vllm": package_version("vllm"),
            "nvidia-ml-py": package_version("nvidia-ml-py"),
            "cuda_runtime": torch.version.cuda,
            "rocm": getattr(torch.version, "hip", None),
        },
        "git": git_state(),
        # The GPU allocator's configuration changes how much fits before an OOM.
        "allocator_conf": {v: os.environ[v] for v in ALLOC_CONF_VARS if os.environ.get(v)},
        "device": {"torch": str(device), "name": device.name, "vendor": device.vendor,
                   "memory_total_gb": device.total_memory_bytes / 1e9} if device else None,
        "torch_devices": torch_devices(),
        "accelerators": backend.fingerprint(),
        "telemetry": {
            "backend": backend.name,
            "energy_method": backend.energy_reason(),
            "capabilities": {backend.field_names.get(k, k): (v or "readable") for k, v in backend.capabilities().items()},
        },
    }


def environment() -> tuple[dict[str, Any], Device, list[str]]:
    """`bench env`'s facts: the fingerprint of this machine's auto device and its telemetry, the backends tried,
    auto's dtype, and every card a vendor's tool sees (usable by torch or not)."""
    device = resolve_device("auto")
    backend, tried = probe_backend(device.type)
    info = fingerprint(device, backend)
    info["telemetry"]["probe"] = tried
    info["dtype_auto"] = pick_dtype("auto", device)[1]
    info["vendor"], info["accelerators_seen"] = device.vendor, accelerators_seen()
    backend.close()
    return info, device, tried
