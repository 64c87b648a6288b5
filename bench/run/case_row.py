"""A case's results row, put together from what the measuring loop gathered: the columns every row starts
with, the loaded model's, then the figures its repetitions make (metrics, memory, energy, the power limit,
the roofline, and the scenario's and the engine's own). Nothing here runs the model or times anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.core.caseid import case_tags
from bench.core.metrics import Repetition, calculate_metrics, sample_rows
from bench.core.schema import NAN, SCHEMA_VERSION
from bench.engines import device_count
from bench.hardware import devices as dev
from bench.hardware.ceilings import Ceiling
from bench.hardware.placement import per_card_gb
from bench.hardware.roofline import roofline_columns
from bench.scenarios import Loaded, Scenario
from bench.spec.workload import Case
from bench.telemetry.attribution import energy_columns, telemetry_peak_mem_gb
from bench.telemetry.power_cap import power_limit
from bench.telemetry.sampler import Sampler

GB = 1e9


@dataclass
class Gathered:
    """What the loop collected over a case's timed repetitions."""

    reps: list[Repetition] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)  # peak memory of each repetition (GB)
    host_peaks: list[float] = field(default_factory=list)  # the process's peak RSS in each repetition (GB)
    card_peaks: dict[str, float] = field(default_factory=dict)  # per card, for a model over several (GB)

    def add(self, rep: Repetition, peak_gb: float, host_peak_gb: float, per_card: dict[str, int | None]) -> None:
        """One repetition and the memory it peaked at (a card unread stays out, never 0)."""
        self.reps.append(rep)
        self.peaks.append(peak_gb)
        self.host_peaks.append(host_peak_gb)
        for card, read in per_card.items():
            if read is not None:
                self.card_peaks[card] = max(self.card_peaks.get(card, 0.0), read / GB)


def base_row(run_id: str, workload: str, scenario: Scenario, device: dev.Device, sampler: Sampler,
             case: Case) -> dict[str, Any]:
    """The columns every row has, whatever became of its case."""
    p = case.params
    model_identity = {"quant": p["quant"]} if scenario.uses_model else {}
    for load in ("request_rate", "concurrency"):  # a load sweep's cases differ by their load alone (skipped too)
        if p.get(load):
            model_identity[load] = p[load]
    return {**model_identity,
            "schema_version": SCHEMA_VERSION, "run_id": run_id, "workload": workload,
            "case": case.index, "model": p["model"], "engine": p["engine"], "device": str(device),
            "device_name": device.name, "vendor": device.vendor, "device_count": device_count(p),
            "dtype": p["dtype"], "batch_size": p["batch_size"], "input_len": p["input_len"],
            "output_len": p["output_len"], "compile": p["compile"], "cache": p["cache"], "repetitions": 0,
            "status": "", "detail": "", "energy_source": sampler.backend.energy_reason(), "tags": case_tags(p)}


def model_columns(loaded: Loaded, case: Case) -> dict[str, Any]:
    """What a row says of the model it ran on (written for a skipped case too, once the model loaded)."""
    shape = loaded.model.shape
    return {
        "weights": loaded.model.weights,
        "dtype": loaded.engine.reported_dtype(case["dtype"], dev.dtype_name(loaded.dtype)),
        "params": shape.params,
        "weight_bytes": int(loaded.weight_bytes),
        "quant": case["quant"],
        "kv_bytes_per_token": shape.kv_bytes_per_token(loaded.bytes_per_element),
    }


def measured_columns(row: dict[str, Any], got: Gathered, loaded: Loaded, case: Case, scenario: Scenario,
                     sampler: Sampler, idle_power: dict[str, float], ceiling: Ceiling, run_id: str,
                     split: list[dev.Device], concurrent: int, reuse: int) -> tuple[list[dict[str, Any]], str, str]:
    """Fill `row` with the figures of the timed repetitions; (the samples.csv rows, the energy note, the note
    that the cards ran under a power limit not their own, '' if they did not).
    split: the cards whose memory the process reads; concurrent: the cards reading weights at once (TP)."""
    p, reps, engine = case.params, got.reps, loaded.engine
    row.update(calculate_metrics(reps))
    row["repetitions"] = len(reps)
    peak = max((x for x in got.peaks if x == x), default=NAN)
    if not engine.in_process:  # another process's memory: the card's own reading (none on a CPU's shared host)
        peak = telemetry_peak_mem_gb(sampler, reps) if loaded.device.type != "cpu" else NAN
    row["peak_mem_gb"] = peak
    if got.card_peaks:
        row["peak_mem_gb_per_card"] = per_card_gb(got.card_peaks)
    row["host_peak_rss_gb"] = max(got.host_peaks)
    samples = sample_rows(run_id, case.index, p, reps)
    for sample, rep_peak in zip(samples, got.peaks):
        sample["peak_mem_gb"] = rep_peak
    cards = sampler.backend.labels_for(
        dev.card_uuids(loaded.device, device_count(p), [c.torch_device.index or 0 for c in split]
                       if len(split) > 1 else None))
    energy, energy_note = energy_columns(sampler, reps, samples, p["telemetry"], idle_power, cards)
    row.update(energy)
    limit, capped = power_limit(sampler.backend.power_limits(), cards)
    if limit == limit:
        row["power_limit_w"] = limit
    row.update(scenario.over_time(case, reps, samples, sampler.series(reps[0].start, reps[-1].end)
                                  if p["telemetry"] else {}))
    why_not = sampler.backend.capabilities().get("throttle")
    if why_not and not row["throttled"]:
        row["throttled"] = f"unknown: {why_not}"  # empty would claim "not throttled"
    row.update(roofline_columns(loaded.model.shape, loaded.weight_bytes / loaded.model.shape.params,
                                p["batch_size"], p["input_len"], p["output_len"],
                                reuse, row["decode_tok_s"], row["ttft_ms_p50"],
                                ceiling.bandwidth * concurrent, ceiling.flops * concurrent,
                                loaded.bytes_per_element))
    row.update(scenario.columns(loaded, case, row, reps))
    row.update(engine.case_columns(reps))
    return samples, energy_note, capped
