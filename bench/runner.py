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
from bench.metrics import (
    Repetition,
    calculate_metrics,
    decode_slices,
    enough_repetitions,
    goodput_fraction,
    percentile,
    repetition_metrics,
)
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
        self.resident_after_load = 0.0
        self.resident_at_start = 0.0  # memory held when the current case started
        self._energy_note = ""  # set by _energy for the case being measured
        self.model: ModelSpec | None = None
        self.dtype_reason = ""
        self.oom_at: dict[tuple, int] = {}  # long-context: shortest input that ran out of memory
        self.last_ok: dict[tuple, int] = {}  # long-context: longest input that ran
        self.best_batch: dict[tuple, int] = {}  # latency: largest batch meeting the SLOs
        self.recompute_ttft: dict[tuple, float] = {}  # prefix-reuse: TTFT without reuse

    # --- the loop ----------------------------------------------------------------------

    def run(self, cases: list[Case]) -> Iterator[CaseResult]:
        """Yield one CaseResult per case, in order. Never raises for a case's own failure.

        In a long-context sweep, the first OOM after an ok length starts a
        bisection between the two; its probes are extra rows (tag bisect).
        """
        next_index = len(cases)
        try:
            for case in cases:
                result = self._run_case(case)
                yield result
                if self.workload.kind == "long-context" and result.row["status"] == "oom":
                    for probe in self._bisect(case, next_index):
                        next_index += 1
                        yield probe
        finally:
            self._unload()

    def _bisect(self, oom_case: Case, first_index: int) -> Iterator[CaseResult]:
        """Probe input lengths between the last ok and the first OOM until the gap is small."""
        group = self._context_group(oom_case)
        index = first_index
        while True:
            ok, bad = self.last_ok.get(group), self.oom_at.get(group)
            if ok is None or bad is None or bad - ok <= max(64, ok // 20):
                return
            mid = (ok + bad) // 2
            params = dict(oom_case.params, input_len=mid, warmup=0, min_reps=1, min_seconds=0.0)
            probe = Case(index, params)
            index += 1
            result = self._run_case(probe, probing=True)
            result.row["tags"] = ";".join(t for t in (result.row.get("tags"), "bisect") if t)
            if result.row["status"] != "oom":
                if result.row["status"] != "ok":
                    yield result
                    return
                self.last_ok[group] = mid
            else:
                self.oom_at[group] = mid
            result.row["measured_max_context"] = self.last_ok.get(group, NAN)
            yield result

    def _run_case(self, case: Case, probing: bool = False) -> CaseResult:
        row = self._base_row(case)
        if self.workload.kind in ("membw", "matmul"):
            return self._measure_micro(case, row)
        self._ensure_loaded(case, row)
        if self.load_error is not None:
            row["status"], row["detail"] = self.load_error
            return self._finish(row)
        assert self.model is not None
        row.update(self._model_columns(case))
        skip = self._why_skip(case, probing)
        if skip:
            row["status"], row["detail"] = skip
            if self.workload.kind == "long-context":
                row["measured_max_context"] = self.last_ok.get(self._context_group(case), NAN)
            return self._finish(row)
        try:
            return self._measure(case, row)
        except Exception as exc:  # noqa: BLE001 - a failed case is a row, not a crash
            self._free()
            if is_oom(exc):
                self._record_oom(case)
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
        return (case["model"], case["engine"], case["dtype"], case["compile"], case["cache"], case["seed"],
                case["base_url"], case["served_model"], case["tensor_parallel_size"],
                case["pipeline_parallel_size"], case["distributed_backend"])

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
            engine.configure({**case.params, "_prefix_caching": self.workload.kind == "prefix-reuse"})
            t0 = time.perf_counter()
            engine.load(self.model, self.device,
                        LoadOptions(dtype=dtype, compile=case["compile"], cache=case["cache"], seed=case["seed"]))
            dev.synchronize(self.device)
            self.load_seconds = time.perf_counter() - t0
            self.resident_after_load = dev.resident_bytes(self.device)
            self.engine = engine
            row["load_seconds"] = self.load_seconds
        except (EngineUnavailable, BadInput) as exc:
            self.load_error = ("skipped", str(exc))
        except Exception as exc:  # noqa: BLE001
            self._free()
            status = "oom" if is_oom(exc) else "error"
            self.load_error = (status, f"engine start failed: {first_line(exc)}")

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
            "device_name": self.device.name, "device_count": p["tensor_parallel_size"] * p["pipeline_parallel_size"]
            if p["engine"] == "vllm" else 1, "dtype": p["dtype"],
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
            # A server picks its own dtype; we only know what was asked for.
            "dtype": dev.dtype_name(self.dtype) if case["engine"] != "openai" or case["dtype"] != "auto"
            else "server",
            "params": shape.params,
            "weight_bytes": shape.params * bytes_per,
            "kv_bytes_per_token": shape.kv_bytes_per_token(bytes_per),
        }

    def _context_group(self, case: Case) -> tuple:
        return (*self._load_key(case), case["batch_size"], case["output_len"])

    def _record_oom(self, case: Case) -> None:
        group = self._context_group(case)
        self.oom_at[group] = min(self.oom_at.get(group, case["input_len"]), case["input_len"])

    def _why_skip(self, case: Case, probing: bool = False) -> tuple[str, str] | None:
        assert self.model is not None
        max_pos = self.model.shape.max_position
        total = case["input_len"] + case["output_len"]
        if max_pos and total > max_pos:
            return "skipped", f"input+output {total} exceeds the model's {max_pos} positions"
        oom_len = self.oom_at.get(self._context_group(case))
        if not probing and oom_len is not None and case["input_len"] >= oom_len:
            return "skipped", f"a shorter input ({oom_len}) already ran out of memory"
        self.resident_at_start = dev.resident_bytes(self.device)
        budget = case["max_mem_gb"]
        if budget > 0:
            resident = self.resident_at_start
            need = resident + self.predicted_extra_bytes(case)
            if need > budget * GB:
                self._record_oom(case)
                return "oom", (f"predicted {need / GB:.2f} GB ({resident / GB:.2f} GB resident with the model "
                               f"+ KV cache + activations) exceeds max_mem_gb={budget:g}; not run")
        return None

    def predicted_extra_bytes(self, case: Case, input_len: int | None = None) -> float:
        """What a case adds to the loaded model: KV cache and the largest prefill activations.

        Per prompt token a layer holds a few hidden-size tensors (residual, norm,
        query, attention output) and the feed-forward's gate, up and product; the
        fp32 logits of the last position follow. Attention scores (batch * heads *
        input * total, fp32) count only where the engine materialises them (eager
        attention): fused kernels never hold them.
        """
        assert self.model is not None
        shape = self.model.shape
        bytes_per = torch.finfo(self.dtype).bits // 8
        n_in = case["input_len"] if input_len is None else input_len
        batch, total = case["batch_size"], n_in + case["output_len"]
        kv = batch * total * shape.kv_bytes_per_token(bytes_per)
        eager = self.engine is not None and self.engine.materializes_attention_scores()
        scores = batch * shape.heads * n_in * total * 4 if eager else 0
        activations = batch * n_in * (4 * shape.hidden + 3 * shape.intermediate) * bytes_per
        logits = 2 * batch * shape.vocab * 4
        return float(kv + scores + activations + logits)

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
        reuse = p["prefix_len"] if p["reuse"] else 0
        if self.workload.kind == "prefix-reuse":
            prompts = self._shared_prefix_prompts(prompts, p["prefix_len"], p["seed"])
        for i in range(p["warmup"]):
            self.progress(case, f"warm-up {i + 1}/{p['warmup']}")
            self.engine.generate(prompts, p["output_len"], reuse_prefix=reuse)
        dev.reset_peak_memory(self.device)
        dev.reset_host_peak_rss()
        reps: list[Repetition] = []
        self.sampler.sample_now()
        t_start = time.perf_counter()
        while not enough_repetitions(len(reps), time.perf_counter() - t_start, p["min_reps"], p["min_seconds"],
                                     p["max_reps"], p["max_seconds"]):
            reps.append(self.engine.generate(prompts, p["output_len"], reuse_prefix=reuse))
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
        if not self.engine.in_process:
            row["peak_mem_gb"] = self._telemetry_peak_mem(reps)
        samples = self._samples(case, reps)
        row.update(self._energy(reps, samples, p["telemetry"]))
        why_not = self.sampler.backend.capabilities().get("throttle")
        if why_not and not row["throttled"]:
            row["throttled"] = f"unknown: {why_not}"  # empty would claim "not throttled"
        row.update(self._roofline(case, row))
        row.update(self._workload_columns(case, row, reps))
        row["status"], row["detail"] = self._verdict(case, row)
        notes = [n for n in (*self.engine.notes(), self._energy_note) if n]
        if notes:
            row["detail"] = "; ".join([row["detail"], *notes])
        if row["status"] == "oom":
            self._record_oom(case)
        self._remember(case, row)
        return self._finish(row, samples)

    def _shared_prefix_prompts(self, prompts: torch.Tensor, prefix_len: int, seed: int) -> torch.Tensor:
        """Every prompt starts with the same prefix_len tokens; the rest differs per request."""
        assert self.model is not None
        if not 0 < prefix_len < prompts.shape[1]:
            raise BadInput(f"prefix_len ({prefix_len}) must be between 1 and input_len - 1 ({prompts.shape[1] - 1})")
        prefix = random_prompts(1, prefix_len, self.model.shape.vocab, seed + 1, special_token_ids(self.model.config))
        out = prompts.clone()
        out[:, :prefix_len] = prefix
        return out

    def _workload_columns(self, case: Case, row: dict[str, Any], reps: list[Repetition]) -> dict[str, Any]:
        """Columns that answer one workload's question: SLOs, slices, context limits, prefix reuse, fit."""
        assert self.model is not None
        p = case.params
        shape = self.model.shape
        bytes_per = torch.finfo(self.dtype).bits // 8
        batch, total = p["batch_size"], p["input_len"] + p["output_len"]
        model_mem = shape.params * bytes_per + batch * total * shape.kv_bytes_per_token(bytes_per)
        cols: dict[str, Any] = {
            "goodput_frac": goodput_fraction(reps, p["slo_tpot_ms"], p["slo_ttft_ms"], p["slo_itl_ms"]),
            "energy_per_answer_j": row["energy_j"] / (len(reps) * batch) if reps else NAN,
            "model_mem_gb": model_mem / GB,
        }
        if p["fit_budget_gb"] > 0:
            cols["fits_budget"] = model_mem <= p["fit_budget_gb"] * GB
        if p["slice_tokens"] > 0:
            slices = decode_slices(reps, p["slice_tokens"])
            cols["decode_tok_s_slices"] = ";".join(f"{v:.1f}" for v in slices)
            if len(slices) > 1 and slices[0] > 0:
                cols["decode_slowdown"] = slices[-1] / slices[0]
        if self.workload.kind == "long-context":
            cols["predicted_max_context"] = self._predicted_max_context(case)
            cols["predicted_peak_mem_gb"] = (self.resident_at_start + self.predicted_extra_bytes(case)) / GB
        if self.workload.kind == "prefix-reuse":
            key = (*self._context_group(case), p["input_len"], p["prefix_len"])
            if not p["reuse"]:
                self.recompute_ttft[key] = row["ttft_ms_p50"]
            elif key in self.recompute_ttft:
                cols["ttft_speedup"] = self.recompute_ttft[key] / row["ttft_ms_p50"]
        return cols

    def _predicted_max_context(self, case: Case) -> float:
        """Longest input whose predicted memory (held with the model + KV + activations) fits the limit.

        The limit is max_mem_gb when set, else what the process could hold: free
        device (or host) memory plus what it holds already.
        """
        assert self.model is not None
        limit = case["max_mem_gb"] * GB if case["max_mem_gb"] > 0 else dev.usable_memory_bytes(self.device)
        resident = self.resident_at_start
        lo, hi = 0, self.model.shape.max_position or 1 << 24
        hi -= case["output_len"]
        while lo < hi:  # largest n with resident + extra(n) <= limit
            mid = (lo + hi + 1) // 2
            if resident + self.predicted_extra_bytes(case, mid) <= limit:
                lo = mid
            else:
                hi = mid - 1
        return float(lo)

    def _remember(self, case: Case, row: dict[str, Any]) -> None:
        """Cross-case state: longest ok context, largest batch within the SLOs."""
        group = self._context_group(case)
        if row["status"] == "ok":
            self.last_ok[group] = max(self.last_ok.get(group, 0), case["input_len"])
        if self.workload.kind == "long-context":
            row["measured_max_context"] = self.last_ok.get(group, NAN)
        p = case.params
        if p["slo_tpot_ms"] > 0 or p["slo_ttft_ms"] > 0:
            meets = row["status"] == "ok" and \
                (p["slo_tpot_ms"] <= 0 or row["tpot_ms_p99"] <= p["slo_tpot_ms"]) and \
                (p["slo_ttft_ms"] <= 0 or row["ttft_ms_p99"] <= p["slo_ttft_ms"])
            slo_group = (*self._load_key(case), p["input_len"], p["output_len"])
            if meets:
                self.best_batch[slo_group] = max(self.best_batch.get(slo_group, 0), case["batch_size"])
            row["max_batch_meeting_slo"] = self.best_batch.get(slo_group, NAN)

    def _measure_micro(self, case: Case, row: dict[str, Any]) -> CaseResult:
        """membw or matmul: the device's own ceilings, no model."""
        from bench.microbench import copy_bandwidth, matmul_flops
        from bench.roofline import datasheet_peak

        p = case.params
        row.update({"model": "none", "weights": "", "input_len": NAN, "output_len": NAN, "batch_size": NAN})
        peak = datasheet_peak(self.device.name)
        timing = dict(warmup=max(p["warmup"], 1), min_reps=p["min_reps"], min_seconds=p["min_seconds"],
                      max_reps=p["max_reps"])
        self.sampler.case = str(case.index)
        try:
            if self.workload.kind == "membw":
                self.progress(case, f"copy {p['size_mb']} MiB")
                work, times = copy_bandwidth(self.device, p["size_mb"], **timing)
                row["dtype"] = "float32"
            else:
                dtype, _ = dev.pick_dtype(p["dtype"], self.device)
                row["dtype"] = dev.dtype_name(dtype)
                self.progress(case, f"{p['matmul_n']}^3 {row['dtype']}")
                work, times = matmul_flops(self.device, p["matmul_n"], dtype, **timing)
        except Exception as exc:  # noqa: BLE001
            self._free()
            row["status"], row["detail"] = ("oom" if is_oom(exc) else "error"), first_line(exc)
            return self._finish(row)
        finally:
            self._free()
        best, median = work / min(times), work / percentile(times, 50)
        row["repetitions"], row["measured_seconds"] = len(times), sum(times)
        samples = [{"run_id": self.run_id, "case": case.index, "repetition": i, "e2e_ms": 1000 * t}
                   for i, t in enumerate(times)]
        if self.workload.kind == "membw":
            row["bandwidth_gb_s"] = median / 1e9
            ref = f"; datasheet {peak.bandwidth / 1e9:.0f} GB/s ({peak.name}): {median / peak.bandwidth:.0%}" if peak else ""
            row["detail"] = f"{2 * p['size_mb']} MiB moved per copy (read + write); best {best / 1e9:.1f} GB/s{ref}"
            over = peak is not None and median > peak.bandwidth * 1.05
        else:
            row["tflops"] = median / 1e12
            ref = f"; datasheet {peak.flops16 / 1e12:.0f} TFLOP/s 16-bit dense ({peak.name})" if peak else ""
            row["detail"] = f"{p['matmul_n']}^3 products; best {best / 1e12:.2f} TFLOP/s{ref}"
            over = peak is not None and row["dtype"] != "float32" and median > peak.flops16 * 1.05
        row["status"] = "ok"
        if over:
            row["status"] = "error"
            row["detail"] = "above the datasheet peak: a measurement bug; " + row["detail"]
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
                 "energy_j_per_token_power": NAN,
                 "power_w_mean": NAN, "power_w_max": NAN, "tok_s_per_w": NAN, "temp_c_max": NAN,
                 "energy_j_per_token_idle_sub": NAN, "throttled": ""}
        self._energy_note = ""
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
        e_dec_power = _sum(by_dec, "energy_power_j")
        methods = {s["method"] for s in by_all.values()}
        if "power" in methods and source == "nvml-counter":
            source = "nvml-power"
        if methods == {"none"}:
            source = f"none: telemetry samples did not bracket the windows ({source})"
        idle = sum(self.idle_power.values()) if self.idle_power else NAN
        dec_power = e_dec / decode_s if decode_s > 0 else NAN
        reasons = sorted({x for s in by_all.values() for x in s["throttle"]})
        # Energy between two readings is interpolated; a decode time that spans few readings
        # (sensor period ~0.1-1 s) gives a per-token figure that the sensor did not really resolve.
        inside = min(sum(any(a <= r.t <= b for a, b in dec) for r in rs) for rs in series.values())
        self._energy_note = (f"energy: only {inside} telemetry reading(s) inside the decode windows; "
                             "J/token is interpolated, use the power workload for a resolved figure"
                             if inside < 5 else "")
        return {
            "energy_j": e_all,
            "energy_prefill_j": e_pre,
            "energy_decode_j": e_dec,
            "energy_j_per_token": e_dec / decode_tokens if decode_tokens else NAN,
            "energy_j_per_token_power": e_dec_power / decode_tokens if decode_tokens else NAN,
            "energy_j_per_token_idle_sub": (e_dec - idle * decode_s) / decode_tokens if decode_tokens else NAN,
            "power_w_mean": _mean([s["power_w_mean"] for s in by_all.values()]),
            "power_w_max": max((s["power_w_max"] for s in by_all.values() if not math.isnan(s["power_w_max"])),
                               default=NAN),
            "tok_s_per_w": (decode_tokens / decode_s) / dec_power if dec_power and dec_power > 0 else NAN,
            "temp_c_max": max((s["temp_c_max"] for s in by_all.values() if not math.isnan(s["temp_c_max"])),
                              default=NAN),
            "throttled": ";".join(reasons),
            "energy_source": source,
            "per_card": ";".join(
                f"{d}:mean={_fmt(s['power_w_mean'])}W,max={_fmt(s['power_w_max'])}W,energy={_fmt(s['energy_j'])}J,"
                f"temp={_fmt(s['temp_c_max'])}C" for d, s in sorted(by_all.items())),
        }

    def _telemetry_peak_mem(self, reps: list[Repetition]) -> float:
        """Device memory in use at its highest during the case, from NVML/AMD SMI (the engine is elsewhere)."""
        if self.device.type == "cpu":
            return NAN  # host memory used is machine-wide: not the engine's
        series = self.sampler.series(reps[0].start, reps[-1].end)
        used = [r.mem_used_gb for rs in series.values() for r in rs if r.mem_used_gb is not None]
        return max(used) if used else NAN

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
        cached = case["prefix_len"] if case["reuse"] else 0  # reused prefix tokens are not recomputed
        ttft_s = row["ttft_ms_p50"] / 1000
        return {
            "roofline_decode_tok_s": decode_bound_tok_s(per_step, batch, bw) if not math.isnan(bw) else NAN,
            "mbu": mbu(row["decode_tok_s"], per_step, batch, bw) if not math.isnan(bw) else NAN,
            "mfu": mfu(prefill_flops(shape, batch, case["input_len"] - cached, cached), ttft_s, flops)
            if not math.isnan(flops) else NAN,
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


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.1f}"


def _tags(params: dict[str, Any]) -> str:
    tags = [] if params["telemetry"] else ["telemetry=off"]
    if params["trial"] > 1:
        tags.append(f"trial={params['trial']}")
    return ";".join(tags)
