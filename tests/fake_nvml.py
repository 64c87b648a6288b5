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


# A card that throttles: from THROTTLE_AT (harness clock) on, gpu0 draws THROTTLED_WATTS at THROTTLED_MHZ with the
# power-cap reason set; None: the steady cards above.
THROTTLE_AT: float | None = None
THROTTLED_WATTS, THROTTLED_MHZ = 60.0, 1500


def _throttled(h) -> bool:
    return THROTTLE_AT is not None and h == 0 and clock.now() >= THROTTLE_AT


def _watts(h) -> float:
    return THROTTLED_WATTS if _throttled(h) else WATTS[h]


def nvmlDeviceGetTotalEnergyConsumption(h):
    if h == 1:
        raise NVMLError_NotSupported()
    now = clock.now()  # mJ, on the harness clock (virtual under the simulated engine)
    if THROTTLE_AT is not None and h == 0 and now > THROTTLE_AT:
        return int((WATTS[h] * (THROTTLE_AT - T0) + THROTTLED_WATTS * (now - THROTTLE_AT)) * 1000)
    return int(WATTS[h] * (now - T0) * 1000)


def nvmlDeviceGetFieldValues(h, ids):
    if h == 1:
        raise NVMLError_NotSupported()
    value = types.SimpleNamespace(uiVal=int(_watts(h) * 1000))
    return [types.SimpleNamespace(nvmlReturn=0, value=value)]


def nvmlDeviceGetPowerUsage(h):
    return int(_watts(h) * 1000)


def nvmlDeviceGetMemoryInfo(h):
    return types.SimpleNamespace(used=int(10e9), total=int(80e9), free=int(70e9))


def nvmlDeviceGetUtilizationRates(h):
    return types.SimpleNamespace(gpu=97, memory=60)


def nvmlDeviceGetClockInfo(h, kind):
    if kind == NVML_CLOCK_SM:
        return THROTTLED_MHZ if _throttled(h) else 1980
    return 2619


def nvmlDeviceGetMaxClockInfo(h, kind):
    return 1980 if kind == NVML_CLOCK_SM else 2619


def nvmlDeviceGetTemperature(h, kind):
    return 60 + h


def nvmlDeviceGetCurrentClocksEventReasons(h):
    if THROTTLE_AT is not None:
        return 0x4 if _throttled(h) else 0x0
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
# $FAKE_NVML_LIMITS: a file that holds the limits instead, so they outlive a `bench run` the test kills (as a
# card's limit outlives the process that set it).
LIMITS_FILE = os.environ.get("FAKE_NVML_LIMITS")


def _limits() -> dict[int, int]:
    if LIMITS_FILE and os.path.exists(LIMITS_FILE):
        import json

        with open(LIMITS_FILE) as fh:
            return {int(k): v for k, v in json.load(fh).items()}
    return LIMITS


def nvmlDeviceGetEnforcedPowerLimit(h):
    return _limits()[h]


def nvmlDeviceGetPowerManagementDefaultLimit(h):
    return 700000


def nvmlDeviceGetPowerManagementLimitConstraints(h):
    return 200000, 700000


class NVMLError_InvalidArgument(NVMLError):  # noqa: N801 - pynvml's name
    def __str__(self) -> str:
        return "Invalid Argument"


def nvmlDeviceSetPowerManagementLimit(h, mw):
    low, high = nvmlDeviceGetPowerManagementLimitConstraints(h)
    if not low <= mw <= high:  # as NVML: a limit outside the card's range is refused, nothing changes
        raise NVMLError_InvalidArgument()
    if h in STUCK:
        return
    limits = _limits()
    limits[h] = mw
    if LIMITS_FILE:
        import json

        with open(LIMITS_FILE + ".tmp", "w") as fh:
            json.dump(limits, fh)
        os.replace(LIMITS_FILE + ".tmp", LIMITS_FILE)


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
