"""Plain generation: throughput, latency against SLOs, long answers in slices, fit in a memory budget.

What a generate case answers is set by its parameters (slo_*, slice_tokens,
fit_budget_gb, max_mem_gb), so one scenario serves the throughput, latency,
edge, power, long-generation and telemetry-overhead workloads.
"""

from __future__ import annotations

from typing import Any

from bench.core.caseid import case_text
from bench.core.figures import finite
from bench.core.metrics import (
    Repetition,
    concurrency_achieved,
    decode_slices,
    goodput_fraction,
    queue_ms_p99,
    send_schedule,
    steady_window,
)
from bench.core.schema import NAN
from bench.engines import load_key
from bench.hardware.roofline import predicted_extra_bytes
from bench.scenarios.base import Loaded, Scenario
from bench.scenarios.sampler_cost import sampler_costs
from bench.spec.workload import Case

GB = 1e9


def _positive(value: Any) -> bool:
    """A workload key with a value above zero (a scalar key, or any value of a matrix key's list)."""
    return any(v > 0 for v in value) if isinstance(value, list) else value > 0


class GenerateScenario(Scenario):
    """Generate exactly output_len tokens for batch_size prompts of input_len tokens."""

    kind = "generate"

    def __init__(self, workload: Any) -> None:
        super().__init__(workload)
        self.oom_at: dict[tuple, int] = {}  # shortest input that ran out of memory, per context group
        self.last_ok: dict[tuple, int] = {}  # longest input that ran, per context group
        self.best_batch: dict[tuple, int] = {}  # largest batch meeting the SLOs, per model and lengths
        self.best_load: dict[tuple, float] = {}  # largest load (request rate, else concurrency) meeting the SLOs
        self.broken: dict[tuple, tuple[float, str]] = {}  # the lowest load that broke the SLOs by the margin

    @staticmethod
    def context_group(case: Case) -> tuple:
        """Cases that differ only in input length: a longer one cannot fit where a shorter one did not."""
        return (*load_key(case.params), case["batch_size"], case["output_len"])

    def declared_columns(self) -> set[str]:
        """Plus the SLO, slice and memory-budget columns when the workload sets those keys."""
        p = self.workload.params
        cols = super().declared_columns()
        if any(_positive(p[k]) for k in ("slo_tpot_ms", "slo_ttft_ms", "slo_itl_ms")):
            cols |= {"goodput_frac", "max_batch_meeting_slo"}
        if _positive(p["slice_tokens"]):
            cols |= {"decode_tok_s_slices", "decode_slowdown"}
        if _positive(p["fit_budget_gb"]):
            cols.add("fits_budget")
        if _positive(p.get("request_rate", 0)) or any(p.get("trace") or []):
            cols |= {"request_rate", "achieved_rate_rps", "send_lateness_ms_p99"}
        if any(_positive(p[k]) for k in ("slo_tpot_ms", "slo_ttft_ms")):
            cols.add("max_load_meeting_slo")
        if _positive(p.get("concurrency", 0)):
            cols |= {"concurrency", "queue_ms_p99"}
        if any(_positive(p.get(k, 0)) for k in ("request_rate", "concurrency")) or any(p.get("trace") or []) \
                or _positive(p.get("turns", 1) - 1 if not isinstance(p.get("turns"), list) else
                             [t - 1 for t in p["turns"]]):
            cols |= set(LOAD_COLUMNS)
        return cols

    def predicted_extra_bytes(self, loaded: Loaded, case: Case, input_len: int | None = None) -> float:
        return predicted_extra_bytes(loaded.model.shape, loaded.bytes_per_element, case["batch_size"],
                                     case["input_len"] if input_len is None else input_len, case["output_len"],
                                     loaded.engine.materializes_attention_scores())

    def skip(self, loaded: Loaded, case: Case, probing: bool) -> tuple[str, str] | None:
        max_pos = loaded.model.shape.max_position
        total = case["input_len"] + case["output_len"]
        if max_pos and total > max_pos:
            return "skipped", f"input+output {total} exceeds the model's {max_pos} positions"
        broken = self.broken.get(slo_group(case.params))
        if not probing and broken is not None and load_of(case.params) > broken[0]:
            return "skipped", f"sweep stopped: load {broken[0]:g} already {broken[1]}"
        oom_len = self.oom_at.get(self.context_group(case))
        if not probing and oom_len is not None and case["input_len"] >= oom_len:
            return "skipped", f"a shorter input ({oom_len}) already ran out of memory or over max_mem_gb"
        # Never start what the machine cannot hold: a host OOM kill would lose the run, not just the case.
        # A max_mem_gb budget does not stop a case: its measured peak decides ok or over_budget.
        need = loaded.resident_at_start + self.predicted_extra_bytes(loaded, case)
        limit = loaded.usable_bytes()
        if need > limit:
            where = f"these {len(loaded.cards)} cards" if len(loaded.cards) > 1 else "this device"
            return "skipped", (f"predicted {need / GB:.2f} GB (model + KV cache + activations) exceeds the "
                               f"{limit / GB:.2f} GB {where} can hold; not run")
        return None

    def columns(self, loaded: Loaded, case: Case, row: dict[str, Any], reps: list[Repetition]) -> dict[str, Any]:
        p = case.params
        shape = loaded.model.shape
        batch, total = p["batch_size"], p["input_len"] + p["output_len"]
        model_mem = loaded.weight_bytes + batch * total * shape.kv_bytes_per_token(
            loaded.bytes_per_element)
        cols: dict[str, Any] = {
            "goodput_frac": goodput_fraction(reps, p["slo_tpot_ms"], p["slo_ttft_ms"], p["slo_itl_ms"]),
            "energy_per_answer_j": row["energy_j"] / (len(reps) * batch) if reps else NAN,
            "model_mem_gb": model_mem / GB,
        }
        if p["fit_budget_gb"] > 0:
            cols["fits_budget"] = model_mem <= p["fit_budget_gb"] * GB
        if p.get("request_rate", 0) > 0 or p.get("trace"):
            sent = send_schedule(reps)
            cols.update({k: sent[k] for k in ("achieved_rate_rps", "send_lateness_ms_p99")})
        if under_load(p):
            cols.update(self.steady_columns(p, reps))
        if p.get("concurrency", 0):
            cols["queue_ms_p99"] = queue_ms_p99(reps)
        if p["slice_tokens"] > 0:
            slices = decode_slices(reps, p["slice_tokens"])
            cols["decode_tok_s_slices"] = ";".join(f"{v:.1f}" for v in slices)
            if len(slices) > 1 and slices[0] > 0:
                cols["decode_slowdown"] = slices[-1] / slices[0]
        return cols

    def steady_columns(self, p: dict[str, Any], reps: list[Repetition]) -> dict[str, Any]:
        """Requests in flight on average, and throughput over each repetition's steady window (median over the
        repetitions that had one); where none had one, the figure is empty and the detail says how many
        requests would hold one."""
        achieved = [concurrency_achieved(rep.requests) for rep in reps]
        windows, why = [], ""
        for rep, mean in zip(reps, achieved):
            target = steady_target(p, mean)
            window, why = steady_window(rep.requests, target)
            if window is not None:
                windows.append((window.output_tok_s, window.start - rep.start, window.end - rep.start))
        cols: dict[str, Any] = {"concurrency_achieved": sorted(achieved)[len(achieved) // 2]}
        if not windows:
            target = steady_target(p, cols["concurrency_achieved"])
            self.note(f"no steady window: {why}; about {STEADY_ROUNDS * target} requests at this load would hold "
                      f"one (num_requests)")
            return cols
        tok_s, start, end = sorted(windows)[len(windows) // 2]
        return {**cols, "output_tok_s_steady": tok_s, "steady_start_s": start, "steady_end_s": end}

    def after(self, case: Case, row: dict[str, Any]) -> None:
        """Longest ok input per context group; largest batch within the SLOs so far."""
        if row["status"] == "ok":
            group = self.context_group(case)
            self.last_ok[group] = max(self.last_ok.get(group, 0), case["input_len"])
        p = case.params
        if p["slo_tpot_ms"] > 0 or p["slo_ttft_ms"] > 0:
            meets = row["status"] == "ok" and \
                (p["slo_tpot_ms"] <= 0 or row["tpot_ms_p99"] <= p["slo_tpot_ms"]) and \
                (p["slo_ttft_ms"] <= 0 or row["ttft_ms_p99"] <= p["slo_ttft_ms"])
            group = slo_group(p)
            if meets:
                self.best_batch[group] = max(self.best_batch.get(group, 0), case["batch_size"])
                self.best_load[group] = max(self.best_load.get(group, 0.0), load_of(p))
            row["max_batch_meeting_slo"] = self.best_batch.get(group, NAN)
            row["max_load_meeting_slo"] = self.best_load.get(group, NAN)
            why = broke_by_margin(row, p)
            if why and (group not in self.broken or load_of(p) < self.broken[group][0]):
                self.broken[group] = (load_of(p), why)

    def on_oom(self, case: Case) -> None:
        group = self.context_group(case)
        self.oom_at[group] = min(self.oom_at.get(group, case["input_len"]), case["input_len"])

    def answers(self, rows: list[dict[str, Any]]) -> list[str]:
        """Whether each model fits its budget, the share of requests within the SLO and the largest batch or
        request rate meeting it, and the sampler's cost where trials paired it on and off."""
        ok = [r for r in rows if r.get("status") == "ok"]
        lines = []
        budget = self.workload.params.get("fit_budget_gb", 0) or 0
        for r in ok:
            if r.get("fits_budget") not in (None, "") and finite(r.get("model_mem_gb")) is not None:
                fits = str(r["fits_budget"]).lower() == "true"
                lines.append(f"{case_text(r)}: {'fits' if fits else 'does not fit'} the {budget:g} GB budget "
                             f"({float(r['model_mem_gb']):.2f} GB weights + KV cache)")
        slo = [r for r in ok if finite(r.get("goodput_frac")) is not None]
        if slo:
            best = max((int(b) for r in slo if (b := finite(r.get("max_batch_meeting_slo"))) is not None),
                       default=None)
            share = ", ".join(f"bs={r['batch_size']}{' ' + r['tags'] if isinstance(r.get('tags'), str) and r['tags'] else ''}"
                              f" {float(r['goodput_frac']):.0%}" for r in slo)
            lines.append(f"requests within the SLO: {share}" + (f"; largest batch meeting it: {best}" if best else
                                                                 "; no batch met it"))
        lines += _load_answer(rows, "rate=", "request rate", "requests/s")
        lines += _load_answer(rows, "users=", "concurrency", "users")
        return lines + [cost.text() for cost in sampler_costs(rows)]


LOAD_COLUMNS = ("concurrency_achieved", "output_tok_s_steady", "steady_start_s", "steady_end_s")
STEADY_ROUNDS = 3  # a window at least one request long needs about this many requests per slot in flight


def under_load(params: dict[str, Any]) -> bool:
    """An open loop (a request rate, a trace) or a closed one (users, sessions): a load with a steady state."""
    return bool(params.get("request_rate", 0) or params.get("concurrency", 0) or params.get("trace")
                or params.get("turns", 1) > 1)


def steady_target(params: dict[str, Any], achieved: float) -> int:
    """Requests in flight the load aims at: a closed loop's users (or sessions); for arrivals, the whole
    mean in flight they kept (Little's law), at most the users that serve them."""
    users = params.get("concurrency", 0) or (params["batch_size"] if params.get("turns", 1) > 1 else 0)
    if users and not params.get("request_rate", 0):
        return int(users)
    held = max(1, int(achieved)) if achieved == achieved else 1
    return min(held, users) if users else held


def _load_answer(rows: list[dict[str, Any]], tag: str, what: str, unit: str) -> list[str]:
    """The largest load of a sweep (rate or users) meeting the SLO, and where the sweep stopped."""
    loads = [r for r in rows if tag in str(r.get("tags") or "") and r.get("max_load_meeting_slo") is not None]
    if not loads:
        return []
    best_load = max((b for r in loads if (b := finite(r.get("max_load_meeting_slo"))) is not None), default=None)
    stopped = [r for r in rows if str(r.get("detail", "")).startswith("sweep stopped")]
    return [(f"largest {what} meeting the SLO: {best_load:g} {unit}" if best_load else f"no {what} met the SLO")
            + (f" (sweep stopped at case {stopped[0]['case']})" if stopped else "")]


SLO_MARGIN = 1.5  # a load whose p99 exceeds the SLO by this factor, or that failed, ends its sweep


def slo_group(params: dict[str, Any]) -> tuple:
    """Cases of one sweep: the same model and engine settings and lengths, at different loads."""
    return (*load_key(params), params["input_len"], params["output_len"])


def load_of(params: dict[str, Any]) -> float:
    """A case's load: its request rate where it has one (open loop), else its users (closed loop), else its
    batch size."""
    rate = params.get("request_rate", 0) or 0
    users = params.get("concurrency", 0) or 0
    return float(rate) if rate > 0 else float(users) if users > 0 else float(params["batch_size"])


def broke_by_margin(row: dict[str, Any], params: dict[str, Any]) -> str:
    """Why this load ends the sweep ('' when it does not): it failed, or its p99 broke an SLO by the margin."""
    if row["status"] in ("error", "oom"):
        return f"failed ({row['status']})"
    for metric, slo in (("ttft_ms_p99", params["slo_ttft_ms"]), ("tpot_ms_p99", params["slo_tpot_ms"])):
        value = row.get(metric)
        if slo > 0 and isinstance(value, float) and value == value and value > SLO_MARGIN * slo:
            return f"broke the SLO by more than {SLO_MARGIN:g}x ({metric} {value:.0f} ms > {slo:g} ms)"
    return ""
