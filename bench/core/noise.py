"""Typed warnings about a measurement's noise, in the manner of hyperfine's: pure functions of a case's
row, its repetitions and what else used the machine meanwhile.

A case's warnings travel as NoiseWarning objects to the writer: their kinds go into the row's `warnings`
column ("high-cv;shared-device"), their text into `detail` ("warning KIND: message"). Every reader
(verify, check, the printers, the report) reads the column, never the text; the terminal table marks
the row, and the end of a run lists the warnings with what to do about them.
Depends on nothing above the measuring loop.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.core.metrics import Repetition, send_schedule
from bench.core.schema import GATE_MIN_REPS as GATE_REPS  # bench check's rank test needs this many a side

CV_LIMIT = 0.10  # decode tok/s varying more than this between repetitions
Z_LIMIT = 3.5  # modified z-score of an outlier repetition (Iglewicz and Hoaglin)
SLOW_FIRST = 1.5  # first repetition this much slower than the median of the others
SHARED_CORES = 0.5  # other processes using more than this many cores during the case

# Kinds that say what a run can support rather than doubt a figure: listed at the end as notes, the row not
# marked "!" (few-reps fires on every default CPU run, and a mark on every row would teach people to ignore it).
ADVISORY = frozenset({"few-reps"})

ADVICE: dict[str, str] = {
    "high-cv": "more repetitions (--set min_reps=10), a longer --set min_seconds, or a quieter machine",
    "outlier": "a quiet machine, then run again; every repetition stays in samples.csv to inspect",
    "few-reps": f"--set min_reps={GATE_REPS} or more, so bench check can use its statistical test",
    "slow-first": "more warm-up (--set warmup=2): the first timed repetition still paid a one-off cost",
    "throttled": "cool the card or check its power limit; compare only runs without throttling",
    "shared-device": "stop the other work or use a dedicated machine, then run again",
    "sparse-telemetry": "the power workload holds the load for seconds and resolves J/token",
    "ceiling-low": "measure the ceilings again on a quiet machine (membw, matmul) into the same results root",
    "engine-bound": "--set decode=captured (the default on accelerators): a verdict from such a row is inconclusive",
    "recompiled": "more warm-up (--set warmup=2), or fewer distinct shapes per run, so no timed call compiles",
    "wrong-output": "the timed path decoded something other than the model (its check_* columns say by how much): "
                    "report it; no speed verdict or gate passes on it, and --set check=false only hides it",
    "client-bound": "a lower request_rate, fewer requests, or the client on its own machine: the figure "
                    "measures this client more than the server",
}


@dataclass(frozen=True)
class NoiseWarning:
    """One warning: its kind (a key of ADVICE) and what was seen."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"warning {self.kind}: {self.message}"


def modified_z_scores(values: list[float]) -> list[float]:
    """0.6745 (x - median) / MAD for each value; all zero when the MAD is zero."""
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return [0.0 if mad == 0 else 0.6745 * (v - median) / mad for v in values]


def warnings_for(row: dict[str, Any], samples: list[dict[str, Any]], other_cores: float | None = None,
                 other_processes: list[str] | None = None, energy_note: str = "") -> list[NoiseWarning]:
    """The warnings a finished case deserves."""
    found: list[NoiseWarning] = []
    cv = row.get("decode_tok_s_cv")
    if isinstance(cv, float) and cv == cv and cv > CV_LIMIT:
        found.append(NoiseWarning("high-cv", f"decode tok/s varies {cv:.1%} between repetitions"))
    times = [s["e2e_ms"] for s in samples if isinstance(s.get("e2e_ms"), int | float) and s["e2e_ms"] == s["e2e_ms"]]
    if len(times) >= 3:
        rest = statistics.median(times[1:])
        slow_first = rest > 0 and times[0] > SLOW_FIRST * rest
        scores = modified_z_scores(times)
        outliers = [(i, t, z) for i, (t, z) in enumerate(zip(times, scores))
                    if abs(z) > Z_LIMIT and not (i == 0 and slow_first)]  # a slow first one is said below
        if outliers:
            said = ", ".join(f"#{i + 1} took {t:.0f} ms (z {z:.1f})" for i, t, z in outliers[:3])
            found.append(NoiseWarning("outlier", f"{len(outliers)} of {len(times)} repetitions are outliers: {said}"))
        if slow_first:
            found.append(NoiseWarning("slow-first", f"the first repetition took {times[0] / rest:.1f}x the median "
                                                    "of the others"))
    reps = row.get("repetitions") or 0
    if 0 < reps < GATE_REPS:
        found.append(NoiseWarning("few-reps", f"{reps} repetitions: bench check falls back to its all-pairs rule "
                                              f"below {GATE_REPS}"))
    throttled = str(row.get("throttled") or "")
    if throttled and not throttled.startswith("unknown"):
        found.append(NoiseWarning("throttled", f"the device throttled during the case ({throttled})"))
    if other_cores is not None and other_cores > SHARED_CORES:
        free = max(1, own_cores() - round(other_cores))
        found.append(NoiseWarning("shared-device", f"other processes used {other_cores:.1f} CPU cores during the "
                                                   f"case; try --set threads={free} (torch's threads spin against "
                                                   "the other work)"))
    if other_processes:
        found.append(NoiseWarning("shared-device", f"other processes on the device: {', '.join(other_processes[:5])}"))
    if energy_note:
        found.append(NoiseWarning("sparse-telemetry", energy_note))
    return found


def own_cores() -> int:
    """The cores this process may run on (its affinity mask), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


class OtherLoad:
    """CPU time other processes used while a case ran: the machine's busy time less this process's."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process(os.getpid())
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float]:
        cpu = self._psutil.cpu_times()
        busy = sum(cpu) - cpu.idle - getattr(cpu, "iowait", 0.0)
        own = self._process.cpu_times()
        mine = own.user + own.system + own.children_user + own.children_system
        for child in self._process.children(recursive=True):  # vLLM's engine core is ours, not another's
            try:
                times = child.cpu_times()
                mine += times.user + times.system
            except self._psutil.Error:
                pass  # it ended meanwhile: its time is in children_* once reaped
        return time.monotonic(), busy, mine

    def cores(self) -> float | None:
        """Average cores used by other processes since creation (None over too short a window)."""
        wall0, busy0, own0 = self._start
        wall1, busy1, own1 = self._snapshot()
        if wall1 - wall0 < 0.5:
            return None
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)


def kinds_text(warnings: list[NoiseWarning]) -> str:
    """The `warnings` column: each kind once, in order, joined by ';'."""
    return ";".join(dict.fromkeys(w.kind for w in warnings))


def kinds(column: Any) -> list[str]:
    """The kinds a row's `warnings` column holds ('' or NaN: none)."""
    if not isinstance(column, str):
        return []
    return [k for k in column.split(";") if k]


def summary(rows: list[dict[str, Any]], advisory: bool | None = None) -> list[str]:
    """One line per warning kind seen in the rows: how many cases, and what to do.
    advisory: True lists only the ADVISORY kinds, False only the others, None all."""
    cases: dict[str, list[str]] = {}
    for row in rows:
        for kind in kinds(row.get("warnings")):
            if advisory is None or (kind in ADVISORY) == advisory:
                cases.setdefault(kind, []).append(str(row.get("case", "?")))
    return [f"{kind} in case(s) {', '.join(numbers)}: {ADVICE.get(kind, '')}" for kind, numbers in cases.items()]


def doubts(column: Any) -> list[str]:
    """The warning kinds in a row's `warnings` column that question its figures (ADVISORY notes left out)."""
    return [kind for kind in kinds(column) if kind not in ADVISORY]


CLIENT_LATE_MS = 10.0  # a request sent later than this (or 10% of the mean interval) behind its arrival time
CLIENT_SHORT = 0.9  # achieved rate below this share of the scheduled one
CLIENT_CPU = 0.9  # this process busy on this share of its cores while sending


def client_bound(reps: list[Repetition], params: dict[str, Any], cpu_share: float) -> list[NoiseWarning]:
    """A `client-bound` warning when an open-loop client did not keep its arrival schedule (late sends, a
    lower rate than scheduled) or saturated this machine's cores: then the figures measure the client."""
    sent = send_schedule(reps)
    rate = (params.get("request_rate", 0) or 0) or (sent["scheduled_rate_rps"] if params.get("trace") else 0)
    if not rate or rate != rate or rate <= 0:
        return []
    bound = max(CLIENT_LATE_MS, 100.0 / rate)
    said = []
    if sent["send_lateness_ms_p99"] > bound:
        said.append(f"p99 of sends {sent['send_lateness_ms_p99']:.1f} ms late (bound {bound:.1f} ms)")
    if sent["achieved_rate_rps"] < CLIENT_SHORT * sent["scheduled_rate_rps"]:
        said.append(f"sent {sent['achieved_rate_rps']:.2f} requests/s of the {sent['scheduled_rate_rps']:.2f} "
                    "scheduled")
    if cpu_share >= CLIENT_CPU:
        said.append(f"this process kept {cpu_share:.0%} of its cores busy")
    return [NoiseWarning("client-bound", "; ".join(said) + ": the client fell behind its schedule")] if said else []


def cpu_seconds() -> float:
    """CPU time this process has used (all its threads), for the client's own load."""
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system
