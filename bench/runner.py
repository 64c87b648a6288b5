"""Run a workload's cases: load each model once, warm up, repeat, measure, yield rows.

No file I/O here: the caller writes each yielded result before asking for the
next one, so a crash loses at most the case in progress.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from bench import devices as dev
from bench.engines import Engine, EngineUnavailable, LoadOptions, get_engine
from bench.errors import BadInput
from bench.metrics import Repetition, calculate_metrics, enough_repetitions, repetition_metrics
from bench.models import ModelSpec, resolve_model
from bench.prompts import random_prompts, special_token_ids
from bench.roofline import decode_bound_tok_s, decode_bytes_per_step, mbu, mfu, prefill_flops
from bench.schema import SCHEMA_VERSION
from bench.telemetry.base import Reading
from bench.telemetry.sampler import Sampler, summarise_windows
from bench.workload import Case, Workload

NAN = float("nan")
GB = 1e9


@dataclass(frozen=True)
class Ceiling:
    """The device's memory bandwidth (B/s) and 16-bit FLOP/s, and where the figures come from."""

    bandwidth: float = NAN
    flops: float = NAN
    source: str = ""


@dataclass
class CaseResult:
    """What one case produced: its results row, its raw repetitions, and the telemetry taken meanwhile."""

    row: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    telemetry: list[tuple[Reading, str]] = field(default_factory=list)


ProgressFn = Callable[[Case, str], None]


def is_oom(exc: BaseException) -> bool:
    """torch's OOM, or an allocator failure that means the same on CPU."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}".strip()


class Runner:
    """Runs cases on one device with one telemetry sampler."""

    def __init__(self, workload: Workload, device: dev.Device, sampler: Sampler, run_id: str,
                 ceiling: Ceiling | None = None, idle_power: dict[str, float] | None = None,
                 progress: ProgressFn | None = None) -> None:
        self.workload = workload
        self.device = device
        self.sampler = sampler
        self.run_id = run_id
        self.ceiling = ceiling or Ceiling()
        self.idle_power = idle_power or {}
        self.progress = progress or (lambda case, msg: None)
        self.engine: Engine | None = None
        self.loaded_key: tuple | None = None
        self.load_error: tuple[str, str] | None = None  # (status, detail) for every case of a failed load
        self.load_seconds = NAN
        self.model: ModelSpec | None = None
        self.dtype_reason = ""
        self.oom_at: dict[tuple, int] = {}  # long-context: shortest input that ran out of memory

    # --- the loop ----------------------------------------------------------------------

    def run(self, cases: list[Case]) -> Iterator[CaseResult]:
        """Yield one CaseResult per case, in order. Never raises for a case's own failure."""
        try:
            for case in cases:
                yield self._run_case(case)
        finally:
            self._unload()

    def _run_case(self, case: Case) -> CaseResult:
        row = self._base_row(case)
        self._ensure_loaded(case, row)
        if self.load_error is not None:
            row["status"], row["detail"] = self.load_error
            return self._finish(row)
        assert self.model is not None
        row.update(self._model_columns(case))
        skip = self._why_skip(case)
        if skip:
            row["status"], row["detail"] = skip
            return self._finish(row)
        try:
            return self._measure(case, row)
        except Exception as exc:  # noqa: BLE001 - a failed case is a row, not a crash
            self._free()
            if is_oom(exc):
                group = self._context_group(case)
                self.oom_at[group] = min(self.oom_at.get(group, case["input_len"]), case["input_len"])
                row["status"], row["detail"] = "oom", first_line(exc)
            else:
                row["status"], row["detail"] = "error", first_line(exc)
            return self._finish(row)

    def _finish(self, row: dict[str, Any], samples: list[dict] | None = None) -> CaseResult:
        self.sampler.sample_now()
        return CaseResult(row, samples or [], self.sampler.drain())

    # --- loading -----------------------------------------------------------------------

    @staticmethod
    def _load_key(case: Case) -> tuple:
        return (case["model"], case["engine"], case["dtype"], case["compile"], case["cache"], case["seed"])

    def _ensure_loaded(self, case: Case, row: dict[str, Any]) -> None:
        key = self._load_key(case)
        if key == self.loaded_key:
            return
        self._unload()
        self.loaded_key, self.load_error, self.load_seconds = key, None, NAN
        self.model = resolve_model(case["model"])
        dtype, self.dtype_reason = dev.pick_dtype(case["dtype"], self.device)
        self.dtype = dtype
        self.progress(case, f"loading {case['model']}")
        try:
            engine = get_engine(case["engine"])
            t0 = time.perf_counter()
            engine.load(self.model, self.device,
                        LoadOptions(dtype=dtype, compile=case["compile"], cache=case["cache"], seed=case["seed"]))
            dev.synchronize(self.device)
            self.load_seconds = time.perf_counter() - t0
            self.engine = engine
            row["load_seconds"] = self.load_seconds
        except EngineUnavailable as exc:
            self.load_error = ("skipped", str(exc))
        except Exception as exc:  # noqa: BLE001
            self._free()
            status = "oom" if is_oom(exc) else "error"
            self.load_error = (status, f"model load failed: {first_line(exc)}")

    def _unload(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self.loaded_key = None
        self._free()

    def _free(self) -> None:
        dev.empty_cache(self.device)

    # --- one case ----------------------------------------------------------------------

    def _base_row(self, case: Case) -> dict[str, Any]:
        p = case.params
        return {
            "schema_version": SCHEMA_VERSION, "run_id": self.run_id, "workload": self.workload.name,
            "case": case.index, "model": p["model"], "engine": p["engine"], "device": str(self.device),
            "device_name": self.device.name, "device_count": 1, "dtype": p["dtype"],
            "batch_size": p["batch_size"], "input_len": p["input_len"], "output_len": p["output_len"],
            "compile": p["compile"], "cache": p["cache"], "repetitions": 0,
            "status": "", "detail": "",
            "energy_source": self.sampler.backend.energy_reason(),
            "tags": _tags(p),
        }

    def _model_columns(self, case: Case) -> dict[str, Any]:
        assert self.model is not None
        shape = self.model.shape
        bytes_per = torch.finfo(self.dtype).bits // 8
        return {
            "weights": self.model.weights,
            "dtype": dev.dtype_name(self.dtype),
            "params": shape.params,
            "weight_bytes": shape.params * bytes_per,
            "kv_bytes_per_token": shape.kv_bytes_per_token(bytes_per),
        }

    def _context_group(self, case: Case) -> tuple:
        return (*self._load_key(case), case["batch_size"], case["output_len"])

    def _why_skip(self, case: Case) -> tuple[str, str] | None:
        assert self.model is not None
        max_pos = self.model.shape.max_position
        total = case["input_len"] + case["output_len"]
        if max_pos and total > max_pos:
            return "skipped", f"input+output {total} exceeds the model's {max_pos} positions"
        oom_len = self.oom_at.get(self._context_group(case))
        if oom_len is not None and case["input_len"] >= oom_len:
            return "skipped", f"a shorter input ({oom_len}) already ran out of memory"
        budget = case["max_mem_gb"]
        if budget > 0:
            resident = dev.resident_bytes(self.device)
            need = resident + self.predicted_extra_bytes(case)
            if need > budget * GB:
                return "oom", (f"predicted {need / GB:.2f} GB ({resident / GB:.2f} GB resident with the model "
                               f"+ KV cache + activations) exceeds max_mem_gb={budget:g}; not run")
        return None

    def predicted_extra_bytes(self, case: Case) -> float:
        """What a case adds to the loaded model: KV cache and the largest activations."""
        assert self.model is not None
        shape = self.model.shape
        bytes_per = torch.finfo(self.dtype).bits // 8
        batch, total = case["batch_size"], case["input_len"] + case["output_len"]
        kv = batch * total * shape.kv_bytes_per_token(bytes_per)
        scores = batch * shape.heads * case["input_len"] * total * 4  # fp32 scores if attention is not fused
        # A handful of hidden-size buffers per prompt token, and fp32 logits of the last position.
        hidden = 8 * batch * case["input_len"] * shape.hidden * bytes_per + 2 * batch * shape.vocab * 4
        return float(kv + scores + hidden)

    def _measure(self, case: Case, row: dict[str, Any]) -> CaseResult:
        assert self.engine is not None and self.model is not None
        p = case.params
        if p["output_len"] < 2:
            raise BadInput("output_len must be >= 2 for decode metrics")
        config = self.model.config
        prompts = random_prompts(p["batch_size"], p["input_len"], self.model.shape.vocab, p["seed"],
                                 special_token_ids(config))
        self.sampler.pause(not p["telemetry"])
        self.sampler.case = str(case.index)
        for i in range(p["warmup"]):
            self.progress(case, f"warm-up {i + 1}/{p['warmup']}")
            self.engine.generate(prompts, p["output_len"])
        dev.reset_peak_memory(self.device)
        dev.reset_host_peak_rss()
        reps: list[Repetition] = []
        self.sampler.sample_now()
        t_start = time.perf_counter()
        while not enough_repetitions(len(reps), time.perf_counter() - t_start, p["min_reps"], p["min_seconds"],
                                     p["max_reps"], p["max_seconds"]):
            reps.append(self.engine.generate(prompts, p["output_len"]))
            self.progress(case, f"rep {len(reps)}")
        measured_s = time.perf_counter() - t_start
        self.sampler.sample_now()
        self.sampler.pause(False)

        row.update(calculate_metrics(reps))
        row["repetitions"] = len(reps)
        row["measured_seconds"] = measured_s
        host_peak = dev.host_peak_rss_bytes()
        device_peak = dev.peak_memory_bytes(self.device)
        row["host_peak_rss_gb"] = host_peak / GB
        row["peak_mem_gb"] = (device_peak if device_peak is not None else host_peak) / GB
        samples = self._samples(case, reps)
        row.update(self._energy(reps, samples, p["telemetry"]))
        row.update(self._roofline(case, row))
        row["status"], row["detail"] = self._verdict(case, row)
        return self._finish(row, samples)

    def _samples(self, case: Case, reps: list[Repetition]) -> list[dict[str, Any]]:
        out = []
        for i, rep in enumerate(reps):
            m = repetition_metrics(rep)
            out.append({
                "run_id": self.run_id, "case": case.index, "repetition": i,
                "batch_size": case["batch_size"], "input_len": case["input_len"], "output_len": case["output_len"],
                **{k: m[k] for k in ("ttft_ms", "e2e_ms", "tpot_ms", "prefill_tok_s", "decode_tok_s",
                                     "output_tok_s", "itl_ms_p50", "itl_ms_max")},
                "_prefill": (rep.start, rep.first_token), "_decode": (rep.first_token, rep.end),
                "_decode_tokens": m["decode_tokens"],
            })
        return out

    def _energy(self, reps: list[Repetition], samples: list[dict[str, Any]], telemetry_on: bool) -> dict[str, Any]:
        """Energy per window (prefill, decode) from the sampler; NaN with a reason when not measurable."""
        empty = {"energy_j": NAN, "energy_prefill_j": NAN, "energy_decode_j": NAN, "energy_j_per_token": NAN,
                 "power_w_mean": NAN, "power_w_max": NAN, "tok_s_per_w": NAN, "temp_c_max": NAN,
                 "energy_j_per_token_idle_sub": NAN, "throttled": ""}
        if not telemetry_on:
            return {**empty, "energy_source": "none: telemetry off for this case"}
        source = self.sampler.backend.energy_reason()
        if source.startswith("none"):
            return {**empty, **self._temps_and_throttle(reps), "energy_source": source}
        series = self.sampler.series(reps[0].start, reps[-1].end)
        if not series:
            return empty
        pre = [(r.start, r.first_token) for r in reps]
        dec = [(r.first_token, r.end) for r in reps]
        by_pre = summarise_windows(series, pre)
        by_dec = summarise_windows(series, dec)
        by_all = summarise_windows(series, pre + dec)
        for s, rep_pre, rep_dec in zip(samples, pre, dec):
            s["energy_prefill_j"] = _sum(summarise_windows(series, [rep_pre]), "energy_j")
            s["energy_decode_j"] = _sum(summarise_windows(series, [rep_dec]), "energy_j")
        decode_tokens = sum(s["_decode_tokens"] for s in samples)
        decode_s = sum(b - a for a, b in dec)
        e_dec, e_pre, e_all = _sum(by_dec, "energy_j"), _sum(by_pre, "energy_j"), _sum(by_all, "energy_j")
        methods = {s["method"] for s in by_all.values()}
        if "power" in methods and source == "nvml-counter":
            source = "nvml-power"
        if methods == {"none"}:
            source = f"none: telemetry samples did not bracket the windows ({source})"
        idle = sum(self.idle_power.values()) if self.idle_power else NAN
        dec_power = e_dec / decode_s if decode_s > 0 else NAN
        reasons = sorted({x for s in by_all.values() for x in s["throttle"]})
        return {
            "energy_j": e_all,
            "energy_prefill_j": e_pre,
            "energy_decode_j": e_dec,
            "energy_j_per_token": e_dec / decode_tokens if decode_tokens else NAN,
            "energy_j_per_token_idle_sub": (e_dec - idle * decode_s) / decode_tokens if decode_tokens else NAN,
            "power_w_mean": _mean([s["power_w_mean"] for s in by_all.values()]),
            "power_w_max": max((s["power_w_max"] for s in by_all.values() if not math.isnan(s["power_w_max"])),
                               default=NAN),
            "tok_s_per_w": (decode_tokens / decode_s) / dec_power if dec_power and dec_power > 0 else NAN,
            "temp_c_max": max((s["temp_c_max"] for s in by_all.values() if not math.isnan(s["temp_c_max"])),
                              default=NAN),
            "throttled": ";".join(reasons),
            "energy_source": source,
        }

    def _temps_and_throttle(self, reps: list[Repetition]) -> dict[str, Any]:
        summary = summarise_windows(self.sampler.series(reps[0].start, reps[-1].end),
                                    [(r.start, r.end) for r in reps])
        temps = [s["temp_c_max"] for s in summary.values() if not math.isnan(s["temp_c_max"])]
        return {"temp_c_max": max(temps, default=NAN),
                "throttled": ";".join(sorted({x for s in summary.values() for x in s["throttle"]}))}

    def _roofline(self, case: Case, row: dict[str, Any]) -> dict[str, Any]:
        assert self.model is not None
        shape = self.model.shape
        bytes_per = torch.finfo(self.dtype).bits // 8
        batch = case["batch_size"]
        context = case["input_len"] + case["output_len"] / 2  # mean KV length over the decode
        per_step = decode_bytes_per_step(shape, bytes_per, batch, context)
        bw, flops = self.ceiling.bandwidth, self.ceiling.flops
        ttft_s = row["ttft_ms_p50"] / 1000
        return {
            "roofline_decode_tok_s": decode_bound_tok_s(per_step, batch, bw) if not math.isnan(bw) else NAN,
            "mbu": mbu(row["decode_tok_s"], per_step, batch, bw) if not math.isnan(bw) else NAN,
            "mfu": mfu(prefill_flops(shape, batch, case["input_len"]), ttft_s, flops) if not math.isnan(flops) else NAN,
        }

    def _verdict(self, case: Case, row: dict[str, Any]) -> tuple[str, str]:
        notes = [self.dtype_reason] if self.dtype_reason.startswith("auto") else []
        if self.ceiling.source:
            notes.append(f"roofline: {self.ceiling.source}")
        else:
            notes.append("roofline: no ceiling known for this device (run --workload membw / matmul)")
        bound = row["roofline_decode_tok_s"]
        if not math.isnan(bound) and row["decode_tok_s"] > bound:
            return "error", (f"decode {row['decode_tok_s']:.1f} tok/s is above the memory-bandwidth bound "
                             f"{bound:.1f} tok/s: a measurement bug; " + "; ".join(notes))
        if not math.isnan(row.get("mfu", NAN)) and row["mfu"] > 1:
            return "error", f"prefill MFU {row['mfu']:.2f} > 1: a measurement bug; " + "; ".join(notes)
        budget = case["max_mem_gb"]
        if budget > 0 and row["peak_mem_gb"] > budget:
            return "oom", f"measured peak {row['peak_mem_gb']:.2f} GB exceeds max_mem_gb={budget:g}"
        return "ok", "; ".join(notes)


def _sum(summary: dict[str, dict], key: str) -> float:
    vals = [s[key] for s in summary.values()]
    return float(sum(vals)) if vals and not any(math.isnan(v) for v in vals) else NAN


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else NAN


def _tags(params: dict[str, Any]) -> str:
    return "" if params["telemetry"] else "telemetry=off"
