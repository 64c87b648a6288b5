"""The sampler interface: what a telemetry backend reads and how it says what it cannot."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Fields a backend may be able to read; each backend maps every one of these to
# either None (readable) or a reason it cannot be read.
FIELDS = ("power_w", "energy_j", "mem_used_gb", "util", "sm_clock_mhz", "mem_clock_mhz", "temp_c", "throttle")


# Clock-event reasons that are not the device holding back under load (idle, settings), by NVML's names.
NOT_THROTTLING = {"gpu_idle", "applications_clocks_setting", "display_clock_setting"}


def throttling_reasons(reasons: tuple[str, ...]) -> tuple[str, ...]:
    """The reasons that mean clocks were held back under load."""
    return tuple(r for r in reasons if r not in NOT_THROTTLING)


class NotPresent(RuntimeError):
    """A backend's library or tool works and sees no card of its kind: nothing of this vendor is here.
    (Raised instead of a plain error so `bench env` can tell "no card" from "a card whose tool fails".)"""


def absent(exc: BaseException) -> bool:
    """An exception from a backend's start that means "not on this machine" (no library, no tool, no card),
    as opposed to a tool or driver that is there and fails (exit status, a hang, a driver not loaded)."""
    return isinstance(exc, NotPresent | FileNotFoundError | ImportError) or "LibraryNotFound" in type(exc).__name__


@dataclass
class Reading:
    """One device's state at one instant. None means 'not readable', never 0."""

    t: float  # time.perf_counter() seconds, the clock the engines use
    device: str
    power_w: float | None = None
    energy_j: float | None = None  # cumulative counter since an arbitrary origin, already unwrapped
    mem_used_gb: float | None = None
    util: float | None = None  # percent
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    temp_c: float | None = None
    throttle: tuple[str, ...] = field(default_factory=tuple)


class Backend(ABC):
    """A source of telemetry for the devices it can see."""

    name: str = "none"
    accelerator: ClassVar[bool] = True  # reads accelerators: not tried on a CPU run
    reads: ClassVar[tuple[str, ...]] = ()  # the FIELDS it can read at most (a card may refuse some: capabilities)
    # How energy is measured: its counter's name (nvml-counter, amdsmi, rapl), or none.
    energy_method: str = "none"
    # The name when energy comes from integrating sampled power instead (a card or window without the counter).
    power_method: ClassVar[str] = ""
    # The fastest rate it can sustain (a vendor SMI run per sample answers in tens to hundreds of ms).
    max_hz: ClassVar[float] = 1000.0
    # What this device calls a field, where the generic name would mislead (a CPU has no SM clock).
    field_names: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def devices(self) -> list[str]:
        """Labels of the devices this backend reads (e.g. 'gpu0', 'cpu-package0')."""

    @abstractmethod
    def capabilities(self) -> dict[str, str | None]:
        """For each of FIELDS: None if readable, else why not."""

    @abstractmethod
    def read(self) -> list[Reading]:
        """One reading per device, now."""

    def fingerprint(self) -> list[dict[str, Any]]:
        """Per-device facts for run.json (driver, power limit, clocks, PCIe, ECC, MIG...)."""
        return []

    def error_counts(self) -> dict[str, Any]:
        """Hardware error counters (e.g. volatile ECC), read before and after a run."""
        return {}

    def other_processes(self) -> list[str]:
        """Other processes using the devices now ("pid 123 (2.1 GB)"); empty when none or unknown."""
        return []

    @property
    def max_power_gap_s(self) -> float:
        """The longest gap between power readings that integrated energy may bridge: 2 s, or four sampling
        periods of a slow tool (npu-smi at 1 Hz: 4 s), so a tool that merely runs slowly is not a gap."""
        from bench.telemetry.energy import MAX_POWER_GAP_S

        return max(MAX_POWER_GAP_S, 4.0 / self.max_hz)

    def energy_reason(self) -> str:
        """The energy_source text: the method, or 'none: why'."""
        reason = self.capabilities().get("energy_j") and self.capabilities().get("power_w")
        return f"none: {reason}" if reason else self.energy_method

    def meta(self) -> dict[str, Any]:
        """Keys for run.json beyond the fingerprint (a cluster's nodes and clock offsets); none here."""
        return {}

    def labels_for(self, uuids: list[str]) -> list[str]:
        """The labels of the cards with these UUIDs (the ones a case ran on), [] when this backend cannot tell
        (then every card it reads counts)."""
        return []

    def silent_reason(self, devices: list[str]) -> str:
        """Why these devices gave no readings lately (a cluster node whose telemetry actor died); '' if unknown."""
        return ""

    def power_limits(self) -> dict[str, tuple[float | None, float | None]]:
        """Each card's power limit in force and its default (W; None where unread); {} where the tool has none."""
        return {}

    def set_power_limit(self, device: str, watts: float) -> str:
        """Set a card's power limit (W): '' when the tool accepted it (read it back to know it took effect), else
        why not."""
        return f"{self.name} cannot set a power limit"

    def settle(self, after: float) -> None:
        """Before a reading that must bracket a window's end: wait until the source has a reading at or after
        `after` (a tool left running in its watch mode prints on its own schedule); nothing to wait for here."""

    def close(self) -> None:
        """Release the library handle."""


class NoTelemetry(Backend):
    """Nothing readable: every field says why."""

    name = "none"
    energy_method = "none"

    def __init__(self, reason: str = "no telemetry backend available") -> None:
        self.reason = reason

    def devices(self) -> list[str]:
        return []

    def capabilities(self) -> dict[str, str | None]:
        return dict.fromkeys(FIELDS, self.reason)

    def read(self) -> list[Reading]:
        return []
