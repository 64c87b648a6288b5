"""NVIDIA GPUs through NVML (package nvidia-ml-py, module pynvml), every visible card.

Energy: the total-energy counter (mJ since driver load, Volta and newer) where
the card has it, else timestamped power samples integrated over the window.
Every other reading is tried once per card at start; one the card refuses is
reported as unsupported with NVML's reason, never as 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from bench.core import clock
from bench.telemetry.base import FIELDS, Backend, NotPresent, Reading, throttling_reasons  # noqa: F401 (re-exported)

# Clock-event ("throttle") reason bits, from nvml.h. GpuIdle, application clocks and
# display clocks are not the card holding back under load, so they do not count as throttling.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

FI_DEV_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT (newer drivers)


def decode_clock_event_reasons(mask: int) -> tuple[str, ...]:
    """Bitmask -> reason names, unknown bits as hex, in bit order."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"unknown_0x{unknown:x}")
    return tuple(names)


def _absent(*args: Any) -> Any:
    raise NotImplementedError("this NVML has no such function")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlBackend(Backend):
    """All NVIDIA GPUs NVML can see. `nvml` is the pynvml module (a fake in CPU tests)."""

    name = "nvml"
    probe_rank = 10  # NVIDIA's own library first: the cards most machines have
    reads = FIELDS
    counter_method = "nvml-counter"
    power_method = "nvml-power"
    label = "gpu"  # device labels: gpu0, gpu1...

    def __init__(self, nvml: Any = None) -> None:
        if nvml is None:
            import pynvml as nvml
        self.nvml = nvml
        nvml.nvmlInit()  # raises NVMLError (e.g. LibraryNotFound) with no driver: the probe moves on
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            nvml.nvmlShutdown()
            raise NotPresent("NVML sees no GPU")
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._labels = [f"{self.label}{i}" for i in range(count)]
        self._unsupported: list[dict[str, str]] = [self._probe(h) for h in self.handles]
        has_counter = all("energy_j" not in u for u in self._unsupported)
        self.energy_method = self.counter_method if has_counter else self.power_method

    # --- helpers -------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
        """(value, None) or (None, NVML's reason)."""
        try:
            return fn(*args), None
        except self.nvml.NVMLError as exc:
            return None, f"NVML: {exc}"
        except (AttributeError, NotImplementedError) as exc:  # older NVML without the function
            return None, f"NVML: {exc}"

    def _power_w(self, handle: Any) -> tuple[float | None, str | None]:
        values, err = self._call(self.nvml.nvmlDeviceGetFieldValues, handle, [FI_DEV_POWER_INSTANT])
        if err is None and values and values[0].nvmlReturn == 0:
            return values[0].value.uiVal / 1000.0, None
        mw, err = self._call(self.nvml.nvmlDeviceGetPowerUsage, handle)
        return (mw / 1000.0 if mw is not None else None), err

    def _reasons_fn(self) -> Callable[..., Any]:
        return getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons

    def _readers(self) -> dict[str, Callable[[Any], tuple[Any, str | None]]]:
        n = self.nvml
        return {
            "power_w": self._power_w,
            "energy_j": lambda h: self._call(n.nvmlDeviceGetTotalEnergyConsumption, h),
            "mem_used_gb": lambda h: self._call(n.nvmlDeviceGetMemoryInfo, h),
            "util": lambda h: self._call(n.nvmlDeviceGetUtilizationRates, h),
            "sm_clock_mhz": lambda h: self._call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda h: self._call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM),
            "temp_c": lambda h: self._call(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
            "throttle": lambda h: self._call(self._reasons_fn(), h),
        }

    def _probe(self, handle: Any) -> dict[str, str]:
        """Try every reading once; remember the ones this card refuses, and why."""
        unsupported = {}
        for field, read in self._readers().items():
            _value, err = read(handle)
            if err is not None:
                unsupported[field] = err
        return unsupported

    # --- Backend -------------------------------------------------------------------------

    def devices(self) -> list[str]:
        return list(self._labels)

    def capabilities(self) -> dict[str, str | None]:
        """A field counts as readable only if every card can read it."""
        caps: dict[str, str | None] = {}
        for field in FIELDS:
            reasons = [f"{lbl}: {u[field]}" for lbl, u in zip(self._labels, self._unsupported) if field in u]
            caps[field] = "; ".join(reasons) or None
        return caps

    def read(self) -> list[Reading]:
        out = []
        readers = self._readers()
        for label, handle, unsupported in zip(self._labels, self.handles, self._unsupported):
            t = clock.now()
            raw = {f: (None if f in unsupported else readers[f](handle)[0]) for f in FIELDS}
            mem, util, mj, reasons = raw["mem_used_gb"], raw["util"], raw["energy_j"], raw["throttle"]
            out.append(Reading(
                t=t,
                device=label,
                power_w=raw["power_w"],
                energy_j=mj / 1000.0 if mj is not None else None,
                mem_used_gb=mem.used / 1e9 if mem is not None else None,
                util=float(util.gpu) if util is not None else None,
                sm_clock_mhz=raw["sm_clock_mhz"],
                mem_clock_mhz=raw["mem_clock_mhz"],
                temp_c=raw["temp_c"],
                throttle=decode_clock_event_reasons(int(reasons)) if reasons is not None else (),
            ))
        return out

    def labels_for(self, uuids: list[str]) -> list[str]:
        """NVML's labels of the cards torch calls by these UUIDs (NVML counts every card; torch only the visible)."""
        wanted = {u.removeprefix("GPU-").lower() for u in uuids}
        found = []
        for label, h in zip(self._labels, self.handles):
            uuid, _ = self._call(self.nvml.nvmlDeviceGetUUID, h)
            if uuid is not None and _text(uuid).removeprefix("GPU-").lower() in wanted:
                found.append(label)
        return found if len(found) == len(wanted) else []

    def error_counts(self) -> dict[str, Any]:
        """Volatile (since driver load) corrected/uncorrected ECC errors per card; None where unsupported."""
        n = self.nvml
        counts: dict[str, Any] = {}
        for label, h in zip(self._labels, self.handles):
            corrected, err1 = self._call(n.nvmlDeviceGetTotalEccErrors, h, n.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                                         n.NVML_VOLATILE_ECC)
            uncorrected, err2 = self._call(n.nvmlDeviceGetTotalEccErrors, h,
                                           n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, n.NVML_VOLATILE_ECC)
            counts[label] = {"ecc_corrected_volatile": corrected, "ecc_uncorrected_volatile": uncorrected,
                             "reason": err1 or err2}
        return counts

    def other_processes(self) -> list[str]:
        """Compute processes on the cards that are neither this process nor its children (vLLM's engine core)."""
        import os

        import psutil

        ours = {os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))}
        fn = getattr(self.nvml, "nvmlDeviceGetComputeRunningProcesses", None)
        others = []
        for label, h in zip(self._labels, self.handles):
            procs, _ = self._call(fn, h) if fn else (None, None)
            for p in procs or []:
                if p.pid not in ours:
                    used = getattr(p, "usedGpuMemory", None)
                    gb = f", {used / 1e9:.1f} GB" if isinstance(used, int) else ""
                    others.append(f"pid {p.pid} on {label}{gb}")
        return others

    def fingerprint(self) -> list[dict[str, Any]]:
        n = self.nvml
        driver, _ = self._call(n.nvmlSystemGetDriverVersion)
        cuda, _ = self._call(getattr(n, "nvmlSystemGetCudaDriverVersion_v2", n.nvmlSystemGetCudaDriverVersion))
        cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
        info = []
        for label, h in zip(self._labels, self.handles):
            def get(fn_name: str, *args: Any, _h: Any = h) -> Any:
                fn = getattr(n, fn_name, None)
                return self._call(fn, _h, *args)[0] if fn else None

            mem = get("nvmlDeviceGetMemoryInfo")
            limit = get("nvmlDeviceGetEnforcedPowerLimit")
            ecc = get("nvmlDeviceGetEccMode")
            mig = get("nvmlDeviceGetMigMode")
            info.append({
                "device": label,
                "name": _text(get("nvmlDeviceGetName")),
                "uuid": _text(get("nvmlDeviceGetUUID")),
                "driver": _text(driver) if driver is not None else None,
                "cuda_driver": cuda_text,
                "memory_total_gb": mem.total / 1e9 if mem is not None else None,
                "power_limit_w": limit / 1000.0 if limit is not None else None,
                "sm_clock_max_mhz": get("nvmlDeviceGetMaxClockInfo", n.NVML_CLOCK_SM),
                "mem_clock_max_mhz": get("nvmlDeviceGetMaxClockInfo", n.NVML_CLOCK_MEM),
                "pcie_gen": get("nvmlDeviceGetCurrPcieLinkGeneration"),
                "pcie_gen_max": get("nvmlDeviceGetMaxPcieLinkGeneration"),
                "pcie_width": get("nvmlDeviceGetCurrPcieLinkWidth"),
                "pcie_width_max": get("nvmlDeviceGetMaxPcieLinkWidth"),
                "ecc_mode": ecc[0] if isinstance(ecc, (list, tuple)) else ecc,
                "mig_mode": mig[0] if isinstance(mig, (list, tuple)) else mig,
                "persistence_mode": get("nvmlDeviceGetPersistenceMode"),
                "compute_mode": get("nvmlDeviceGetComputeMode"),
                "unsupported": self._unsupported[self._labels.index(label)],
            })
        return info

    def power_limits(self) -> dict[str, tuple[float | None, float | None]]:
        """The enforced power limit of each card and its default (W), read now: a cap set by the operator (or a
        run) shows as the two differing."""
        out = {}
        for label, h in zip(self._labels, self.handles):
            enforced, _ = self._call(getattr(self.nvml, "nvmlDeviceGetEnforcedPowerLimit", None) or _absent, h)
            default, _ = self._call(getattr(self.nvml, "nvmlDeviceGetPowerManagementDefaultLimit", None) or _absent,
                                    h)
            out[label] = (enforced / 1000.0 if enforced is not None else None,
                          default / 1000.0 if default is not None else None)
        return out

    def set_power_limit(self, device: str, watts: float) -> str:
        """nvmlDeviceSetPowerManagementLimit in mW (needs root; NVML refuses a value outside the card's range)."""
        if device not in self._labels:
            return f"no card {device}"
        setter = getattr(self.nvml, "nvmlDeviceSetPowerManagementLimit", None) or _absent
        _, failed = self._call(setter, self.handles[self._labels.index(device)], int(round(watts * 1000)))
        return failed or ""

    def close(self) -> None:
        with contextlib.suppress(Exception):  # shutting down: nothing useful to do on failure
            self.nvml.nvmlShutdown()


# NVML-compatible libraries that vendors ship for their CUDA-compatible cards (same C API, another file).
COMPAT_LIBRARIES = ("libixml.so", "/usr/local/corex/lib64/libixml.so", "/usr/local/corex/lib/libixml.so")
LIBRARY_ENV = "CLAIMBENCH_NVML_LIBRARY"


class NvmlCompatBackend(NvmlBackend):
    """A card whose vendor ships an NVML-compatible library (Iluvatar CoreX's libixml.so, or any library named in
    $CLAIMBENCH_NVML_LIBRARY): the NVML code above, reading that library instead of libnvidia-ml."""

    name = "nvml-compat"
    probe_rank = 20  # after NVML: a library of its shape (Iluvatar's libixml.so, or one named)
    counter_method = "nvml-compat-counter"
    power_method = "nvml-compat-power"

    def __init__(self, nvml: Any = None, library: str | None = None) -> None:
        import ctypes
        import os

        if nvml is None:
            import pynvml as nvml
        named = library or os.environ.get(LIBRARY_ENV)
        candidates = [named] if named else list(COMPAT_LIBRARIES)
        errors = []
        for path in candidates:
            try:
                lib = ctypes.CDLL(path)
            except OSError as exc:
                errors.append(f"{path}: {str(exc)[:80]}")
                continue
            nvml.nvmlLib = lib  # pynvml loads its library only when none is set: it calls this one
            self.library = path
            super().__init__(nvml)
            return
        raise FileNotFoundError("no NVML-compatible library (" + "; ".join(errors) +
                                f"); name one with {LIBRARY_ENV}=PATH")


class MtmlBackend(NvmlBackend):
    """Moore Threads GPUs through their NVML-compatible Python binding (mthreads-ml-py, module pymtml: the
    nvml* functions of pynvml over libmtml.so), in-process: no mthreads-gmi process per sample. Where the binding
    is not installed, the mthreads-gmi backend reads the cards through the tool."""

    name = "mtml"
    probe_rank = 70  # before Moore Threads' tool (mthreads-gmi), where its binding is installed
    vendor = "musa"
    label = "musa"
    counter_method = "mtml-counter"
    power_method = "mtml-power"
    install = "mthreads-ml-py (pip), the MUSA driver, and torch_musa for the device"

    def __init__(self, nvml: Any = None) -> None:
        if nvml is None:
            import pymtml as nvml  # ImportError where the binding is not installed: the probe moves on
        super().__init__(nvml)
