"""The runner, its scenarios and the CLI on the simulated engine: exact numbers, on any machine however busy.

The simulated engine's timing model (bench/engines/simulated.py) runs on a virtual
clock, so every figure below is computed by hand from it.
"""

from __future__ import annotations

import pandas as pd
import pytest

from bench.engines.simulated import step_s, ttft_s
from tests.helpers import run_bench, single_run_dir

SIM = ["--engine", "simulated", "--set", "min_seconds=0", "--set", "idle_seconds=0"]


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-5)  # results.csv keeps six significant digits


def run_rows(tmp_path, *args: str) -> pd.DataFrame:
    proc = run_bench("run", "--out", str(tmp_path), *SIM, *args)
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(single_run_dir(tmp_path) / "results.csv")


def test_metrics_are_the_timing_model(tmp_path):
    df = run_rows(tmp_path, "--set", "batch_size=1,4", "--set", "input_len=100", "--set", "output_len=11",
                  "--set", "min_reps=4")
    assert list(df["repetitions"]) == [4, 4]
    for _, row in df.iterrows():
        b = row["batch_size"]
        assert row["ttft_ms_p50"] == approx(1000 * ttft_s(b, 100))
        assert row["tpot_ms_p99"] == approx(1000 * step_s(b))
        assert row["decode_tok_s"] == approx(b / step_s(b))
        assert row["prefill_tok_s"] == approx(b * 100 / ttft_s(b, 100))
        assert row["output_tok_s"] == approx(b * 11 / (ttft_s(b, 100) + 10 * step_s(b)))
        assert row["decode_tok_s_cv"] == 0
    samples = pd.read_csv(single_run_dir(tmp_path) / "samples.csv")
    assert len(samples) == 8 and samples["e2e_ms"].nunique() == 2


def test_long_context_bisects_to_the_exact_capacity(tmp_path):
    """Capacity 3000 tokens, output 16: 2048 fits, 4080 does not; probes 3064 (oom), 2556, 2810, 2937 (ok),
    then the gap (127) is within 5% of 2937 and the bisection stops."""
    df = run_rows(tmp_path, "--workload", "long-context", "--set", "min_context=256", "--set", "max_context=4096",
                  "--set", "sim_kv_tokens=3000", "--set", "min_reps=1", "--set", "warmup=0")
    assert list(zip(df["input_len"], df["status"])) == [
        (256, "ok"), (512, "ok"), (1024, "ok"), (2048, "ok"), (4080, "oom"),
        (3064, "oom"), (2556, "ok"), (2810, "ok"), (2937, "ok")]
    assert df["measured_max_context"].iloc[-1] == 2937
    assert df["tags"].fillna("").str.contains("bisect").sum() == 4


def test_slo_goodput_and_the_largest_batch_within_it(tmp_path):
    """TPOT is 11, 12, 14 ms at batch 1, 2, 4: a 12.5 ms SLO admits batches 1 and 2."""
    df = run_rows(tmp_path, "--workload", "latency", "--set", "batch_size=1,2,4", "--set", "slo_tpot_ms=12.5",
                  "--set", "min_reps=2")
    assert list(df["goodput_frac"]) == [1.0, 1.0, 0.0]
    assert list(df["max_batch_meeting_slo"]) == [1, 2, 2]


def test_prefix_reuse_speedup_is_the_prefill_saved(tmp_path):
    df = run_rows(tmp_path, "--workload", "prefix-reuse", "--quick", "--set", "batch_size=2")
    reused = df[df["ttft_speedup"].notna()]
    assert len(reused) == 1
    assert reused["ttft_speedup"].iloc[0] == approx(ttft_s(2, 1056) / ttft_s(2, 1056 - 1024))


@pytest.mark.parametrize("workload", ["quick", "latency", "long-generation", "edge", "long-context", "prefix-reuse",
                                      "telemetry-overhead", "power", "membw", "matmul"])
def test_every_column_a_scenario_writes_is_in_the_schema(workload, virtual_clock):
    """results.csv keeps only schema columns: a key a scenario adds without defining it would vanish silently."""
    from bench.core.schema import RESULT_COLUMN_NAMES, result_columns
    from bench.hardware.devices import resolve_device
    from bench.run.runner import Runner
    from bench.scenarios import scenario_for
    from bench.spec.workload import apply_overrides, load_workload
    from bench.store.results import format_cell
    from bench.telemetry.base import NoTelemetry
    from bench.telemetry.sampler import Sampler

    w = apply_overrides(load_workload(workload), {"engine": ["simulated"], "model": ["tiny"], "min_seconds": 0,
                                                  "min_reps": 1, "size_mb": 8, "matmul_n": 64}, quick=True)
    scenario = scenario_for(w)
    declared = set(result_columns(scenario.declared_columns()))
    cases = scenario.expand(lambda m: 4096)[:3]
    for result in Runner(w, resolve_device("cpu"), Sampler(NoTelemetry()), "t").run(cases):
        assert result.row["status"] in ("ok", "oom", "skipped"), result.row["detail"]
        assert set(result.row) <= set(RESULT_COLUMN_NAMES), set(result.row) - set(RESULT_COLUMN_NAMES)
        # Every value lands in results.csv: the scenario declared each column it fills.
        filled = {k for k, v in result.row.items() if format_cell(v) != ""}
        assert filled <= declared, filled - declared


def test_run_json_keys_are_the_schema_ones(tmp_path):
    """A run.json key the schema does not define is refused when written; a wrong type is bad input when read."""
    import json

    from bench.core.errors import BadInput
    from bench.core.schema import RUN_KEYS
    from bench.store.results import RunWriter, read_meta

    writer = RunWriter(tmp_path, "w")
    with pytest.raises(ValueError, match="not_a_key"):
        writer.write_meta(not_a_key=1)
    writer.write_meta(cases=3, complete=False, server=None)
    meta = read_meta(writer.path / "run.json")
    assert set(meta) <= set(RUN_KEYS) and meta["cases"] == 3
    (writer.path / "run.json").write_text(json.dumps({**meta, "cases": "three"}))
    with pytest.raises(BadInput, match="'cases' should be a int"):
        read_meta(writer.path / "run.json")
    writer.close()


@pytest.mark.parametrize(("physical", "status"), [(True, "error"), (False, "ok")])
def test_past_the_roofline_is_a_bug_only_against_the_datasheet(physical, status, virtual_clock):
    """A bandwidth of 1 MB/s puts every decode above the bound: against a datasheet figure that is a
    measurement bug (error); against a figure this machine measured, the ceiling was measured low."""
    from bench.hardware.ceilings import Ceiling
    from bench.hardware.devices import resolve_device
    from bench.run.runner import Runner
    from bench.scenarios import scenario_for
    from bench.spec.workload import apply_overrides, load_workload
    from bench.telemetry.base import NoTelemetry
    from bench.telemetry.sampler import Sampler

    w = apply_overrides(load_workload("quick"), {"engine": ["simulated"], "batch_size": [1], "min_seconds": 0,
                                                 "min_reps": 2}, quick=True)
    ceiling = Ceiling(1e6, float("nan"), "test ceiling", bandwidth_physical=physical)
    (result,) = Runner(w, resolve_device("cpu"), Sampler(NoTelemetry()), "t", ceiling).run(scenario_for(w).expand())
    assert result.row["status"] == status
    said = "; ".join([result.row["detail"], *map(str, result.warnings)])  # as the writer joins them
    assert "above the memory-bandwidth bound" in said
    assert ("ceiling-low" in [w.kind for w in result.warnings]) is not physical
