"""Pick the telemetry backend for this machine: NVML, then AMD SMI, then the CPU, then none."""

from __future__ import annotations

from bench.telemetry.base import Backend, NoTelemetry


def probe_backend(device_type: str = "cuda") -> tuple[Backend, list[str]]:
    """The first backend that starts, and why each earlier one did not.

    On a CPU run the GPU backends are skipped: the host is what does the work.
    """
    tried: list[str] = []
    if device_type != "cpu":
        try:
            from bench.telemetry.nvml import NvmlBackend

            return NvmlBackend(), tried
        except Exception as exc:  # noqa: BLE001 - any NVMLError at init means "no NVIDIA GPU"
            tried.append(f"nvml: {exc.__class__.__name__}: {exc}")
        try:
            from bench.telemetry.amdsmi_backend import AmdSmiBackend

            return AmdSmiBackend(), tried
        except Exception as exc:  # noqa: BLE001 - ImportError or the library's own errors
            tried.append(f"amdsmi: {exc.__class__.__name__}: {exc}")
    try:
        from bench.telemetry.cpu import CpuBackend

        return CpuBackend(), tried
    except Exception as exc:  # noqa: BLE001
        tried.append(f"cpu: {exc}")
    return NoTelemetry("; ".join(tried)), tried
