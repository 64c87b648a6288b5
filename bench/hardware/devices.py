"""The accelerator in use: pick it, name it, synchronise it, read its memory and pick a dtype."""

from __future__ import annotations

import contextlib
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

from bench.core.errors import BadInput
from bench.core.noise import own_cores

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

    @property
    def vendor(self) -> str:
        """Who made it (nvidia, amd, huawei, iluvatar, moorethreads...; intel or amd for a CPU)."""
        return vendor_of(self.type, self.name)


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


# Vendors' torch plugins: importing one registers its device type with torch (torch.npu, torch.musa, ...).
PLUGINS = {"npu": "torch_npu", "musa": "torch_musa", "mlu": "torch_mlu", "gcu": "torch_gcu"}
ACCELERATORS = ("cuda", "xpu", "mps", *PLUGINS)
INSTALL = {"npu": "Huawei's torch_npu (CANN)", "musa": "Moore Threads' torch_musa", "mlu": "Cambricon's torch_mlu",
           "gcu": "Enflame's torch_gcu", "xpu": "a torch build with XPU support", "cuda": "a CUDA or ROCm torch build"}
# Cards that present as `cuda` but are not NVIDIA's, told apart by the name torch reports (and ROCm's HIP).
CUDA_LOOKALIKES = (("iluvatar", r"iluvatar|\bbi-v\d|\bmr-v\d|corex"), ("metax", r"metax|\bmxc\d|\bc500\b"),
                   ("kunlunxin", r"kunlun|\bp800\b|\br200\b|\br300\b"), ("hygon", r"hygon|\bdcu\b|\bk100\b|\bz100\b"))


def _load_plugin(kind: str) -> None:
    """Import a vendor's torch plugin when it is installed (it registers the device type with torch)."""
    import importlib
    import importlib.util

    module = PLUGINS.get(kind)
    if module and importlib.util.find_spec(module) is not None:
        importlib.import_module(module)


def backend_module(kind: str) -> Any:
    """torch's module for a device type (torch.cuda, torch.npu once torch_npu is imported, ...), or None."""
    return getattr(torch, kind, None) if kind != "cpu" else None


def _available(kind: str) -> bool:
    module = backend_module(kind)
    if kind == "mps":
        return torch.backends.mps.is_available()
    return bool(module is not None and getattr(module, "is_available", lambda: False)())


def auto_device() -> str:
    """The accelerator torch reports (torch.accelerator, torch >= 2.6, after loading any vendor plugin
    installed), else the first available backend, else the CPU."""
    for kind in PLUGINS:
        with contextlib.suppress(Exception):  # a broken plugin is said by bench env; auto falls back
            _load_plugin(kind)
    accel = getattr(torch, "accelerator", None)
    if accel is not None and hasattr(accel, "current_accelerator"):
        current = accel.current_accelerator() if accel.is_available() else None
        if current is not None:
            return current.type
    return next((kind for kind in ACCELERATORS if _available(kind)), "cpu")


def vendor_of(kind: str, name: str) -> str:
    """Who made the device: a cuda device is NVIDIA's unless its name (or ROCm) says otherwise."""
    lowered = name.lower()
    if kind == "cpu":
        return "amd" if "amd" in lowered else "intel" if "intel" in lowered else "arm" if "arm" in lowered else ""
    if kind == "cuda":
        for vendor, pattern in CUDA_LOOKALIKES:
            if re.search(pattern, lowered):
                return vendor
        return "amd" if getattr(torch.version, "hip", None) else "nvidia"
    return {"npu": "huawei", "musa": "moorethreads", "mlu": "cambricon", "gcu": "enflame", "xpu": "intel",
            "mps": "apple"}.get(kind, "")


def resolve_device(spec: str) -> Device:
    """'auto' picks the accelerator torch reports, else the CPU. A named device must exist: cpu, cuda[:N],
    npu[:N], musa[:N], mlu[:N], gcu[:N], xpu[:N], mps (a vendor's plugin is imported when it is installed)."""
    spec = spec.strip().lower()
    if spec == "auto":
        spec = auto_device()
    match = re.fullmatch(r"([a-z]+)(?::(\d+))?", spec)
    if not match or match.group(1) not in ("cpu", *ACCELERATORS):
        raise BadInput(f"unknown device '{spec[:80]}' (use auto, cpu, {', '.join(ACCELERATORS)}, with :N for a card)")
    kind, index = match.group(1), int(match.group(2) or 0)
    if kind == "cpu":
        return Device(torch.device("cpu"), cpu_name(), psutil.virtual_memory().total)
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise BadInput(f"device '{spec}' requested but MPS is not available")
        return Device(torch.device("mps"), "Apple MPS", psutil.virtual_memory().total)
    try:
        _load_plugin(kind)
    except Exception as exc:  # noqa: BLE001 - a plugin that fails to import is bad input, said in one line
        raise BadInput(f"device '{spec}': {PLUGINS[kind]} is installed but fails to import: {str(exc)[:120]}") from None
    module = backend_module(kind)
    if not _available(kind):
        raise BadInput(f"device '{spec}' requested but torch sees no {kind} device (torch {torch.__version__}; "
                       f"install {INSTALL.get(kind, 'its torch plugin')})")
    count = module.device_count()
    if index >= count:
        raise BadInput(f"device '{spec}' does not exist ({count} {kind} device(s))")
    dev = torch.device(kind, index)
    name, total = _name_and_memory(module, index)
    return Device(dev, name, total)


def _name_and_memory(module: Any, index: int) -> tuple[str, int]:
    """The device's name and total memory from its backend module (0 where it does not say)."""
    props = module.get_device_properties(index) if hasattr(module, "get_device_properties") else None
    name = getattr(props, "name", None) or (module.get_device_name(index) if hasattr(module, "get_device_name")
                                            else "unknown device")
    total = int(getattr(props, "total_memory", 0) or 0)
    if not total and hasattr(module, "mem_get_info"):
        try:
            total = int(module.mem_get_info(index)[1])
        except Exception:  # noqa: BLE001 - a plugin without it: memory unknown, not a crash
            total = 0
    return str(name), total


def synchronize(device: Device) -> None:
    """Wait for all queued work on the device, so a timestamp means 'done'."""
    if device.type == "cpu":
        return
    if device.type == "mps":
        torch.mps.synchronize()
        return
    module = backend_module(device.type)
    if module is not None and hasattr(module, "synchronize"):
        module.synchronize(device.torch_device)
    elif hasattr(torch, "accelerator"):
        torch.accelerator.synchronize(device.torch_device)


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


ACCELERATOR_NAMES = {"mem_get_info": "get_memory_info"}  # torch.accelerator's name where it differs


def _memory_fn(device: Device, name: str) -> Any:
    """A memory function of the device's backend module (torch.cuda.max_memory_allocated, torch.npu's...),
    else torch.accelerator's (torch >= 2.9) when that is this device's type; None where neither has it (the
    CPU, MPS)."""
    if device.type in ("cpu", "mps"):
        return None
    fn = getattr(backend_module(device.type), name, None)
    if fn is not None:
        return fn
    accel = getattr(torch, "accelerator", None)
    try:
        current = accel.current_accelerator() if accel is not None and accel.is_available() else None
    except Exception:  # noqa: BLE001 - a plugin that half-registers: no memory figure, not a crash
        current = None
    if current is None or current.type != device.type:
        return None
    return getattr(accel, ACCELERATOR_NAMES.get(name, name), None)


def reset_peak_memory(device: Device) -> None:
    """Start a new peak-memory window."""
    fn = _memory_fn(device, "reset_peak_memory_stats")
    if fn is not None:
        fn(device.torch_device)


def peak_memory_bytes(device: Device) -> float | None:
    """Peak device memory allocated by torch since the last reset; None where torch cannot tell."""
    fn = _memory_fn(device, "max_memory_allocated")
    return float(fn(device.torch_device)) if fn is not None else None


def free_memory_bytes(device: Device) -> int:
    """Memory free for new allocations on the device (host available memory on CPU)."""
    fn = _memory_fn(device, "mem_get_info")
    if fn is not None:
        free, _total = fn(device.torch_device)
        return int(free)
    return int(psutil.virtual_memory().available)


def usable_memory_bytes(device: Device) -> float:
    """Memory this process could hold at most now: what the device has free plus what torch already holds.

    On a GPU that is the driver's free memory plus torch's reserved pool (the CUDA
    context and other processes are already out of it, unlike the card's total);
    on the host, available memory plus this process's RSS.
    """
    reserved = _memory_fn(device, "memory_reserved")
    if reserved is not None and _memory_fn(device, "mem_get_info") is not None:
        return float(free_memory_bytes(device) + reserved(device.torch_device))
    return float(free_memory_bytes(device) + psutil.Process().memory_info().rss)


def empty_cache(device: Device) -> None:
    """Give cached allocator blocks back so the next case starts clean (after an OOM too)."""
    import gc

    gc.collect()
    if device.type == "mps":
        torch.mps.empty_cache()
    elif (fn := _memory_fn(device, "empty_cache")) is not None:
        fn()


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
    fn = _memory_fn(device, "memory_allocated")
    return float(fn(device.torch_device)) if fn is not None else float(psutil.Process().memory_info().rss)


def set_threads(requested: int) -> int:
    """torch's CPU threads for a case: as requested, or (0) the cores this process may use. Returns the count."""
    count = requested or own_cores()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return torch.get_num_threads()


def card_uuids(device: Device, count: int, indices: list[int] | None = None) -> list[str]:
    """UUIDs of the `count` cards from `device` on, or of the cards `indices` names (a case that spans several:
    TP, PP, a layer split), as the driver names them without any 'GPU-' prefix; [] where torch does not say
    (a CPU, a plugin without it)."""
    if device.type == "cpu":
        return []
    module = backend_module(device.type)
    first = device.torch_device.index or 0
    out = []
    for index in indices or range(first, first + max(1, count)):
        try:
            uuid = getattr(module.get_device_properties(index), "uuid", None)
        except Exception:  # noqa: BLE001 - fewer cards than asked, or no properties: unknown, not a crash
            return []
        if uuid is None:
            return []
        out.append(str(uuid).removeprefix("GPU-"))
    return out
