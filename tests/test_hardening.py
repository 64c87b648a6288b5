"""Bad input as classes: numbers that are not numbers, keys that disagree, secrets, impossible memory, prices.

Each class is table-driven over many inputs; every one must be exit 2 with one line and no traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from tests.helpers import run_bench, single_run_dir

NOT_NUMBERS = [f"{key}={value}" for key in ("min_seconds", "max_seconds", "timeout_s", "request_rate",
                                            "max_mem_gb", "fit_budget_gb", "telemetry_hz", "idle_seconds",
                                            "slo_tpot_ms")
               for value in ("nan", "inf", "-inf", "-1")]
OUT_OF_RANGE = ["seed=100000000000000000000000", "seed=-100000000000000000000000", "batch_size=0",
                "input_len=-5", "output_len=0", "min_reps=0", "max_context=-1", "matmul_n=3", "size_mb=0"]
DISAGREE = [("min_reps=5", "max_reps=2"), ("min_seconds=10", "max_seconds=1"), ("min_reps=9", "max_reps=4")]


def bench_exit(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("item", NOT_NUMBERS + OUT_OF_RANGE)
def test_values_that_are_not_valid_numbers_are_exit_2(capsys, item):
    code, err = bench_exit(capsys, "run", "--dry-run", "--set", item)
    assert code == 2 and err.count("\n") == 1 and item.split("=")[0] in err, err


@pytest.mark.parametrize("pair", DISAGREE)
def test_keys_that_disagree_are_exit_2(capsys, pair):
    code, err = bench_exit(capsys, "run", "--dry-run", "--set", pair[0], "--set", pair[1])
    assert code == 2 and "larger than" in err, err


@pytest.mark.parametrize("item", ["api_key_env=sk-live-1234567890abcdef", "api_key_env=has space",
                                  "api_key_env=1STARTS_WITH_DIGIT", "api_key_env=CLAIMBENCH_NOT_SET_ANYWHERE",
                                  "base_url=http//x", "base_url=ftp://127.0.0.1/v1", "base_url=127.0.0.1:8000",
                                  "base_url=http://"])
def test_openai_settings_that_cannot_work_are_exit_2_before_any_work(capsys, item, tmp_path):
    code, err = bench_exit(capsys, "run", "--engine", "openai", "--set", "base_url=http://127.0.0.1:9/v1",
                           "--set", item, "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1, err
    assert "sk-live" not in err and not any(tmp_path.iterdir())  # the key is not echoed, nothing written


@pytest.mark.parametrize("price", ["-3", "nan", "inf", "0", "abc"])
def test_prices_that_are_not_prices_are_exit_2(capsys, price):
    code, err = bench_exit(capsys, "verify", f"--price-per-hour={price}")
    assert code == 2 and "price-per-hour" in err


def test_credentials_in_a_url_are_never_written(tmp_path):
    """A server URL with user:password@: every file of the run and the terminal show *** instead."""
    proc = run_bench("run", "--engine", "openai", "--set", "base_url=http://alice:s3cret@127.0.0.1:9/v1",
                     "--quick", "--set", "idle_seconds=0", "--out", str(tmp_path))
    assert proc.returncode == 1  # the server is not there: error rows, not a crash
    run = single_run_dir(tmp_path)
    for f in run.iterdir():
        assert "s3cret" not in f.read_text(), f.name
    assert "s3cret" not in proc.stdout + proc.stderr
    meta = json.loads((run / "run.json").read_text())
    assert meta["server"]["base_url"] == "http://***@127.0.0.1:9/v1"


def test_a_case_that_cannot_fit_is_skipped_before_it_runs(tmp_path):
    """batch 100000 on the tiny model predicts tens of GB: a skipped row with the figure, not an OOM kill."""
    proc = run_bench("run", "--quick", "--set", "batch_size=100000", "--set", "idle_seconds=0", "--out",
                     str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(single_run_dir(tmp_path) / "results.csv").iloc[0]
    assert row["status"] == "skipped" and "predicted" in row["detail"] and "not run" in row["detail"]


def _config(**changes) -> str:
    base = json.loads((Path(__file__).resolve().parent.parent / "workloads/models/tiny/config.json").read_text())
    for key, value in changes.items():
        if value is ...:
            base.pop(key)
        else:
            base[key] = value
    return json.dumps(base)


BROKEN_CONFIGS = {
    "truncated": _config()[:120],
    "not an object": "[]",
    "no hidden_size": _config(hidden_size=...),
    "no layers": _config(num_hidden_layers=...),
    "no vocab": _config(vocab_size=...),
    "text width": _config(hidden_size="256"),
    "zero heads": _config(num_attention_heads=0),
    "negative": _config(hidden_size=-256),
    "bool": _config(num_hidden_layers=True),
    "no model_type": _config(model_type=...),
    "binary": "\udcff",
}


@pytest.mark.parametrize("name", list(BROKEN_CONFIGS))
def test_model_configs_that_do_not_describe_a_model_are_exit_2(capsys, tmp_path, name):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_bytes(BROKEN_CONFIGS[name].encode("utf-8", "surrogateescape"))
    code, err = bench_exit(capsys, "run", "--dry-run", "--model", str(model))
    assert code == 2 and err.count("\n") == 1 and "config.json" in err, err


@pytest.mark.parametrize("body", ["", "\n", "# only a comment\n"])
def test_an_empty_workload_file_is_exit_2(capsys, tmp_path, body):
    path = tmp_path / "w.toml"
    path.write_text(body)
    code, err = bench_exit(capsys, "run", "--dry-run", "--workload", str(path))
    assert code == 2 and "empty workload file" in err


@pytest.mark.parametrize("bandwidth", ["abc", "inf", "0", "-5", "nan"])
def test_a_corrupt_ceiling_in_the_results_root_is_ignored(tmp_path, bandwidth):
    """A membw row that is not a finite positive bandwidth never becomes the roofline, and never crashes a run."""
    from bench.hardware.ceilings import latest_ceiling
    from bench.hardware.devices import resolve_device

    bad = tmp_path / "20200101T000000Z-host-membw"
    bad.mkdir()
    device = resolve_device("cpu").name  # this machine's, so the next run reads the row
    (bad / "results.csv").write_text("schema_version,workload,model,status,device_name,bandwidth_gb_s\n"
                                     f'1,membw,none,ok,"{device}",{bandwidth}\n')
    warnings: list[str] = []
    ceiling = latest_ceiling(tmp_path, device, warnings)
    assert "measured" not in ceiling.source
    proc = run_bench("run", "--engine", "simulated", "--quick", "--set", "min_seconds=0", "--set", "idle_seconds=0",
                     "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    if bandwidth != "nan":  # an empty cell is no measurement; anything else unusable is said
        assert len(warnings) == 1 and f"ignored bandwidth_gb_s = {bandwidth}" in warnings[0]
        assert "warning: ignored bandwidth_gb_s" in proc.stderr


def test_a_missing_ceiling_is_probed_once_per_machine(tmp_path):
    """No membw/matmul run and no datasheet entry (a CPU): the first generate run probes the ceilings, records
    them in run.json with their source and fills the roofline columns; the next run reuses the cached figures."""
    env = {"CLAIMBENCH_CACHE_DIR": str(tmp_path / "cache")}
    args = ("run", "--set", "min_reps=1", "--set", "min_seconds=0", "--set", "idle_seconds=0", "--set", "batch_size=1",
            "--set", "canary_seconds=0", "--set", "check=false", "--set", "output_len=8")
    sources = []
    for out in ("a", "b"):
        proc = run_bench(*args, "--out", str(tmp_path / out), env=env)
        assert proc.returncode == 0, proc.stderr
        run = single_run_dir(tmp_path / out)
        meta = json.loads((run / "run.json").read_text())
        assert meta["ceiling"]["bandwidth_bytes_s"] > 0 and meta["ceiling"]["flops"] > 0
        sources.append(meta["ceiling"]["source"])
        row = pd.read_csv(run / "results.csv").iloc[0]
        assert row["mbu"] > 0 and row["mfu"] > 0 and row["roofline_decode_tok_s"] > 0
    assert "probed" in sources[0] and "cached" not in sources[0]
    assert "cached" in sources[1]
    cached = json.loads((tmp_path / "cache" / "ceilings.json").read_text())
    assert len(cached) == 1


@pytest.mark.parametrize("change", ['figure = "fast"', "figure = nan", "figure = -1", "tolerance = inf",
                                    "conditions = 5", 'metric = ""', "id = 3"])
def test_a_claims_file_with_wrong_types_is_bad_input(tmp_path, change):
    from bench.analysis.claims import load_claims
    from bench.core.errors import BadInput

    key = change.split(" = ")[0]
    good = {"id": '"c"', "source": '"s"', "assertion": '"a"', "figure": "1.0", "unit": '"x"', "metric": '"mbu"',
            "comparison": '">="', "workload": '"throughput"', "conditions": "{}", "tolerance": "1.0"}
    good[key] = change.split(" = ")[1]
    path = tmp_path / "claims.toml"
    path.write_text("[[claim]]\n" + "".join(f"{k} = {v}\n" for k, v in good.items()))
    with pytest.raises(BadInput, match="claim"):
        load_claims(path)


@pytest.mark.parametrize(("sets", "said"), [
    (["cards=-1"], "cards='-1': use a count"), (["cards=abc"], "cards='abc': use a count"),
    (["cards=0"], "cards=0: a model needs at least one card"),
    (["threads=4096"], "threads=4096: more than the"),
    (["decode=loop", "compile=true"], "compile=true with decode=loop"),
])
def test_settings_a_cpu_cannot_honour_are_one_line_not_ignored(capsys, sets, said):
    """Accepted and silently ignored before: cards on a CPU, more threads than cores (an ok row at 0.3 tok/s
    that drove the load average to 70), the eager loop under a 'compiled' title."""
    args = [x for item in sets for x in ("--set", item)]
    code, err = bench_exit(capsys, "run", "--dry-run", "--device", "cpu", *args)
    assert code == 2 and err.count("\n") == 1 and said in err, err


def test_the_plan_counts_one_compilation_per_thread_count(capsys):
    """torch.compile's guards hold the thread count: threads=1,2 compiles each shape twice, as the run does."""
    from bench.core.noise import own_cores

    threads = "1,2" if own_cores() >= 2 else "1"
    assert main(["run", "--dry-run", "--set", f"threads={threads}", "--set", "decode=captured"]) == 0
    shapes = 2  # the quick workload's two batch sizes
    assert f"captured decode: {shapes * len(threads.split(','))} compilation(s)" in capsys.readouterr().out


def test_a_run_without_run_json_matches_its_own_cases_and_one_run_is_not_two(tmp_path):
    """Rows name what ran (placement, decode path); a row that left one empty ran the default, whatever the
    lost run.json's workload asked: the copy without run.json is the same cases. compare R R: one run."""
    import shutil

    out = tmp_path / "a"
    assert run_bench("run", "--engine", "simulated", "--set", "min_reps=3", "--set", "min_seconds=0",
                     "--set", "idle_seconds=0", "--out", str(out)).returncode == 0
    run = single_run_dir(out)
    copy = tmp_path / "b" / run.name
    shutil.copytree(run, copy)
    (copy / "run.json").unlink()
    check = run_bench("check", "--baseline", str(run), str(copy))
    assert check.returncode == 0 and "share no case" not in check.stderr, check.stdout + check.stderr
    compare = run_bench("compare", str(run), str(copy))
    assert compare.returncode == 0 and "share no measured case" not in compare.stderr
    same = run_bench("compare", str(run), str(run))
    assert same.returncode == 2 and "are one run" in same.stderr and "at least two" not in same.stderr


def test_compile_on_generate_is_said_and_timed(tmp_path):
    """compile=true with decode=generate: transformers' generate compiles its own forward; the row says so and
    compile_s holds that warm-up (it was empty)."""
    proc = run_bench("run", "--model", "tiny", "--set", "decode=generate", "--set", "compile=true", "--set",
                     "batch_size=1", "--set", "min_reps=2", "--set", "min_seconds=0", "--set", "idle_seconds=0",
                     "--out", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(single_run_dir(tmp_path) / "results.csv").iloc[0]
    assert row["decode_path"] == "generate" and row["compile_s"] > 0
    assert "transformers' generate compiled its own forward" in row["detail"]


def test_a_folder_named_like_a_workload_does_not_hide_it(tmp_path):
    """`bench run --workload claims --out claims` once, then again from the same folder: the bundled workload,
    not 'workload file not found: claims' (the folder the first run wrote)."""
    (tmp_path / "latency").mkdir()
    proc = run_bench("run", "--workload", "latency", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0 and "latency:" in proc.stdout, proc.stderr
