"""Pick the telemetry backend for this machine: the first in the registry that starts, else none."""

from __future__ import annotations

from bench.telemetry.base import Backend, NoTelemetry
from bench.telemetry.registry import BACKENDS, backend_class


def probe_backend(device_type: str = "cuda") -> tuple[Backend, list[str]]:
    """The first backend that starts, and why each earlier one did not.

    On a CPU run the accelerator backends are skipped: the host is what does the work.
    """
    tried: list[str] = []
    for name in BACKENDS:
        try:
            cls = backend_class(name)
            if cls.accelerator and device_type == "cpu":
                continue
            return cls(), tried
        except Exception as exc:  # noqa: BLE001 - any error at start (no library, no card) means "not here"
            tried.append(f"{name}: {exc.__class__.__name__}: {exc}" if name != "cpu" else f"{name}: {exc}")
    return NoTelemetry("; ".join(tried)), tried
