"""pytest-benchmark suites for claimbench's own hot paths and a tiny-model decode step.

Run: pytest tests/benchmarks --benchmark-enable --benchmark-autosave
Gate: pytest tests/benchmarks --benchmark-enable --benchmark-compare --benchmark-compare-fail=mean:10%
(In the normal test run they execute once, as tests, with timing disabled.)
"""

import torch

from bench.core.metrics import batch_repetition, calculate_metrics
from bench.engines import get_engine
from bench.engines.base import LoadOptions
from bench.hardware.devices import resolve_device
from bench.spec.models import resolve_model
from bench.spec.prompts import random_prompts
from bench.spec.workload import apply_overrides, expand, load_workload
from bench.store.results import RunWriter
from bench.telemetry.base import Reading
from bench.telemetry.sampler import summarise_windows


def _reps(n_reps=50, steps=256, batch=8):
    return [batch_repetition(r * 10.0, [r * 10.0 + 0.05 + 0.01 * i for i in range(steps)], batch, 128)
            for r in range(n_reps)]


def test_calculate_metrics_speed(benchmark):
    reps = _reps()
    result = benchmark(calculate_metrics, reps)
    assert result["tpot_ms_p50"] > 0


def test_energy_attribution_speed(benchmark):
    series = {f"gpu{d}": [Reading(t / 10, f"gpu{d}", power_w=300.0, energy_j=30.0 * t) for t in range(3000)]
              for d in range(8)}
    windows = [(i * 1.0, i * 1.0 + 0.5) for i in range(250)]
    out = benchmark(summarise_windows, series, windows)
    assert out["gpu0"]["method"] == "counter"


def test_workload_expansion_speed(benchmark):
    w = apply_overrides(load_workload("throughput"), {"batch_size": list(range(1, 65)),
                                                      "input_len": [128, 256, 512, 1024]})
    cases = benchmark(expand, w)
    assert len(cases) == 64 * 4 * 2


def test_result_row_append_speed(benchmark, tmp_path):
    writer = RunWriter(tmp_path, "bench")
    row = {"schema_version": 1, "workload": "bench", "decode_tok_s": 123.4, "status": "ok"}
    benchmark(writer.append_case, row, [], [], 0.0)
    writer.close()
    lines = (tmp_path / writer.run_id / "results.csv").read_text().splitlines()
    assert len(lines) >= 2 and lines[-1].count(",") == lines[0].count(",")  # every append is a whole row


def test_tiny_model_decode_step(benchmark):
    """One short generate on the tiny model: tracks the engine's per-token overhead."""
    engine = get_engine("transformers")
    engine.load(resolve_model("tiny"), resolve_device("cpu"), LoadOptions(dtype=torch.float32))
    ids = random_prompts(1, 16, 8192, 0)
    rep = benchmark(engine.generate, ids, 8)
    assert rep.requests[0].output_len == 8
