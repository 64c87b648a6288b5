"""Vendors' SMI tools as telemetry backends: run the tool (bounded by a timeout), parse what it printed into
per-card readings, and say which fields it could not give. Bad tool output is bad input: a tool that is not
installed does not start (the probe moves on); one that exits non-zero, hangs, prints N/A, drops a field,
reorders columns or prints bytes that are not UTF-8 gives empty fields with the reason, never a crash, a
hang or a wrong number. None of these tools has an energy counter: energy is their power integrated over
the windows, with the gap check of bench.telemetry.energy.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from typing import Any, ClassVar

from bench import clock
from bench.telemetry.base import FIELDS, Backend, Reading

NOT_A_NUMBER = {"", "n/a", "na", "-", "--", "not supported", "unknown", "none"}


def number(text: Any) -> float | None:
    """The leading number of a tool's value ('68.4', '68.4 W', '45C', '1024 MiB'); None for N/A and the like."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text) if math.isfinite(float(text)) else None
    if not isinstance(text, str) or text.strip().lower() in NOT_A_NUMBER:
        return None
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match else None


def gib(text: Any) -> float | None:
    """A memory value as GB: '1024 MiB' / '1024MiB' / '16 GiB' / '512 MB'; a bare number is taken as MiB."""
    value = number(text)
    if value is None:
        return None
    unit = str(text).strip().lower()
    if unit.endswith(("gib", "gb")):
        return value * (1 << 30) / 1e9
    if unit.endswith(("kib", "kb")):
        return value * 1024 / 1e9
    return value * (1 << 20) / 1e9


def key_values(text: str) -> dict[str, str]:
    """'  Power Dissipation(W)          : 68.4' lines as {name: value} (the text format of npu-smi, cnmon...)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            if key.strip():
                out.setdefault(key.strip(), value.strip())
    return out


def first(values: dict[str, Any], *names: str) -> Any:
    """The first of several names a tool version may use for one field (case-insensitive), or None."""
    lower = {k.lower(): v for k, v in values.items()}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


class SmiError(Exception):
    """The tool ran but gave nothing usable (exit status, timeout, unreadable output)."""


class SmiBackend(Backend):
    """A vendor tool run once per sample (at most max_hz); subclasses discover cards and parse readings."""

    tool: ClassVar[str] = ""
    vendor: ClassVar[str] = ""
    timeout_s: ClassVar[float] = 3.0
    max_hz: ClassVar[float] = 2.0
    install: ClassVar[str] = ""  # what to install when the tool is missing

    def __init__(self) -> None:
        path = shutil.which(self.tool)
        if path is None:
            raise FileNotFoundError(f"{self.tool} not on PATH" + (f" ({self.install})" if self.install else ""))
        self.path = path
        self.energy_method = self.power_method
        self.cards = self.discover()
        if not self.cards:
            raise RuntimeError(f"{self.tool} lists no card")
        self.last_error = ""
        first_read = self.read()
        self._unsupported = {f: self.last_error or f"{self.tool} does not report it" for f in FIELDS
                             if all(getattr(r, f) in (None, ()) for r in first_read)}

    @property
    def power_method(self) -> str:  # type: ignore[override]
        return f"{self.tool}-power"

    def run(self, *args: str) -> str:
        """The tool's stdout as text (undecodable bytes replaced); SmiError for a failure, in words."""
        try:
            proc = subprocess.run([self.path, *args], capture_output=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise SmiError(f"{self.tool} {' '.join(args)} did not answer within {self.timeout_s:g} s") from None
        except OSError as exc:
            raise SmiError(f"{self.tool} could not run: {exc}") from None
        text = proc.stdout.decode("utf-8", errors="replace")
        if proc.returncode != 0:
            said = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
            raise SmiError(f"{self.tool} {' '.join(args)} exited {proc.returncode}: {said[0][:120] if said else ''}")
        return text

    def devices(self) -> list[str]:
        return [f"{self.vendor}{c}" for c in self.cards]

    def capabilities(self) -> dict[str, str | None]:
        return {f: self._unsupported.get(f) for f in FIELDS}

    def read(self) -> list[Reading]:
        """One reading per card now; a failed call gives readings with every field empty (the reason kept)."""
        t = clock.now()
        try:
            values = self.sample()
            self.last_error = ""
        except (SmiError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            self.last_error = f"{self.tool}: {exc}"[:200]
            values = {}
        return [Reading(t, f"{self.vendor}{c}", **values.get(c, {})) for c in self.cards]

    def fingerprint(self) -> list[dict[str, Any]]:
        return [{"device": f"{self.vendor}{c}", "tool": self.path, "unsupported": self._unsupported}
                for c in self.cards]

    def discover(self) -> list[str]:
        """The cards' ids as the tool numbers them."""
        raise NotImplementedError

    def sample(self) -> dict[str, dict[str, Any]]:
        """Per card id: Reading fields (power_w, mem_used_gb, util, temp_c, sm_clock_mhz...) read now."""
        raise NotImplementedError
