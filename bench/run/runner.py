"""The measurement loop: load each model once, warm up, repeat until enough, synchronise, yield rows.

What differs between workload kinds lives in bench/scenarios/, energy attribution in
bench/telemetry/attribution.py, bounds and the memory model in bench/hardware/roofline.py.
No file I/O here: the caller writes each yielded result before asking for the next
one, so a crash loses at most the case in progress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from bench import engines
from bench.core import clock
from bench.core.caseid import case_tags
from bench.core.errors import BadInput, first_line, is_oom
from bench.core.metrics import Repetition, calculate_metrics, enough_repetitions, sample_rows
from bench.core.noise import NoiseWarning, OtherLoad, client_bound, cpu_seconds, own_cores, warnings_for
from bench.core.schema import NAN, SCHEMA_VERSION
from bench.engines import Engine, EngineUnavailable, device_count, get_engine, load_key, load_options
from bench.engines.output_check import OutputCheck
from bench.hardware import devices as dev
from bench.hardware.ceilings import Ceiling, row_verdict
from bench.hardware.placement import per_card_gb, weights_cannot_fit
from bench.hardware.roofline import roofline_columns
from bench.scenarios import CaseResult, Loaded, scenario_for
from bench.spec.models import ModelSpec, resolve_model
from bench.spec.prompts import random_prompts
from bench.spec.workload import Case, Workload
from bench.telemetry.attribution import energy_columns, telemetry_peak_mem_gb
from bench.telemetry.power_cap import PowerCap, power_limit
from bench.telemetry.sampler import Sampler

GB = 1e9

ProgressFn = Callable[[Case, str], None]
TokenFn = Callable[[int, float], None]  # (tokens generated so far in this call, when): kept cheap, it runs per token


class Runner:
    """Runs one workload's cases on one device with one telemetry sampler."""

    def __init__(self, workload: Workload, device: dev.Device, sampler: Sampler, run_id: str,
                 ceiling: Ceiling | None = None, idle_power: dict[str, float] | None = None,
                 progress: ProgressFn | None = None, on_token: TokenFn | None = None,
                 power_cap: PowerCap | None = None) -> None:
        self.workload = workload
        self.scenario = scenario_for(workload)
        self.device = device
        self.sampler = sampler
        self.run_id = run_id
        self.ceiling = ceiling or Ceiling()
        self.idle_power = idle_power or {}
        self.progress = progress or (lambda case, msg: None)
        self.on_token = on_token
        self.power_cap = power_cap  # None: the user gave no leave to change a card's power limit
        self.engine: Engine | None = None
        self.model: ModelSpec | None = None
        self.dtype = torch.float32
        self.dtype_reason = ""
        self.loaded_key: tuple | None = None
        self.load_error: tuple[str, str] | None = None  # (status, detail) for every case of a failed load

    def run(self, cases: list[Case]) -> Iterator[CaseResult]:
        """Yield one CaseResult per case, then any the scenario asks for after it (a bisection's probes).
        Never raises for a case's own failure."""
        next_index = len(cases)
        try:
            for case in cases:
                result = self.run_case(case)
                yield result
                for extra in self.scenario.follow_ups(case, result, lambda c: self.run_case(c, probing=True),
                                                      next_index):
                    next_index += 1
                    yield extra
        finally:
            self._unload()

    def run_case(self, case: Case, probing: bool = False) -> CaseResult:
        """One case, start to row; failures (OOM included) become the row's status."""
        row = self._base_row(case)
        if not self.scenario.uses_model:
            return self._measure_device(case, row)
        before = self.scenario.skip_before_load(case)
        if before is None:
            self._ensure_loaded(case, row)
        if before is not None or self.load_error is not None or self.engine is None or self.model is None:
            row["status"], row["detail"] = before or self.load_error or ("error", "no engine loaded")
            if row["status"] == "oom":
                self.scenario.on_oom(case)
            self.scenario.not_loaded(case, row)
            return self._finish(row)
        cards = self.engine.placement_info().get("devices") or [self.device]
        loaded = Loaded(self.model, self.dtype, self.engine, self.device, sum(dev.resident_bytes(c) for c in cards))
        row.update(self._model_columns(loaded, case))
        skip = self.scenario.skip(loaded, case, probing)
        if skip:
            row["status"], row["detail"] = skip
        else:
            try:
                return self._measure(loaded, case, row)
            except Exception as exc:  # noqa: BLE001 - a failed case is a row, not a crash
                self._free()
                row["status"], row["detail"] = ("oom" if is_oom(exc) else "error"), first_line(exc)
                if row["status"] == "oom":
                    self.scenario.on_oom(case)
        self.scenario.after(case, row)
        return self._finish(row)

    def _finish(self, row: dict[str, Any], samples: list[dict] | None = None,
                warnings: list[NoiseWarning] | None = None) -> CaseResult:
        self.sampler.sample_now(settle=True)
        return CaseResult(row, samples or [], self.sampler.drain(), warnings or [])

    # --- loading -----------------------------------------------------------------------

    def _ensure_loaded(self, case: Case, row: dict[str, Any]) -> None:
        key = load_key(case.params)
        if key == self.loaded_key:
            return
        self._unload()
        self.loaded_key, self.load_error = key, None
        self.model = resolve_model(case["model"], trust_remote_code=case["trust_remote_code"])
        self.dtype, self.dtype_reason = dev.pick_dtype(case["dtype"], self.device)
        too_big = weights_cannot_fit(case["model"], self.model.shape.params, case["quant"], self.dtype,
                                     engines.engine_class(case["engine"]).memory_cards(case.params, self.device))
        if too_big:
            self.load_error = ("skipped", too_big)
            return
        self.progress(case, f"loading {case['model']}")
        try:
            engine = get_engine(case["engine"])
            t0 = clock.now()
            engine.load(self.model, self.device, load_options(case.params, self.dtype, self.scenario.prefix_caching))
            dev.synchronize(self.device)
            row["load_seconds"] = clock.now() - t0
            self.engine = engine
        except (EngineUnavailable, BadInput) as exc:
            self.load_error = ("skipped", str(exc))
        except Exception as exc:  # noqa: BLE001
            self._free()
            self.load_error = ("oom" if is_oom(exc) else "error", f"engine start failed: {first_line(exc)}")


    def _unload(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self.loaded_key = None
        self._free()

    def _free(self) -> None:
        dev.empty_cache(self.device)

    # --- rows --------------------------------------------------------------------------

    def _base_row(self, case: Case) -> dict[str, Any]:
        p = case.params
        model_identity = {"quant": p["quant"]} if self.scenario.uses_model else {}
        for load in ("request_rate", "concurrency"):  # a load sweep's cases differ by their load alone (skipped too)
            if p.get(load):
                model_identity[load] = p[load]
        return {**model_identity,
            "schema_version": SCHEMA_VERSION, "run_id": self.run_id, "workload": self.workload.name,
            "case": case.index, "model": p["model"], "engine": p["engine"], "device": str(self.device),
            "device_name": self.device.name, "vendor": self.device.vendor, "device_count": device_count(p), "dtype": p["dtype"],
            "batch_size": p["batch_size"], "input_len": p["input_len"], "output_len": p["output_len"],
            "compile": p["compile"], "cache": p["cache"], "repetitions": 0, "status": "", "detail": "",
            "energy_source": self.sampler.backend.energy_reason(), "tags": case_tags(p),
        }

    def _model_columns(self, loaded: Loaded, case: Case) -> dict[str, Any]:
        shape = loaded.model.shape
        return {
            "weights": loaded.model.weights,
            "dtype": loaded.engine.reported_dtype(case["dtype"], dev.dtype_name(loaded.dtype)),
            "params": shape.params,
            "weight_bytes": int(loaded.weight_bytes),
            "quant": case["quant"],
            "kv_bytes_per_token": shape.kv_bytes_per_token(loaded.bytes_per_element),
        }

    # --- measuring ---------------------------------------------------------------------

    def _measure(self, loaded: Loaded, case: Case, row: dict[str, Any]) -> CaseResult:
        p = case.params
        engine = loaded.engine
        # What changes from case to case on one loaded model (a request rate), and how long a held load lasts.
        engine.configure({**engines.own_options(p), "min_seconds": p["min_seconds"]})
        prompts = self.scenario.prompts(loaded, case, random_prompts(
            p["batch_size"], p["input_len"], loaded.model.shape.vocab, p["seed"], loaded.model.special_token_ids))
        reuse = self.scenario.reused_prefix(case)
        if p.get("power_limit_w", 0) or self.power_cap is not None:  # before the warm-up: the whole case capped
            cards_here = self.sampler.backend.labels_for(dev.card_uuids(self.device, device_count(p), None))
            failed = self.power_cap.for_case(p.get("power_limit_w", 0), cards_here) if self.power_cap else \
                "power_limit_w needs --allow-power-limit"
            if failed:
                raise RuntimeError(failed)
        row["threads"], row["threads_used"] = p["threads"], dev.set_threads(p["threads"])
        self.sampler.pause(not p["telemetry"])
        self.sampler.case = str(case.index)
        engine.compile_stats()  # from here: what this case's warm-up compiles, then what a timed call recompiles
        for i in range(p["warmup"]):
            self.progress(case, f"warm-up {i + 1}/{p['warmup']}")
            engine.generate(prompts, p["output_len"], on_token=self.on_token, reuse_prefix=reuse)
        row["compile_s"], _ = engine.compile_stats()
        row["decode_path"] = engine.decode_path()
        placement = engine.placement_info()
        split = placement.get("devices") or [self.device]  # the cards whose memory this process reads
        row["placement"] = placement.get("placement", "")
        row["cards"] = " ".join(placement.get("cards", []))
        concurrent = placement.get("concurrent_cards", 1)  # cards reading weights at the same time (TP)
        if engine.cache_used():
            row["cache"] = engine.cache_used()  # what ran (the loop's own), not what generate would have used
        reps: list[Repetition] = []
        peaks: list[float] = []  # peak memory of each repetition (GB)
        host_peaks: list[float] = []  # the process's peak RSS in each repetition (the mark is reset per rep)
        card_peaks: dict[str, float] = {}  # per card, for a model over several
        self.sampler.sample_now()
        other_load = OtherLoad()
        cpu_before = cpu_seconds()
        t_start = clock.now()
        while not enough_repetitions(len(reps), clock.now() - t_start, p["min_reps"], p["min_seconds"],
                                     p["max_reps"], p["max_seconds"]):
            for card in split:
                dev.reset_peak_memory(card)
            dev.reset_host_peak_rss()
            self.progress(case, f"rep {len(reps) + 1}" + (f" of {p['min_reps']}+" if len(reps) < p["min_reps"] else ""))
            reps.append(engine.generate(prompts, p["output_len"], on_token=self.on_token, reuse_prefix=reuse))
            if self.scenario.sample_each_repetition:
                self.sampler.sample_now()
            peaks.append(engine.peak_gb(split))
            host_peaks.append(dev.host_peak_rss_bytes() / GB)
            # A model over several cards: each card's highest rep, as the engine's ranks read it or as read here.
            reads = engine.peak_memory_per_card() or \
                {str(c): dev.peak_memory_bytes(c) for c in (split if len(split) > 1 else ())}
            for card_name, read in reads.items():
                if read is not None:  # unread stays out (empty), never 0
                    card_peaks[card_name] = max(card_peaks.get(card_name, 0.0), read / GB)
        row["measured_seconds"] = clock.now() - t_start
        cpu_share = (cpu_seconds() - cpu_before) / max(row["measured_seconds"], 1e-9) / own_cores()
        self.sampler.sample_now(settle=True)
        self.sampler.pause(False)

        row.update(calculate_metrics(reps))
        row["repetitions"] = len(reps)
        row.update(self._memory_columns(engine, reps, peaks))
        if card_peaks:
            row["peak_mem_gb_per_card"] = per_card_gb(card_peaks)
        row["host_peak_rss_gb"] = max(host_peaks)
        samples = sample_rows(self.run_id, case.index, case.params, reps)
        for sample, peak in zip(samples, peaks):
            sample["peak_mem_gb"] = peak
        cards = self.sampler.backend.labels_for(
            dev.card_uuids(self.device, device_count(p), [c.torch_device.index or 0 for c in split]
                           if len(split) > 1 else None))
        energy, energy_note = energy_columns(self.sampler, reps, samples, p["telemetry"], self.idle_power, cards)
        row.update(energy)
        row.update(self.scenario.over_time(case, reps, samples, self.sampler.series(reps[0].start, reps[-1].end)
                                           if p["telemetry"] else {}))
        limit, capped = power_limit(self.sampler.backend.power_limits(), cards)
        if limit == limit:
            row["power_limit_w"] = limit
        why_not = self.sampler.backend.capabilities().get("throttle")
        if why_not and not row["throttled"]:
            row["throttled"] = f"unknown: {why_not}"  # empty would claim "not throttled"
        row.update(roofline_columns(loaded.model.shape, loaded.weight_bytes / loaded.model.shape.params,
                                    p["batch_size"], p["input_len"], p["output_len"],
                                    reuse, row["decode_tok_s"], row["ttft_ms_p50"],
                                    self.ceiling.bandwidth * concurrent, self.ceiling.flops * concurrent,
                                    loaded.bytes_per_element))
        row.update(self.scenario.columns(loaded, case, row, reps))
        row.update(engine.case_columns(reps))
        warnings: list[NoiseWarning] = []
        _, recompiled = engine.compile_stats()
        if recompiled:
            warnings.append(NoiseWarning("recompiled", f"torch.compile compiled {recompiled} frame(s) during the "
                                                       "timed repetitions: their time includes compilation"))
        check = self._output_check(engine, prompts, case, reuse)
        engine.compile_stats()  # what the check compiled (a generate path's logits) is not the timed calls'
        row.update(check.columns())
        warnings += check.warnings()
        if not self.scenario.prefix_caching:  # prefix-reuse chose generate: its pairs are timed on one path
            warnings += engine.engine_bound(self.device, row)
        warnings += client_bound(reps, p, cpu_share)
        row["status"], row["detail"] = row_verdict(row, self.ceiling, case["max_mem_gb"], self.dtype_reason,
                                                  warnings)
        warnings += warnings_for(row, samples, other_load.cores(), self.sampler.backend.other_processes(),
                                 energy_note)
        row["detail"] = "; ".join(n for n in [row["detail"], capped, *self.scenario.notes(), *engine.notes()] if n)
        if row["status"] in ("oom", "over_budget"):
            self.scenario.on_oom(case)
        self.scenario.after(case, row)
        return self._finish(row, samples, warnings)

    def _output_check(self, engine: Engine, prompts: torch.Tensor, case: Case, reuse: int) -> OutputCheck:
        """The timed path's output against its reference, after the repetitions; a check that cannot run (out of
        memory, an engine error) leaves the columns empty and says why, and the row stands."""
        if not case["check"]:
            return OutputCheck.skipped("check=false")
        self.progress(case, "checking the output")
        t0 = clock.now()
        try:
            return engine.check_output(prompts, case["output_len"], reuse)
        except Exception as exc:  # noqa: BLE001 - the measurement stands; the check says why it did not
            self._free()
            why = "it ran out of memory" if is_oom(exc) else f"it failed ({first_line(exc)})"
            return OutputCheck.skipped(why, clock.now() - t0)

    def _memory_columns(self, engine: Engine, reps: list[Repetition], peaks: list[float]) -> dict[str, float]:
        """Peak memory of the case: the highest repetition's, or for an engine in another process the
        card's own reading from telemetry (none on a CPU: host memory is machine-wide)."""
        peak = max((x for x in peaks if x == x), default=NAN)
        if not engine.in_process:
            peak = telemetry_peak_mem_gb(self.sampler, reps) if self.device.type != "cpu" else NAN
        return {"peak_mem_gb": peak}

    def _measure_device(self, case: Case, row: dict[str, Any]) -> CaseResult:
        """A scenario without a model (membw, matmul): the device's own ceilings."""
        self.sampler.case = str(case.index)
        self.progress(case, self.scenario.kind)
        samples: list[dict[str, Any]] = []
        try:
            samples = self.scenario.measure_device(self.device, case, row)
        except Exception as exc:  # noqa: BLE001
            row["status"], row["detail"] = ("oom" if is_oom(exc) else "error"), first_line(exc)
        finally:
            self._free()
        return self._finish(row, samples)
