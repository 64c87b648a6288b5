"""Typed warnings: each kind from a row and repetitions made to show it, and where a person sees them."""

from __future__ import annotations

import os
import types

import pytest

from bench.core.noise import (
    ADVICE,
    GATE_REPS,
    NoiseWarning,
    kinds_text,
    modified_z_scores,
    summary,
    warnings_for,
)
from bench.store.runs import legacy_warning_kinds

QUIET = {"decode_tok_s_cv": 0.01, "repetitions": 10, "throttled": ""}


def reps(*e2e_ms: float) -> list[dict]:
    return [{"e2e_ms": v} for v in e2e_ms]


def kinds(found: list[NoiseWarning]) -> list[str]:
    return [w.kind for w in found]


def test_a_quiet_case_has_no_warning():
    assert warnings_for(QUIET, reps(100, 101, 99, 100, 102), other_cores=0.1) == []


@pytest.mark.parametrize(("row", "samples", "extra", "kind", "text"), [
    ({"decode_tok_s_cv": 0.478}, reps(100, 101, 99), {}, "high-cv", "varies 47.8%"),
    ({}, reps(100, 101, 99, 100, 404, 101), {}, "outlier", "#5 took 404 ms"),
    ({}, reps(250, 100, 101, 99), {}, "slow-first", "2.5x the median"),
    ({"repetitions": 3}, reps(100, 101, 99), {}, "few-reps", "3 repetitions"),
    ({"throttled": "sw_power_cap"}, reps(100, 101, 99), {}, "throttled", "sw_power_cap"),
    ({"throttled": "unknown: not readable"}, reps(100, 101, 99), {}, None, ""),
    ({}, reps(100, 101, 99), {"other_cores": 1.9}, "shared-device", "1.9 CPU cores"),
    ({}, reps(100, 101, 99), {"other_processes": ["pid 7 on gpu0, 3.0 GB"]}, "shared-device", "pid 7"),
    ({}, reps(100, 101, 99), {"energy_note": "energy: only 2 telemetry reading(s)"}, "sparse-telemetry", "only 2"),
])
def test_each_kind(row, samples, extra, kind, text):
    found = warnings_for({**QUIET, **row}, samples, **extra)
    if kind is None:
        assert found == []
        return
    assert kinds(found) == [kind] and text in found[0].message
    assert str(found[0]).startswith(f"warning {kind}: ") and kind in ADVICE


def test_modified_z_and_the_end_of_run_summary():
    assert modified_z_scores([1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]
    z = modified_z_scores([100, 101, 99, 100, 404])
    assert z[4] > 3.5 and abs(z[0]) < 1
    rows = [{"case": 0, "warnings": "high-cv;few-reps"}, {"case": 1, "warnings": "few-reps"},
            {"case": 2, "warnings": ""}]
    assert legacy_warning_kinds("ok; warning high-cv: x; warning few-reps: y") == "high-cv;few-reps"  # older runs
    assert kinds_text([NoiseWarning("high-cv", "x"), NoiseWarning("few-reps", "y"), NoiseWarning("high-cv", "z")]) \
        == "high-cv;few-reps"
    lines = summary(rows)
    assert lines[0].startswith("high-cv in case(s) 0: more repetitions")
    assert lines[1].startswith("few-reps in case(s) 0, 1:") and str(GATE_REPS) in lines[1]


def test_another_process_on_the_card_is_named_through_nvml():
    from bench.telemetry.nvml import NvmlBackend
    from tests import fake_nvml

    fake_nvml.OTHER_PROCESSES[0] = [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=1),
                                    types.SimpleNamespace(pid=999999, usedGpuMemory=3_000_000_000)]
    try:
        assert NvmlBackend(fake_nvml).other_processes() == ["pid 999999 on gpu0, 3.0 GB"]
    finally:
        fake_nvml.OTHER_PROCESSES[0] = []


def test_a_warning_marks_its_row_and_a_note_does_not():
    """A doubt about a figure (high-cv) marks the status cell; few-reps, on every default CPU run, is a note."""
    from rich.console import Console

    from bench.report.terminal import print_details, results_table

    rows = [{"case": 0, "status": "ok", "decode_tok_s": 10.0, "detail": "warning few-reps: 3 repetitions",
             "warnings": "few-reps"},
            {"case": 1, "status": "ok", "decode_tok_s": 9.0, "detail": "warning high-cv: 12%; warning few-reps: 3",
             "warnings": "high-cv;few-reps"}]
    console = Console(width=80, record=True, color_system=None)
    console.print(results_table(rows, "t"))
    print_details(console, rows)
    text = console.export_text()
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()[:1].isdigit()}
    assert lines["0"].split()[:2] == ["0", "ok"] and lines["0"].split()[2] != "!"
    assert lines["1"].split()[:3] == ["1", "ok", "!"]
    warned, noted = text.split("notes")
    assert "high-cv in case(s) 1" in warned and "few-reps" not in warned
    assert "few-reps in case(s) 0, 1" in noted


def test_warnings_reach_the_row_the_table_and_the_end_of_the_run(tmp_path):
    """Three repetitions on the simulated engine: few-reps, in detail, listed at the end as a note."""
    import pandas as pd

    from tests.helpers import run_bench, single_run_dir

    proc = run_bench("run", "--engine", "simulated", "--set", "batch_size=1", "--set", "min_reps=3",
                     "--set", "min_seconds=0", "--set", "idle_seconds=0", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(single_run_dir(tmp_path) / "results.csv").iloc[0]
    assert "warning few-reps: 3 repetitions" in row["detail"]
    assert "ok !" not in proc.stdout  # a note, not a doubt about the figures
    assert "few-reps in case(s) 0: --set min_reps=5" in " ".join(proc.stderr.split())

