"""Vendors' SMI tools as telemetry backends: run the tool (bounded by a timeout), parse what it printed into
per-card readings, and say which fields it could not give. Bad tool output is bad input: a tool that is not
installed does not start (the probe moves on); one that exits non-zero, hangs, prints N/A, drops a field,
reorders columns or prints bytes that are not UTF-8 gives empty fields with the reason, never a crash, a
hang or a wrong number. None of these tools has an energy counter: energy is their power integrated over
the windows, with the gap check of bench.telemetry.energy.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import weakref
from collections import deque
from typing import Any, ClassVar

from bench.core import clock
from bench.telemetry.base import FIELDS, Backend, NotPresent, Reading

NOT_A_NUMBER = {"", "n/a", "na", "-", "--", "not supported", "unknown", "none"}


def number(text: Any) -> float | None:
    """The leading number of a tool's value ('68.4', '68.4 W', '45C', '1024 MiB'); None for N/A and the like."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text) if math.isfinite(float(text)) else None
    if not isinstance(text, str) or text.strip().lower() in NOT_A_NUMBER:
        return None
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match else None


def gib(text: Any, bare: str = "mib") -> float | None:
    """A memory value as GB: '1024 MiB' / '1024MiB' / '16 GiB' / '512 MB' / '879448 KB'; a bare number is in
    `bare` units (MiB unless the tool says otherwise)."""
    value = number(text)
    if value is None:
        return None
    unit = str(text).strip().lower()
    if not unit[-1:].isalpha():
        unit = bare
    if unit.endswith(("gib", "gb")):
        return value * (1 << 30) / 1e9
    if unit.endswith(("kib", "kb")):
        return value * 1024 / 1e9
    if unit.endswith("b") and not unit.endswith(("mib", "mb")):
        return value / 1e9  # bytes
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


def card_blocks(text: str, header: re.Pattern[str]) -> dict[str, dict[str, str]]:
    """Per card, the 'name : value' lines under its header line (header's group 1 is the card id), names
    lower-cased: the layout of mx-smi's "GPU#N" and efsmi's "DEV ID N" blocks."""
    cards: dict[str, dict[str, str]] = {}
    card = None
    for line in text.splitlines():
        match = header.match(line)
        if match:
            card = match.group(1)
            cards.setdefault(card, {})
        elif card is not None and ":" in line:
            key, _, value = (part.strip() for part in line.partition(":"))
            if key and value:
                cards[card].setdefault(key.lower(), value)
    return cards


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
    torch_type: ClassVar[str] = ""  # the torch device type that computes on these cards ("" : the vendor label)

    def __init__(self) -> None:
        path = shutil.which(self.tool)
        if path is None:
            raise FileNotFoundError(f"{self.tool} not on PATH" + (f" ({self.install})" if self.install else ""))
        self.path = path
        self.energy_method = self.power_method
        self.cards = self.discover()
        if not self.cards:
            raise NotPresent(f"{self.tool} lists no card")
        self.last_error = ""
        first_read = self.first_read()
        # A call that failed at start is the reason only for a field this backend reads when the tool answers;
        # a field no version of the tool prints is not blamed on a timeout.
        self._unsupported = {f: self.last_error if self.last_error and f in self.reads
                             else f"{self.tool} does not report it" for f in FIELDS
                             if all(getattr(r, f) in (None, ()) for r in first_read)}

    @property
    def power_method(self) -> str:  # type: ignore[override]
        return f"{self.tool}-power"

    def said(self, exc: Exception) -> str:
        """A failure in one line naming the tool once (run()'s errors already start with its name)."""
        text = str(exc)
        return (text if text.startswith(self.tool) else f"{self.tool}: {text}")[:200]

    def run(self, *args: str) -> str:
        """The tool's stdout as text (undecodable bytes replaced); SmiError for a failure, in words."""
        try:
            code, out, err = run_bounded([self.path, *args], self.timeout_s)
        except subprocess.TimeoutExpired:
            raise SmiError(f"{self.tool} {' '.join(args)} did not answer within {self.timeout_s:g} s") from None
        except OSError as exc:
            raise SmiError(f"{self.tool} could not run: {exc}") from None
        text = out.decode("utf-8", errors="replace")
        if code != 0:
            said = err.decode("utf-8", errors="replace").strip().splitlines()
            raise SmiError(f"{self.tool} {' '.join(args)} exited {code}: {said[0][:120] if said else ''}")
        return text

    def first_read(self) -> list[Reading]:
        """The reading at start that tells which fields the cards give."""
        return self.read()

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
            self.last_error = self.said(exc)
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


class WatchSmiBackend(SmiBackend):
    """A vendor tool left running in its own watch/dump mode (one process for the whole run, a line per card
    per period), read by a thread: no process per sample, and each reading stamped when its line arrived.

    Subclasses give the watch command and parse its lines; `slow_sample()` may add fields the watch mode does
    not print, read once per `slow_period_s`. A watch that exits is restarted at most once per 10 s, and a
    silent one leaves its readings out (a gap the energy check sees), never a repeated stale value.
    """

    period_s: ClassVar[float] = 1.0  # the interval asked of the tool
    slow_period_s: ClassVar[float] = 5.0

    def __init__(self) -> None:
        self._lines: deque[tuple[float, str, dict[str, Any]]] = deque(maxlen=10000)
        self._cond = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._started = 0.0
        self._slow: dict[str, dict[str, Any]] = {}
        self._slow_t = -math.inf
        self._slow_error = ""
        self._newest_t = -math.inf  # when the last line arrived (kept when read() hands the lines out)
        super().__init__()

    @property
    def max_hz(self) -> float:  # type: ignore[override]
        return 1.0 / self.period_s

    def watch_args(self) -> list[str]:
        """The arguments of the long-running command."""
        raise NotImplementedError

    def parse_line(self, line: str) -> list[tuple[str, dict[str, Any]]]:
        """The (card, fields) a line of the watch output gives (a header or a blank line gives none)."""
        raise NotImplementedError

    def slow_sample(self) -> dict[str, dict[str, Any]]:
        """Per card, fields the watch mode does not print (read by one call now); none by default."""
        return {}

    def _start(self) -> None:
        now = time.monotonic()
        if self._proc is not None and self._proc.poll() is None:
            return
        if now - self._started < 10.0 and self._proc is not None:
            return  # it exited a moment ago: do not spin on a tool that keeps failing
        self._started = now
        # A C tool writing to a pipe buffers its output in blocks: lines would arrive seconds late, in bursts,
        # stamped wrong. stdbuf (coreutils) makes its stdout line-buffered, as a terminal would.
        stdbuf = shutil.which("stdbuf")
        command = [stdbuf, "-oL", self.path, *self.watch_args()] if stdbuf else [self.path, *self.watch_args()]
        try:
            self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise SmiError(f"{self.tool} could not run: {exc}") from None
        weakref.finalize(self, _stop, self._proc)
        threading.Thread(target=self._reader, args=(self._proc,), name=f"{self.tool}-watch", daemon=True).start()

    def _reader(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            t = clock.now()
            try:
                parsed = self.parse_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            except (ValueError, KeyError, IndexError, TypeError):
                continue  # a line it cannot read is not a reading
            if parsed:
                with self._cond:
                    self._lines.extend((t, card, fields) for card, fields in parsed)
                    self._newest_t = t
                    self._cond.notify_all()

    def settle(self, after: float, wait_s: float | None = None) -> None:
        """Wait (at most two periods) until the watch has printed a reading at or after `after`."""
        deadline = time.monotonic() + (2 * self.period_s if wait_s is None else wait_s)
        with self._cond:
            while self._newest_t < after:  # a line already handed out still brackets the window
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def read(self) -> list[Reading]:
        """The readings printed since the last read, with the slow fields merged into the newest of each card."""
        try:
            self._start()
        except SmiError as exc:
            self.last_error = self.said(exc)
        with self._cond:
            lines = list(self._lines)
            self._lines.clear()
        errors = []
        if self._proc is not None and self._proc.poll() is not None and not lines:
            errors.append(f"{self.tool} {' '.join(self.watch_args())} exited {self._proc.returncode}")
        if clock.now() - self._slow_t >= self.slow_period_s:
            self._slow_t = clock.now()
            try:
                self._slow, self._slow_error = self.slow_sample(), ""
            except (SmiError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                self._slow, self._slow_error = {}, self.said(exc)
        # A slow call that failed is said until the next one answers, even while the watch lines keep coming:
        # the fields only it gives are empty for that reason, not because the tool lacks them.
        if self._slow_error:
            errors.append(self._slow_error)
        newest = {card: i for i, (_, card, _) in enumerate(lines)}
        readings = []
        for i, (t, card, fields) in enumerate(lines):
            if card not in self.cards:
                continue
            extra = {k: v for k, v in self._slow.get(card, {}).items() if fields.get(k) is None} \
                if newest[card] == i else {}
            readings.append(Reading(t, f"{self.vendor}{card}", **{**fields, **extra}))
        if lines or errors:
            self.last_error = "; ".join(errors)
        return readings

    def first_read(self) -> list[Reading]:
        self._start()
        self.settle(clock.now(), wait_s=self.timeout_s + 2 * self.period_s)  # the tool's own start-up too
        readings = self.read()
        if self._slow_error:  # one slow call missed its timeout at start: ask once more before a field is
            self._slow_t = -math.inf  # called unsupported for the whole run
            self.settle(clock.now())
            readings += self.read()
        return readings

    def close(self) -> None:
        if self._proc is not None:
            _stop(self._proc)


def run_bounded(command: list[str], timeout_s: float) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of a vendor tool, which may not outlive `timeout_s`, nor may anything it
    started: it runs in its own process group, killed whole on the timeout (subprocess.run's timeout kills the
    tool alone, and a helper it forked ran on). TimeoutExpired when it did not answer."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=2)  # a helper that left the group could hold the pipes: never wait on it
        raise
    _kill_group(proc, signal.SIGKILL)  # the tool answered; a helper it left behind goes too
    return proc.returncode, out, err


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen) -> None:
    """End a watch process and everything it started (terminate, then kill), never leaving any behind."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait(timeout=2)
    _kill_group(proc, signal.SIGKILL)
