"""Capacity: the largest model that fits the cards given, models tried smallest first.

Each model runs a short decode over every card of `cards` (a layer split on transformers, TP/PP on vLLM).
A model whose weights alone exceed what the cards can hold is not loaded (said with both figures); once a
model runs out of memory for real, the larger ones after it are skipped. Every row names the largest model
that has run so far (`largest_model_fitting`), so the last row answers the question.
"""

from __future__ import annotations

from typing import Any

from bench.scenarios.generate import GenerateScenario
from bench.spec.workload import Case


class CapacityScenario(GenerateScenario):
    kind = "capacity"

    def __init__(self, workload: Any) -> None:
        super().__init__(workload)
        self.largest = ""
        self.out_of_memory = ""  # the first model that ran out of memory for real

    def skip_before_load(self, case: Case) -> tuple[str, str] | None:
        if self.out_of_memory and case["model"] != self.out_of_memory:
            return "skipped", f"a smaller model ({self.out_of_memory}) already ran out of memory on these cards"
        return None

    def on_oom(self, case: Case) -> None:
        super().on_oom(case)
        self.out_of_memory = self.out_of_memory or case["model"]

    def after(self, case: Case, row: dict[str, Any]) -> None:
        super().after(case, row)
        if row["status"] == "ok":
            self.largest = case["model"]
        self.not_loaded(case, row)

    def not_loaded(self, case: Case, row: dict[str, Any]) -> None:
        row["largest_model_fitting"] = self.largest

    def answers(self, rows: list[dict[str, Any]]) -> list[str]:
        """The largest model that fits the cards (the last row names the largest so far)."""
        if not rows or "largest_model_fitting" not in rows[-1]:
            return super().answers(rows)
        largest = rows[-1].get("largest_model_fitting")
        cards = next((c for c in (rows[-1].get("cards"), rows[-1].get("device")) if isinstance(c, str) and c),
                     "this device")
        return super().answers(rows) + [f"largest model that fits {cards}: {largest}" if isinstance(largest, str)
                                        and largest else f"no model fitted {cards}"]
