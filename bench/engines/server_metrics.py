"""What the server says about itself: its Prometheus /metrics page (vLLM, SGLang, TGI), sampled in the background
while a case runs, on the harness clock (the telemetry timeline), and summarised per case: requests running
and waiting, peak KV-cache usage, the prefix-cache hit rate, preemptions, speculative-decoding acceptance.

The page is parsed with prometheus_client's own parser. A server without /metrics, or one that serves garbage
there, costs one line in the row's detail, never the run.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.core import clock
from bench.core.schema import NAN

# The sample names each figure is read from, first found wins: vLLM v1 (and its older name), SGLang, TGI.
GAUGES: dict[str, tuple[str, ...]] = {
    "running": ("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size"),
    "waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size"),
    "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"),
}
COUNTERS: dict[str, tuple[str, ...]] = {
    "prefix_queries": ("vllm:prefix_cache_queries_total",),
    "prefix_hits": ("vllm:prefix_cache_hits_total",),
    "preemptions": ("vllm:num_preemptions_total",),
    "spec_drafts": ("vllm:spec_decode_num_drafts_total",),
    "spec_draft_tokens": ("vllm:spec_decode_num_draft_tokens_total",),
    "spec_accepted": ("vllm:spec_decode_num_accepted_tokens_total",),
}
PERIOD_S = 0.25  # a page is tens of kB: four reads a second cost the client little and see a case's ramp
TIMEOUT_S = 2.0  # a read that takes longer is given up; the next one tries again

COLUMNS = ("server_running_mean", "server_running_max", "server_waiting_mean", "server_waiting_max",
           "server_kv_usage_max", "server_prefix_hit_rate", "server_preemptions", "server_spec_accept_rate",
           "server_spec_accepted_len")


class Unreadable(ValueError):
    """The page is not Prometheus text, or holds none of the figures we read."""


def parse_page(text: str) -> dict[str, float]:
    """Each figure of GAUGES and COUNTERS the page holds, summed over its label sets (one per engine or model);
    Unreadable for a page prometheus_client cannot parse or one that names none of them."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if math.isfinite(sample.value):
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    except Exception as exc:  # noqa: BLE001 - the parser raises ValueError, IndexError, TypeError on garbage
        raise Unreadable(f"not Prometheus text ({exc.__class__.__name__}: {str(exc)[:60]})") from None
    figures = {key: next(totals[n] for n in names if n in totals)
               for key, names in {**GAUGES, **COUNTERS}.items() if any(n in totals for n in names)}
    if not figures:
        raise Unreadable("none of the figures we read (vllm:num_requests_running, ...) is on it")
    return figures


@dataclass
class ServerMetrics:
    """A background reader of `url` (the server's /metrics) into timestamped samples; `summary(start, end)`
    gives a case's columns from the samples of its window. After the first failure it stops and `problem`
    says why, once."""

    url: str
    http: Any  # an httpx.Client of its own (the requests' pool stays theirs)
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    problem: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.read_now()
        if not self.problem:
            self._thread = threading.Thread(target=self._loop, name="server-metrics", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_S + 1)
        self.http.close()

    def _loop(self) -> None:
        while not self._stop.wait(PERIOD_S) and not self.problem:
            self.read_now()

    def read_now(self) -> None:
        """One read, kept with the time it was taken (the edges of a case call it too)."""
        if self.problem:
            return
        t = clock.now()
        try:
            resp = self.http.get(self.url, timeout=TIMEOUT_S)
            if resp.status_code != 200:
                raise Unreadable(f"HTTP {resp.status_code}")
            figures = parse_page(resp.text)
        except Unreadable as exc:
            self.problem = f"server metrics not read: {self.url}: {exc}"
            return
        except Exception as exc:  # noqa: BLE001 - httpx errors, a connection reset: this read only is lost
            if not self.samples:
                self.problem = f"server metrics not read: {self.url}: {exc.__class__.__name__}"
            return
        with self._lock:
            self.samples.append((t, figures))

    def summary(self, start: float, end: float) -> tuple[dict[str, float], str]:
        """The case's columns over [start, end], and the line to add to its detail ('' when none)."""
        with self._lock:
            samples = list(self.samples)
        if self.problem:
            return {}, self.problem
        return summarise(samples, start, end), ""


def summarise(samples: Sequence[tuple[float, dict[str, float]]], start: float, end: float) -> dict[str, float]:
    """Gauges over the samples inside the window (mean and max); counters as the difference between the last
    sample at or before the window's start and the first at or after its end (the window's own counts)."""
    inside = [f for t, f in samples if start <= t <= end]
    before = [f for t, f in samples if t <= start] or [f for t, f in samples if t >= start][:1]
    after = [f for t, f in samples if t >= end][:1] or [f for t, f in samples if t <= end][-1:]

    def gauge(key: str, how: Any) -> float:
        values = [f[key] for f in inside if key in f]
        return float(how(values)) if values else NAN

    def counted(key: str) -> float:
        if not before or not after or key not in before[-1] or key not in after[0]:
            return NAN
        return after[0][key] - before[-1][key]

    queries, hits = counted("prefix_queries"), counted("prefix_hits")
    drafts, draft_tokens, accepted = counted("spec_drafts"), counted("spec_draft_tokens"), counted("spec_accepted")
    return {
        "server_running_mean": gauge("running", lambda v: sum(v) / len(v)),
        "server_running_max": gauge("running", max),
        "server_waiting_mean": gauge("waiting", lambda v: sum(v) / len(v)),
        "server_waiting_max": gauge("waiting", max),
        "server_kv_usage_max": gauge("kv_usage", max),
        "server_prefix_hit_rate": hits / queries if queries > 0 else NAN,
        "server_preemptions": counted("preemptions"),
        "server_spec_accept_rate": accepted / draft_tokens if draft_tokens > 0 else NAN,
        # vLLM's mean acceptance length: the token every step decodes anyway plus the accepted drafts per draft.
        "server_spec_accepted_len": 1 + accepted / drafts if drafts > 0 else NAN,
    }
