"""transformers' tensor-parallel plan (placement=tp): one rank process per card, here two ranks on the CPU
joined by gloo, the same code path as NCCL ranks on cards (a GPU machine with two cards is the check this
machine cannot make)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pandas as pd
import psutil
import pytest
import torch

from bench.engines import get_engine, load_options
from bench.engines.tensor_parallel import RankFailed
from bench.hardware.devices import resolve_device
from bench.spec.models import resolve_model
from bench.spec.workload import PARAMS
from tests.helpers import FAST, run_bench, single_run_dir


def _options(**engine: str) -> object:
    params = {k: p.default for k, p in PARAMS.items()}
    params.update(engine="transformers", dtype="float32", decode="loop", **engine)
    return load_options(params, torch.float32)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    """The tiny config's random weights saved as a checkpoint, so both placements load the same weights."""
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("tiny-weights")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(resolve_model("tiny").config, dtype=torch.float32).save_pretrained(path)
    return resolve_model(str(path))


def test_two_ranks_decode_the_same_tokens_as_one_process_and_a_dead_rank_ends_the_group(saved_tiny):
    """The shards compute the whole model: greedy tokens over two ranks are the one-process tokens. Then a
    rank killed between calls: the next call fails in bounded time, naming the rank, and no rank is left."""
    cpu = resolve_device("cpu")
    ids = torch.randint(3, 10000, (2, 12), generator=torch.Generator().manual_seed(1))
    single = get_engine("transformers")
    single.load(saved_tiny, cpu, _options())
    single.generate(ids, 8)
    expected = single.loop.last_tokens.clone()
    single.close()

    tp = get_engine("transformers")
    tp.load(saved_tiny, cpu, _options(cards="2", placement="tp"))
    try:
        rep = tp.generate(ids, 8)
        assert torch.equal(tp.last_tokens, expected)
        assert [len(r.token_times) for r in rep.requests] == [8, 8]
        info = tp.placement_info()
        assert info["placement"] == "tp" and info["cards"] == ["cpu:0", "cpu:1"] and info["concurrent_cards"] == 1
        assert set(tp.peak_memory_per_card()) == {"cpu:0", "cpu:1"} and tp.peak_memory_bytes() > 0
        # Each rank holds a shard: the two together are more than nothing and less than two whole models.
        whole = sum(p.numel() for p in torch.nn.Module.parameters(_whole(saved_tiny))) * 4
        assert 0.5 * whole < tp.weight_bytes() < 2 * whole
        check = tp.check_output(ids, 8)  # the output check: collective like a call, rank 0's figures back
        assert check.ran and not check.warnings() and check.kld_mean < 1e-5 and "same shards" in check.ref
        procs = list(tp.group.procs)
        os.kill(procs[1].pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(RankFailed, match="rank 1 \\(cpu:1\\) died while decoding \\(exit code -9: SIGKILL"):
            tp.generate(ids, 8)
        assert time.monotonic() - started < 120  # a bound on a hang, not a speed: the group stops within ~15 s
        assert not any(p.is_alive() for p in procs)
    finally:
        tp.close()


def _whole(spec):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(spec.config)


def test_a_tensor_parallel_case_runs_from_the_cli_and_leaves_no_rank_behind(tmp_path):
    """The real CLI: the row names placement tp, its two ranks and each rank's peak memory; every rank process
    (found by a mark in its environment, which spawned children inherit) is gone when the run ends."""
    mark = uuid.uuid4().hex
    proc = run_bench("run", "--set", "placement=tp", "--set", "cards=2", "--set", "batch_size=2", "--set",
                     "output_len=8", *FAST, "--out", str(tmp_path), env={"CLAIMBENCH_TEST_MARK": mark})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = pd.read_csv(single_run_dir(tmp_path) / "results.csv").to_dict("records")
    assert row["status"] in ("ok", "noisy"), row["detail"]
    assert row["placement"] == "tp" and row["cards"] == "cpu:0 cpu:1" and row["device_count"] == 2
    assert row["decode_tok_s"] > 0 and row["decode_path"] == "loop"
    per_card = dict(part.split("=") for part in row["peak_mem_gb_per_card"].split())
    assert set(per_card) == {"cpu:0", "cpu:1"} and all(float(v) > 0 for v in per_card.values())
    assert "tensor parallel over 2 ranks" in row["detail"]
    assert row["check_kld_mean"] < 1e-3 and "same shards on the same ranks" in row["check_ref"]
    assert not _marked(mark)


def _marked(mark: str) -> list[int]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("CLAIMBENCH_TEST_MARK") == mark:
                found.append(p.pid)
        except (psutil.Error, OSError):
            pass
    return found


def test_a_model_without_a_tensor_parallel_plan_is_said_before_any_work(tmp_path):
    model = tmp_path / "gpt2-mini"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, '
                                       '"n_head": 4, "n_embd": 64, "hidden_size": 64, "num_hidden_layers": 2, '
                                       '"num_attention_heads": 4, "vocab_size": 1000, "n_positions": 256}')
    proc = run_bench("run", "--model", str(model), "--set", "placement=tp", "--set", "cards=2",
                     "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "no tensor-parallel plan" in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1
