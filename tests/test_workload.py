"""Workload files: validation, --set, --quick and matrix expansion."""

from pathlib import Path

import pytest

from bench.core.errors import BadInput
from bench.scenarios import scenario_for
from bench.spec.suite import load_suite
from bench.spec.workload import (
    apply_overrides,
    available_workloads,
    context_lengths,
    expand,
    load_workload,
    parse_set,
)


def write(tmp_path, text):
    path = tmp_path / "w.toml"
    path.write_text(text)
    return str(path)


def test_every_bundled_workload_loads_and_expands():
    names = available_workloads()
    assert {"quick", "throughput", "long-context"} <= set(names)
    for name in names:
        if load_suite(name) is not None:
            assert name == "claims"
            continue
        w = load_workload(name)
        cases = scenario_for(w).expand(lambda m: 4096)
        assert cases, name
        assert [c.index for c in cases] == list(range(len(cases)))


def test_matrix_is_cartesian_and_model_major(tmp_path):
    w = load_workload(write(tmp_path, """
[params]
model = ["tiny", "qwen2.5-0.5b"]
batch_size = [1, 8]
input_len = [16, 32, 64]
"""))
    cases = expand(w)
    assert len(cases) == 2 * 2 * 3
    models = [c["model"] for c in cases]
    assert models == ["tiny"] * 6 + ["qwen2.5-0.5b"] * 6  # each model loads once
    assert [(c["batch_size"], c["input_len"]) for c in cases[:3]] == [(1, 16), (1, 32), (1, 64)]


def test_compile_forces_static_cache_and_dedupes(tmp_path):
    w = load_workload(write(tmp_path, '[params]\ncompile = [true, false]\ncache = ["dynamic", "static"]\n'))
    combos = {(c["compile"], c["cache"]) for c in expand(w)}
    assert combos == {(True, "static"), (False, "dynamic"), (False, "static")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[params]\nbatch_size = 'x'\n", "must be an integer"),
        ("[params]\nnope = 1\n", "unknown key 'nope'"),
        ("[params]\nwarmup = [1, 2]\n", "takes one value"),
        ("[params]\ndtype = 'int3'\n", "must be one of"),
        ("[params]\nbatch_size = 0\n", "must be >= 1"),
        ("speed = 3\n", "unknown top-level key"),
        ("kind = 'magic'\n", "kind must be one of"),
        ("[params\nbatch_size = 1\n", "malformed TOML"),
        ("[params]\nbatch_size = []\n", "empty list"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(tmp_path, text, message):
    with pytest.raises(BadInput, match=message):
        load_workload(write(tmp_path, text))


def test_unknown_workload_name():
    with pytest.raises(BadInput, match="unknown workload 'nope'"):
        load_workload("nope")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("batch_size=8", ("batch_size", [8])),  # a matrix value is always a list once loaded
        ("batch_size=1,8,32", ("batch_size", [1, 8, 32])),
        ("batch_size=[1, 2]", ("batch_size", [1, 2])),
        ("compile=true", ("compile", [True])),
        ("min_seconds=2", ("min_seconds", 2.0)),
        ("model=qwen2.5-0.5b", ("model", ["qwen2.5-0.5b"])),
        ("seed=3", ("seed", 3)),  # not a matrix key: a scalar
        ("dtype=float16,bfloat16", ("dtype", ["float16", "bfloat16"])),
    ],
)
def test_parse_set(item, expected):
    assert parse_set(item) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("batch_size", "expected KEY=VALUE"),
        ("batchsize=1", "unknown key"),
        ("batch_size=eight", "must be an integer"),
        ("compile=maybe", "true or false"),
        ("batch_size=", "empty value"),
    ],
)
def test_parse_set_rejects(item, message):
    with pytest.raises(BadInput, match=message):
        parse_set(item)


def test_quick_gpu_and_set_precedence():
    w = load_workload("throughput")
    full = len(expand(w))
    quick = apply_overrides(w, {}, quick=True)
    assert len(expand(quick)) < full
    gpu = apply_overrides(w, {}, on_gpu=True)
    assert 64 in gpu.params["batch_size"]
    user = apply_overrides(w, {"batch_size": [2]}, quick=True, on_gpu=True)
    assert {c["batch_size"] for c in expand(user)} == {2}


def test_long_context_lengths_follow_the_model():
    assert context_lengths(1024, 5000) == [1024, 2048, 4096, 5000]
    assert context_lengths(1024, 4096) == [1024, 2048, 4096]
    w = apply_overrides(load_workload("long-context"), {"min_context": 1024, "max_context": 0, "output_len": [16]})
    cases = scenario_for(w).expand(lambda m: 8192)
    assert [c["input_len"] for c in cases] == [1024, 2048, 4096, 8192 - 16]
    explicit = apply_overrides(w, {"input_len": [100, 200]})
    assert [c["input_len"] for c in scenario_for(explicit).expand(lambda m: 8192)] == [100, 200]


def test_a_row_without_a_parameter_takes_its_default_and_labels_name_what_sets_a_case_apart():
    """What a parameter's one declaration (bench.core.params) does for rows: a row written before it was a
    column is filled with its default (so it still matches its case), and a case label names it when it is
    away from its default. (Checks that the identity lists equal the declarations they are derived from
    held by construction and are gone.)"""
    import pandas as pd

    from bench.core.caseid import case_label
    from bench.core.params import CASE_PARAMS
    from bench.store.runs import Run, with_case_params

    run = Run("r", Path("."), pd.DataFrame([{"workload": "w", "model": "m"}]), pd.DataFrame(), {})
    filled = with_case_params(run, run.results)
    assert all(filled[k].iloc[0] != "" for k in CASE_PARAMS)  # every parameter a row lacks takes its default
    row = {"workload": "w", "model": "m", "dtype": "bfloat16", "batch_size": 1, "input_len": 2, "output_len": 3,
           "quant": "int4", "compile": True, "prefix_len": 8, "reuse": True, "device_count": 2}
    assert case_label(row) == "w m bfloat16 bs=1 in=2 out=3 int4 compiled prefix=8 reused on 2 devices"
    row.update(placement="tp", request_rate=2.5)  # a placement and an arrival rate set cases apart too
    assert case_label(row) == "w m bfloat16 bs=1 in=2 out=3 int4 compiled prefix=8 reused tp rate=2.5/s on 2 devices"
    assert case_label({**row, "placement": "", "request_rate": 0}).endswith("reused on 2 devices")



def test_each_kind_writes_its_own_columns_and_no_other_kinds():
    """A workload kind's entry in bench/core/kinds.py (its scenario, keys and columns) is what its runs carry:
    each bundled workload's scenario is its kind's, declares that kind's own columns, and none of another
    kind's; its own keys are workload keys."""
    from bench.core.kinds import KINDS
    from bench.spec.workload import PARAMS

    seen = set()
    for name in available_workloads():
        if load_suite(name) is not None:
            continue
        w = load_workload(name)
        scenario = scenario_for(w)
        seen.add(w.kind)
        declared = scenario.declared_columns()
        own = {c.name for c in KINDS[w.kind].columns}
        others = {c.name for kind, k in KINDS.items() if kind != w.kind for c in k.columns} - own
        assert scenario.kind == w.kind and own <= declared and not declared & others, name
        assert set(KINDS[w.kind].params) <= set(PARAMS), name
    assert seen == set(KINDS)  # every kind has a bundled workload
