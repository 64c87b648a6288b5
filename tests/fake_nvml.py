"""A stand-in for the pynvml module, for CPU CI only: NVML needs an NVIDIA driver this machine lacks.

It models two cards: gpu0 is Volta+ (energy counter, instant power field),
gpu1 is older (no energy counter, no field values: power only). Power is a
steady 100 W / 200 W so energy over any window is known exactly.
"""

from __future__ import annotations

import os
import types

from bench.core import clock

NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0

WATTS = {0: 100.0, 1: 200.0}
T0 = clock.now()


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's name
    def __str__(self) -> str:
        return "Not Supported"


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
    pass


initialised = {"count": 0}
THROTTLE = {0: 0x4 | 0x1, 1: 0x0}  # gpu0: sw power cap (+ idle bit), gpu1: none


OTHER_PROCESSES: dict[int, list] = {0: [], 1: []}  # a test puts types.SimpleNamespace(pid=, usedGpuMemory=) here


def nvmlDeviceGetComputeRunningProcesses(h):
    return OTHER_PROCESSES[h]


def nvmlInit():
    initialised["count"] += 1


def nvmlShutdown():
    initialised["count"] -= 1


def nvmlDeviceGetCount():
    return 2


def nvmlDeviceGetHandleByIndex(i):
    return i


def nvmlDeviceGetTotalEnergyConsumption(h):
    if h == 1:
        raise NVMLError_NotSupported()
    return int(WATTS[h] * (clock.now() - T0) * 1000)  # mJ, on the harness clock (virtual under the simulated engine)


def nvmlDeviceGetFieldValues(h, ids):
    if h == 1:
        raise NVMLError_NotSupported()
    value = types.SimpleNamespace(uiVal=int(WATTS[h] * 1000))
    return [types.SimpleNamespace(nvmlReturn=0, value=value)]


def nvmlDeviceGetPowerUsage(h):
    return int(WATTS[h] * 1000)


def nvmlDeviceGetMemoryInfo(h):
    return types.SimpleNamespace(used=int(10e9), total=int(80e9), free=int(70e9))


def nvmlDeviceGetUtilizationRates(h):
    return types.SimpleNamespace(gpu=97, memory=60)


def nvmlDeviceGetClockInfo(h, kind):
    return 1980 if kind == NVML_CLOCK_SM else 2619


def nvmlDeviceGetMaxClockInfo(h, kind):
    return 1980 if kind == NVML_CLOCK_SM else 2619


def nvmlDeviceGetTemperature(h, kind):
    return 60 + h


def nvmlDeviceGetCurrentClocksEventReasons(h):
    return THROTTLE[h]


def nvmlDeviceGetTotalEccErrors(h, kind, counter):
    if h == 1:
        raise NVMLError_NotSupported()
    return 0


def nvmlSystemGetDriverVersion():
    return "580.65.06"


def nvmlSystemGetCudaDriverVersion_v2():
    return 13000


def nvmlSystemGetCudaDriverVersion():
    return 13000


def nvmlDeviceGetName(h):
    return "NVIDIA H100 80GB HBM3"


def nvmlDeviceGetUUID(h):
    # $FAKE_NVML_NODE: each node of a test's Ray cluster its own cards
    return f"GPU-fake-{os.environ.get('FAKE_NVML_NODE', '') + '-' if os.environ.get('FAKE_NVML_NODE') else ''}{h}"


LIMITS = {0: 700000, 1: 700000}  # mW in force; a test sets a cap here (or through the setter below)
STUCK: set[int] = set()  # cards whose setter is accepted but changes nothing (a cap that does not take effect)


def nvmlDeviceGetEnforcedPowerLimit(h):
    return LIMITS[h]


def nvmlDeviceGetPowerManagementDefaultLimit(h):
    return 700000


def nvmlDeviceGetPowerManagementLimitConstraints(h):
    return 200000, 700000


def nvmlDeviceSetPowerManagementLimit(h, mw):
    if h not in STUCK:
        LIMITS[h] = mw


def nvmlDeviceGetCurrPcieLinkGeneration(h):
    return 5


def nvmlDeviceGetMaxPcieLinkGeneration(h):
    return 5


def nvmlDeviceGetCurrPcieLinkWidth(h):
    return 16


def nvmlDeviceGetMaxPcieLinkWidth(h):
    return 16


def nvmlDeviceGetEccMode(h):
    return (1, 1)


def nvmlDeviceGetMigMode(h):
    raise NVMLError_NotSupported()


def nvmlDeviceGetPersistenceMode(h):
    return 1


def nvmlDeviceGetComputeMode(h):
    return 0
