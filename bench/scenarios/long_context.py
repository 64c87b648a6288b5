"""Long context: input lengths doubling to the model's maximum; the first OOM is bisected.

Each row carries the predicted peak memory beside the measured one, and the longest
input that fits by prediction beside the longest that ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bench.core.figures import finite
from bench.core.metrics import Repetition
from bench.hardware.roofline import longest_fitting_input
from bench.scenarios.base import CaseResult, Loaded, Measure
from bench.scenarios.generate import GB, NAN, GenerateScenario
from bench.spec.workload import Case, context_lengths, expand


class LongContextScenario(GenerateScenario):
    kind = "long-context"

    def expand(self, max_position_of: Callable[[str], int] | None = None) -> list[Case]:
        """Unless input_len was given: doubling from min_context up to max_context (or the model's
        maximum position), less the longest output."""
        w = self.workload
        if "input_len" in w.explicit:
            return expand(w)

        def lengths(model: str, output_lens: list[int]) -> list[int]:
            max_pos = max_position_of(model) if max_position_of else 0
            ceiling = w.params["max_context"] or max_pos or w.params["min_context"]
            if max_pos:
                ceiling = min(ceiling, max_pos)
            return context_lengths(w.params["min_context"], ceiling - max(output_lens))

        return expand(w, input_lengths=lengths)

    def columns(self, loaded: Loaded, case: Case, row: dict[str, Any], reps: list[Repetition]) -> dict[str, Any]:
        cols = super().columns(loaded, case, row, reps)
        cols["predicted_max_context"] = self.predicted_max_context(loaded, case)
        cols["predicted_peak_mem_gb"] = (loaded.resident_at_start + self.predicted_extra_bytes(loaded, case)) / GB
        return cols

    def predicted_max_context(self, loaded: Loaded, case: Case) -> float:
        """Longest input whose predicted memory (held with the model + KV + activations) fits the limit:
        max_mem_gb when set, else what the process could hold (free memory plus what it holds)."""
        limit = case["max_mem_gb"] * GB if case["max_mem_gb"] > 0 else loaded.usable_bytes()
        longest = (loaded.model.shape.max_position or 1 << 24) - case["output_len"]
        return float(longest_fitting_input(lambda n: self.predicted_extra_bytes(loaded, case, n),
                                           loaded.resident_at_start, limit, longest))

    def after(self, case: Case, row: dict[str, Any]) -> None:
        """measured_max_context: the longest input that ran, once a longer one failed (OOM or over the
        budget); until then the limit is not known and the cell stays empty with a note."""
        super().after(case, row)
        group = self.context_group(case)
        if group in self.oom_at:
            row["measured_max_context"] = self.last_ok.get(group, NAN)
        else:
            row["measured_max_context"] = NAN
            if group in self.last_ok:
                note = f"limit not reached up to {self.last_ok[group]} tokens"
                row["detail"] = "; ".join(d for d in (row.get("detail"), note) if d)

    def follow_ups(self, case: Case, result: CaseResult, measure: Measure, next_index: int) -> Iterator[CaseResult]:
        """After the first OOM that follows an ok length: probe between the two until the gap is small."""
        if result.row["status"] not in ("oom", "over_budget"):
            return
        group = self.context_group(case)
        index = next_index
        while True:
            ok, bad = self.last_ok.get(group), self.oom_at.get(group)
            if ok is None or bad is None or bad - ok <= max(64, ok // 20):
                return
            mid = (ok + bad) // 2
            probe = Case(index, dict(case.params, input_len=mid, warmup=0, min_reps=1, min_seconds=0.0))
            index += 1
            probe_result = measure(probe)
            row = probe_result.row
            row["tags"] = ";".join(t for t in (row.get("tags"), "bisect") if t)
            if row["status"] not in ("ok", "oom", "over_budget"):
                yield probe_result
                return
            yield probe_result

    def answers(self, rows: list[dict[str, Any]]) -> list[str]:
        """Per model, the longest context that ran (bisected to the first failure) and the predicted one."""
        lines = []
        for model in dict.fromkeys(str(r.get("model")) for r in rows if r.get("model") not in (None, "", "none")):
            mine = [r for r in rows if str(r.get("model")) == model]
            measured = [v for r in mine if (v := finite(r.get("measured_max_context"))) is not None]
            predicted = [v for r in mine if (v := finite(r.get("predicted_max_context"))) is not None]
            if measured or predicted:
                longest = max((int(r["input_len"]) for r in mine if r.get("status") == "ok"), default=None)
                said = f"longest context that ran: {int(max(measured))} tokens (bisected to the first failure)" \
                    if measured else f"limit not reached up to {longest} tokens" if longest else "no length ran"
                lines.append(f"{model}: {said}; predicted max context {int(max(predicted)) if predicted else '-'}")
        return lines + super().answers(rows)
