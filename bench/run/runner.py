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
from bench.core.errors import BadInput, first_line, is_oom
from bench.core.metrics import enough_repetitions
from bench.core.noise import NoiseWarning, OtherLoad, client_bound, cpu_seconds, own_cores, warnings_for
from bench.engines import Engine, EngineUnavailable, device_count, get_engine, load_key, load_options
from bench.engines.output_check import OutputCheck
from bench.hardware import devices as dev
from bench.hardware.ceilings import Ceiling, row_verdict
from bench.hardware.placement import weights_cannot_fit
from bench.run.case_row import GB, Gathered, base_row, measured_columns, model_columns
from bench.scenarios import CaseResult, Loaded, scenario_for
from bench.spec.models import ModelSpec, resolve_model
from bench.spec.prompts import random_prompts
from bench.spec.workload import Case, Workload
from bench.telemetry.power_cap import PowerCap
from bench.telemetry.sampler import Sampler

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
        row = base_row(self.run_id, self.workload.name, self.scenario, self.device, self.sampler, case)
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
        row.update(model_columns(loaded, case))
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

    # --- measuring ---------------------------------------------------------------------

    def _measure(self, loaded: Loaded, case: Case, row: dict[str, Any]) -> CaseResult:
        p = case.params
        engine = loaded.engine
        # What changes from case to case on one loaded model (a request rate), and how long a held load lasts.
        engine.configure({**engines.own_options(p), "min_seconds": p["min_seconds"]})
        prompts = self.scenario.prompts(loaded, case, random_prompts(
            p["batch_size"], p["input_len"], loaded.model.shape.vocab, p["seed"], loaded.model.special_token_ids))
        reuse = self.scenario.reused_prefix(case)
        failed = self._cap(p)  # before the warm-up: the whole case capped
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
        got = Gathered()
        self.sampler.sample_now()
        other_load = OtherLoad()
        cpu_before = cpu_seconds()
        t_start = clock.now()
        while not enough_repetitions(len(got.reps), clock.now() - t_start, p["min_reps"], p["min_seconds"],
                                     p["max_reps"], p["max_seconds"]):
            for card in split:
                dev.reset_peak_memory(card)
            dev.reset_host_peak_rss()
            n = len(got.reps)
            self.progress(case, f"rep {n + 1}" + (f" of {p['min_reps']}+" if n < p["min_reps"] else ""))
            rep = engine.generate(prompts, p["output_len"], on_token=self.on_token, reuse_prefix=reuse)
            if self.scenario.sample_each_repetition:
                self.sampler.sample_now()
            # A model over several cards: each card's highest rep, as the engine's ranks read it or as read here.
            got.add(rep, engine.peak_gb(split), dev.host_peak_rss_bytes() / GB, engine.peak_memory_per_card() or
                    {str(c): dev.peak_memory_bytes(c) for c in (split if len(split) > 1 else ())})
        row["measured_seconds"] = clock.now() - t_start
        cpu_share = (cpu_seconds() - cpu_before) / max(row["measured_seconds"], 1e-9) / own_cores()
        self.sampler.sample_now(settle=True)
        self.sampler.pause(False)
        reps = got.reps
        samples, energy_note, capped = measured_columns(row, got, loaded, case, self.scenario, self.sampler,
                                                        self.idle_power, self.ceiling, self.run_id, split,
                                                        concurrent, reuse)
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
        # The cap first: every figure of the row is a capped card's.
        row["detail"] = "; ".join(n for n in [row["detail"], capped, *self.scenario.notes(), *engine.notes()] if n)
        if row["status"] in ("oom", "over_budget"):
            self.scenario.on_oom(case)
        self.scenario.after(case, row)
        return self._finish(row, samples, warnings)

    def _cap(self, p: dict[str, Any]) -> str:
        """The case's power limit set (or the cards' own put back); '' or why it could not be."""
        if self.power_cap is None:
            return "power_limit_w needs --allow-power-limit" if p.get("power_limit_w", 0) else ""
        cards = self.sampler.backend.labels_for(dev.card_uuids(self.device, device_count(p), None))
        return self.power_cap.for_case(p.get("power_limit_w", 0), cards)

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
