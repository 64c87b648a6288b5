"""Prefix reuse: a long shared prefix and a short new suffix, the prefix's KV cache reused or recomputed.

The reuse=false case of a pair records its TTFT; the reuse=true case divides it by
its own (ttft_speedup). Only this scenario lets engines keep a prefix cache.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.core.caseid import case_text
from bench.core.errors import BadInput
from bench.core.figures import finite
from bench.core.metrics import Repetition
from bench.scenarios.base import Loaded
from bench.scenarios.generate import GenerateScenario
from bench.spec.prompts import random_prompts
from bench.spec.workload import Case


class PrefixReuseScenario(GenerateScenario):
    kind = "prefix-reuse"
    prefix_caching = True

    def __init__(self, workload: Any) -> None:
        super().__init__(workload)
        self.recompute_ttft: dict[tuple, float] = {}  # TTFT without reuse, per pair

    def expand(self, max_position_of: Any = None) -> list[Case]:
        """The pairs, every case on transformers' generate path: its DynamicCache holds the reused prefix, so
        both cases of a pair are timed on the same path (a static-cache loop has no prefix to reuse)."""
        return [Case(c.index, {**c.params, "decode": "generate"}) if c["decode"] == "auto" else c
                for c in super().expand(max_position_of)]

    def check(self, case: Case) -> None:
        super().check(case)
        if case["engine"] == "transformers" and case["decode"] != "generate":
            raise BadInput(f"case {case.index}: prefix-reuse runs on decode=generate (its DynamicCache holds the "
                           f"reused prefix), not decode={case['decode']}")
        if not 0 < case["prefix_len"] < case["input_len"]:
            raise BadInput(f"case {case.index}: prefix_len ({case['prefix_len']}) must be between 1 and "
                           f"input_len - 1 ({case['input_len'] - 1})")

    def prompts(self, loaded: Loaded, case: Case, prompts: torch.Tensor) -> torch.Tensor:
        """Every prompt starts with the same prefix_len tokens; the rest differs per request."""
        prefix_len = case["prefix_len"]
        if not 0 < prefix_len < prompts.shape[1]:
            raise BadInput(f"prefix_len ({prefix_len}) must be between 1 and input_len - 1 ({prompts.shape[1] - 1})")
        model = loaded.model
        prefix = random_prompts(1, prefix_len, model.shape.vocab, case["seed"] + 1, model.special_token_ids)
        out = prompts.clone()
        out[:, :prefix_len] = prefix
        return out

    def reused_prefix(self, case: Case) -> int:
        return case["prefix_len"] if case["reuse"] else 0

    def columns(self, loaded: Loaded, case: Case, row: dict[str, Any], reps: list[Repetition]) -> dict[str, Any]:
        cols = super().columns(loaded, case, row, reps)
        cols["prefix_len"], cols["reuse"] = case["prefix_len"], bool(case["reuse"])
        pair = (*self.context_group(case), case["input_len"], case["prefix_len"])
        if not case["reuse"]:
            self.recompute_ttft[pair] = row["ttft_ms_p50"]
        elif pair in self.recompute_ttft:
            cols["ttft_speedup"] = self.recompute_ttft[pair] / row["ttft_ms_p50"]
        return cols

    def answers(self, rows: list[dict[str, Any]]) -> list[str]:
        """How much faster the first token came with the prefix's KV cache reused."""
        lines = [f"{case_text(r)}: TTFT {speedup:.1f}x faster reusing the prefix's KV cache than recomputing it"
                 for r in rows if r.get("status") == "ok" and (speedup := finite(r.get("ttft_speedup"))) is not None]
        return super().answers(rows) + lines
