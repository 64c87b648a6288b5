"""pytest plugin (entry point pytest11): claimbench cases as pytest-benchmark benchmarks.

    def test_tiny_decode(claimbench_case):
        result = claimbench_case(workload="quick", model="tiny", batch_size=1, output_len=16)
        assert result["decode_tok_s"] > 0

pytest-benchmark times whole generate calls (`pedantic` rounds, after warm-up rounds),
and claimbench's metrics of those same calls (decode tok/s, TTFT, TPOT) and the
machine's fingerprint go into `extra_info`, so `--benchmark-autosave`,
`--benchmark-compare` and `--benchmark-compare-fail=mean:10%` work on real inference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def _first_case(workload: str, overrides: dict[str, Any]) -> tuple[Any, Any, Any]:
    from bench.core.errors import BadInput
    from bench.run.planning import one_case

    try:
        return one_case(workload, overrides)
    except BadInput as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture
def claimbench_case(benchmark: Any) -> Callable[..., dict[str, Any]]:
    """Run one claimbench case under pytest-benchmark; returns its metrics (also in extra_info)."""
    from bench.core.metrics import calculate_metrics
    from bench.engines import get_engine, load_options
    from bench.hardware import devices as dev
    from bench.run.fingerprint import fingerprint
    from bench.scenarios import Loaded
    from bench.spec.models import resolve_model
    from bench.spec.prompts import random_prompts
    from bench.telemetry.base import NoTelemetry

    engines: list[Any] = []

    def run(workload: str = "quick", rounds: int = 5, warmup_rounds: int = 1, **sets: Any) -> dict[str, Any]:
        scenario, case, device = _first_case(workload, sets)
        model = resolve_model(case["model"])
        dtype, _ = dev.pick_dtype(case["dtype"], device)
        engine = get_engine(case["engine"])
        engines.append(engine)
        engine.load(model, device, load_options(case.params, dtype, scenario.prefix_caching))
        loaded = Loaded(model, dtype, engine, device, dev.resident_bytes(device))
        prompts = scenario.prompts(loaded, case, random_prompts(case["batch_size"], case["input_len"],
                                                                model.shape.vocab, case["seed"],
                                                                model.special_token_ids))
        reps = []

        def one_call() -> None:
            reps.append(engine.generate(prompts, case["output_len"], reuse_prefix=scenario.reused_prefix(case)))

        benchmark.pedantic(one_call, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
        metrics = calculate_metrics(reps[warmup_rounds:])
        fp = fingerprint(device, NoTelemetry())
        benchmark.extra_info.update({
            "claimbench_case": case.label(), "workload": workload,
            **{k: metrics[k] for k in ("decode_tok_s", "ttft_ms_p50", "tpot_ms_p50", "output_tok_s")},
            "device_name": device.name, "torch": fp["versions"]["torch"],
            "transformers": fp["versions"]["transformers"], "git_commit": fp["git"]["commit"],
        })
        return metrics

    yield run
    for engine in engines:
        engine.close()
