"""Pick the telemetry backend for this machine: the first in the registry that starts, else none."""

from __future__ import annotations

import os

from bench.core.errors import BadInput
from bench.core.plugins import ENV_BACKEND, backend_class, backends
from bench.telemetry.base import Backend, NoTelemetry, absent


def probe_backend(device_type: str = "cuda") -> tuple[Backend, list[str]]:
    """The first backend that starts, and why each earlier one did not.

    On a CPU run the accelerator backends are skipped: the host is what does the work. $CLAIMBENCH_TELEMETRY
    names one backend to use whatever the device (a card seen by its SMI that torch cannot use yet).
    """
    tried: list[str] = []
    chosen = os.environ.get(ENV_BACKEND, "")
    if chosen and chosen not in backends():
        raise BadInput(f"{ENV_BACKEND}={chosen[:80]}: not a telemetry backend (known: {', '.join(backends())})")
    for name in [chosen] if chosen else list(backends()):
        try:
            cls = backend_class(name)
            if cls.accelerator and device_type == "cpu" and not chosen:
                continue
            return cls(), tried
        except Exception as exc:  # noqa: BLE001 - any error at start (no library, no card) means "not here"
            tried.append(f"{name}: {exc.__class__.__name__}: {exc}" if name != "cpu" else f"{name}: {exc}")
    return NoTelemetry("; ".join(tried)), tried


def accelerators_seen() -> list[dict]:
    """Every card a vendor's tool or library shows, whether or not torch can use it, with what its telemetry
    reads: so `bench env` shows a card before the first run (and what to install when torch cannot use it)."""
    from bench.hardware.devices import ACCELERATORS, _available

    seen = []
    usable = {kind for kind in ACCELERATORS if _safe(_available, kind)}
    for name in backends():
        cls = backend_class(name)
        if not cls.accelerator:
            continue
        try:
            backend = cls()
        except Exception as exc:  # noqa: BLE001 - not here, or here and failing: only the second is said
            if not absent(exc):  # a tool that exits with an error or hangs: a broken card is not "no card"
                seen.append({"backend": name, "devices": [], "torch_usable": False, "readable": [],
                             "not_readable": {}, "install": getattr(cls, "install", ""),
                             "error": f"{exc.__class__.__name__}: {exc}"[:300], "tool": getattr(cls, "tool", "")})
            continue
        caps = backend.capabilities()
        kind = getattr(cls, "torch_type", "") or getattr(cls, "vendor", "") or "cuda"
        kind = "cuda" if kind == "dcu" else kind  # Hygon's DCUs compute through ROCm's cuda
        seen.append({"backend": name, "devices": backend.devices(), "torch_usable": kind in usable,
                     "readable": [backend.field_names.get(f, f) for f, why in caps.items() if why is None],
                     "not_readable": {backend.field_names.get(f, f): why for f, why in caps.items() if why},
                     "install": getattr(cls, "install", ""), "tool": getattr(cls, "tool", "")})
        backend.close()
    # Two vendors ship a tool of one name (Intel's and Kunlunxin's xpu-smi): the one that answered is the one
    # here, and the other's failure to read its arguments is no broken card.
    answered = {s["tool"] for s in seen if not s.get("error") and s["tool"]}
    return [s for s in seen if not (s.get("error") and s["tool"] in answered)]


def _safe(fn, *args) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(fn(*args))
    except Exception:  # noqa: BLE001
        return False
