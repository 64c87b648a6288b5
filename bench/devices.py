"""The accelerator in use: pick it, name it, synchronise it, read its memory and pick a dtype."""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from bench.errors import BadInput

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Device:
    """A resolved torch device and what we know about it."""

    torch_device: torch.device
    name: str
    total_memory_bytes: int

    @property
    def type(self) -> str:
        return self.torch_device.type

    def __str__(self) -> str:
        return str(self.torch_device)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """CPU feature flags (Linux); empty elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_device(spec: str) -> Device:
    """'auto' picks CUDA/ROCm, then XPU, then MPS, then CPU. A named device must exist."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            spec = "cuda"
        elif hasattr(torch, "xpu") and torch.xpu.is_available():
            spec = "xpu"
        elif torch.backends.mps.is_available():
            spec = "mps"
        else:
            spec = "cpu"
    if not re.fullmatch(r"(cpu|cuda|xpu|mps)(:\d+)?", spec):
        raise BadInput(f"unknown device '{spec}' (use auto, cpu, cuda, cuda:N, xpu or mps)")
    dev = torch.device(spec)
    if dev.type == "cpu":
        return Device(dev, cpu_name(), psutil.virtual_memory().total)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInput(f"device '{spec}' requested but torch sees no CUDA/ROCm device "
                           f"(torch {torch.__version__})")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise BadInput(f"device '{spec}' does not exist ({torch.cuda.device_count()} CUDA device(s))")
        dev = torch.device("cuda", index)
        props = torch.cuda.get_device_properties(index)
        return Device(dev, props.name, props.total_memory)
    if dev.type == "xpu":
        if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
            raise BadInput(f"device '{spec}' requested but torch sees no XPU")
        return Device(dev, torch.xpu.get_device_name(dev.index or 0), 0)
    if not torch.backends.mps.is_available():
        raise BadInput(f"device '{spec}' requested but MPS is not available")
    return Device(dev, "Apple MPS", psutil.virtual_memory().total)


def synchronize(device: Device) -> None:
    """Wait for all queued work on the device, so a timestamp means 'done'."""
    if device.type == "cuda":
        torch.cuda.synchronize(device.torch_device)
    elif device.type == "xpu":
        torch.xpu.synchronize(device.torch_device)
    elif device.type == "mps":
        torch.mps.synchronize()


def pick_dtype(requested: str, device: Device) -> tuple[torch.dtype, str]:
    """Resolve 'auto' to a dtype and say why.

    On a GPU bf16 is used where supported (Ampere and newer), else fp16. On a CPU
    bf16 is used only when the CPU has native bf16 instructions (AVX512-BF16 or
    AMX); without them PyTorch emulates bf16 and it is slower than fp32.
    """
    if requested != "auto":
        if requested not in DTYPES:
            raise BadInput(f"unknown dtype '{requested}' (use auto, {', '.join(DTYPES)})")
        return DTYPES[requested], "requested"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "auto: GPU supports bf16"
        return torch.float16, "auto: GPU lacks bf16, fp16"
    if device.type == "cpu":
        flags = cpu_flags()
        native = flags & {"avx512_bf16", "amx_bf16"}
        if native:
            return torch.bfloat16, f"auto: CPU has native bf16 ({', '.join(sorted(native))})"
        return torch.float32, "auto: CPU has no native bf16 instructions, fp32 is faster"
    return torch.float16, "auto: fp16"


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> 'bfloat16'."""
    return str(dtype).removeprefix("torch.")


def reset_peak_memory(device: Device) -> None:
    """Start a new peak-memory window."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device.torch_device)


def peak_memory_bytes(device: Device) -> float | None:
    """Peak device memory allocated by torch since the last reset; None where torch cannot tell."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device.torch_device))
    return None


def free_memory_bytes(device: Device) -> int:
    """Memory free for new allocations on the device (host available memory on CPU)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device.torch_device)
        return int(free)
    return int(psutil.virtual_memory().available)


def usable_memory_bytes(device: Device) -> float:
    """Memory this process could hold at most now: what the device has free plus what torch already holds.

    On a GPU that is the driver's free memory plus torch's reserved pool (the CUDA
    context and other processes are already out of it, unlike the card's total);
    on the host, available memory plus this process's RSS.
    """
    if device.type == "cuda":
        return float(free_memory_bytes(device) + torch.cuda.memory_reserved(device.torch_device))
    return float(free_memory_bytes(device) + psutil.Process().memory_info().rss)


def empty_cache(device: Device) -> None:
    """Give cached allocator blocks back so the next case starts clean (after an OOM too)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "xpu":
        torch.xpu.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def reset_host_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs). False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def host_peak_rss_bytes() -> float:
    """Peak resident memory of this process since the last reset (VmHWM), else since start."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def resident_bytes(device: Device) -> float:
    """Memory the process holds now: torch's allocation on a GPU, the process RSS on the host."""
    if device.type == "cuda":
        return float(torch.cuda.memory_allocated(device.torch_device))
    return float(psutil.Process().memory_info().rss)


def set_threads(requested: int) -> int:
    """torch's CPU threads for a case: as requested, or (0) the cores this process may use. Returns the count."""
    from bench.noise import own_cores

    count = requested or own_cores()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return torch.get_num_threads()
