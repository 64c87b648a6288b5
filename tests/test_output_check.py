"""The output check (bench/engines/output_check.py): every timed path's next-token distributions against a
teacher-forced reference. The sound paths of this CPU pass; deliberately broken ones (a KV cache written one
position off, a step fed the previous token, logits from the wrong layer) are caught; a caught row makes a
verdict inconclusive and fails `bench check` even when it is faster."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from bench.analysis.claims import load_claims
from bench.analysis.verify import WRONG_OUTPUT, verify_claim
from bench.engines import get_engine, output_check
from bench.engines.base import LoadOptions
from bench.engines.output_check import OutputCheck, divergence, kld_limit
from bench.hardware.devices import resolve_device
from bench.spec.models import resolve_model
from bench.spec.prompts import random_prompts
from tests.helpers import FAST, run_bench, single_run_dir, slowed
from tests.test_claims import make_run

CPU = resolve_device("cpu")


def test_divergence_is_llama_cpps_kl_of_the_timed_path_from_the_reference():
    """KL(reference || timed) in nats per position, computed by hand for two positions; top-1 agreement."""
    reference = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    timed = torch.tensor([[2.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    kld, agree = divergence(timed, reference)
    p = torch.full((3,), 1 / 3)
    q = torch.softmax(timed[1], -1)
    assert kld[0] == pytest.approx(0.0, abs=1e-7)
    assert kld[1] == pytest.approx(float((p * (p.log() - q.log())).sum()), rel=1e-5)
    assert agree.tolist() == [True, True]  # a tie in the reference: argmax is the first of the tied tokens
    check = output_check.summarise(kld, agree, "ref", 0.5, 1e-3)
    assert check.kld_mean == pytest.approx(float(kld.mean())) and check.top1 == 1.0
    assert [w.kind for w in check.warnings()] == ["wrong-output"]  # 0.03 nats beyond 1e-3
    assert OutputCheck.skipped("check=false").columns()["check_ref"] == "not checked: check=false"
    assert math.isnan(OutputCheck.skipped("x").kld_mean) and not OutputCheck.skipped("x").warnings()


def _engine(decode: str, dtype: torch.dtype = torch.float32, **options):
    spec = resolve_model("tiny")
    engine = get_engine("transformers")
    engine.load(spec, CPU, LoadOptions(dtype=dtype, decode=decode, **options))
    return engine, random_prompts(2, 24, spec.shape.vocab, 3, spec.special_token_ids)


@pytest.mark.parametrize("decode,dtype", [("generate", torch.float32), ("loop", torch.float32),
                                          ("loop", torch.bfloat16), ("captured", torch.bfloat16)])
def test_the_sound_paths_agree_with_the_reference(decode, dtype, monkeypatch):
    """Each path after two calls (state a later call could corrupt: a cache not reset, a stale graph buffer);
    captured runs on the CPU stand-in for CUDA graphs, whose outputs the next replay overwrites."""
    from bench.engines import graph_standin

    monkeypatch.setenv(graph_standin.ENV, "1")
    engine, ids = _engine(decode, dtype, cache="static")
    for _ in range(2):
        engine.generate(ids, 12)
    check = engine.check_output(ids, 12)
    engine.close()
    assert check.ran and check.kld_mean < kld_limit(dtype) / 10, check  # a tenth of the limit: noise is far below
    assert check.top1 >= 0.9 and check.seconds > 0 and "without a KV cache, same weights" in check.ref
    assert not check.warnings()


def _off_by_one(loop, step):
    """The KV cache written one position early: each decode step overwrites the previous token's entry."""
    def broken(token, position, cache):
        for layer in cache.layers:
            layer.cumulative_length.sub_(1)
        return step(token, position, cache)
    return broken


def _stale_token(loop, step):
    """Each step fed the token before the one it should continue from."""
    previous = {}

    def broken(token, position, cache):
        fed = previous.get("token", token)
        previous["token"] = token.clone()
        return step(fed, position, cache)
    return broken


def _wrong_layer(loop, step):
    """The head applied to the second-to-last layer's output."""
    model = loop.model

    def broken(token, position, cache):
        out = model(input_ids=token, use_cache=True, output_hidden_states=True, **{loop._cache_kw: cache})
        logits = model.lm_head(model.model.norm(out.hidden_states[-2][:, -1:]))
        return logits.argmax(-1), logits
    return broken


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("breaks", [_off_by_one, _stale_token, _wrong_layer])
def test_a_broken_decode_path_is_caught(breaks, dtype):
    engine, ids = _engine("loop", dtype)
    engine.loop._step = breaks(engine.loop, engine.loop._step)
    engine.generate(ids, 12)
    check = engine.check_output(ids, 12)
    engine.close()
    assert [w.kind for w in check.warnings()] == ["wrong-output"], check
    assert check.kld_mean > 3 * kld_limit(dtype)  # caught with room to spare, not at the edge


def test_int8_says_what_quantization_costs_against_the_unquantized_model():
    pytest.importorskip("torchao")
    engine, ids = _engine("loop", torch.bfloat16, quant="int8")
    engine.generate(ids, 12)
    check = engine.check_output(ids, 12)
    engine.close()
    assert "unquantized bfloat16 weights against int8" in check.ref
    assert 0 < check.kld_mean < kld_limit(torch.bfloat16, "int8") and not check.warnings()
    sound, _ = _engine("loop", torch.bfloat16)
    sound.generate(ids, 12)
    assert check.kld_mean > sound.check_output(ids, 12).kld_mean  # int8 costs more than rounding alone
    sound.close()


def test_every_row_carries_its_check_and_check_false_says_so(tmp_path):
    """The real CLI on the real engine: a checked row (ok, with its cost), and check=false leaves the numbers
    empty and says why."""
    proc = run_bench("run", "--set", "batch_size=2", "--set", "output_len=8", "--set", "check=true,false", *FAST, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_csv(single_run_dir(tmp_path) / "results.csv").to_dict("records")
    checked, unchecked = sorted(rows, key=lambda r: str(r["check_ref"]).startswith("not checked"))
    assert checked["check_kld_mean"] < 1e-3 and checked["check_top1"] >= 0.9 and checked["check_s"] > 0
    assert "wrong-output" not in str(checked["warnings"])
    assert unchecked["check_ref"] == "not checked: check=false" and pd.isna(unchecked["check_kld_mean"])


CLAIMS = {c.id: c for c in load_claims()}


def test_a_verdict_from_a_wrong_output_is_inconclusive_and_an_unchecked_one_says_so():
    claim = CLAIMS["edge-latency-10ms"]
    wrong = make_run("latency", [{"itl_ms_p99": 8.0, "weights": "random", "check_kld_mean": 0.4,
                                  "check_ref": "teacher-forced", "warnings": "wrong-output"}])
    v = verify_claim(claim, [wrong])
    assert v.verdict == "inconclusive" and WRONG_OUTPUT in v.reason
    unchecked = make_run("latency", [{"itl_ms_p99": 8.0, "weights": "random", "check_ref": "not checked: check=false"}])
    v = verify_claim(claim, [unchecked])
    assert v.verdict == "holds" and "output not checked (check=false)" in v.reason
    checked = make_run("latency", [{"itl_ms_p99": 8.0, "weights": "random", "check_kld_mean": 1e-6}])
    assert "output" not in verify_claim(claim, [checked]).reason


def test_bench_check_fails_a_faster_candidate_whose_output_is_wrong(tmp_path):
    proc = run_bench("run", "--engine", "simulated", "--set", "min_reps=3", "--set", "min_seconds=0", "--set",
                     "idle_seconds=0", "--set", "output_len=8", "--out", str(tmp_path / "base"))
    assert proc.returncode == 0, proc.stderr
    base = single_run_dir(tmp_path / "base")
    faster = slowed(base, tmp_path / "faster", 2.0)
    results = pd.read_csv(faster / "results.csv")
    results["warnings"], results["check_kld_mean"] = "wrong-output", 0.4
    results.to_csv(faster / "results.csv", index=False)
    proc = run_bench("check", "--baseline", str(base), str(faster))
    assert proc.returncode == 1, proc.stdout
    assert "check_kld_mean" in proc.stdout and "regression" in proc.stdout


def _checkpoint_with_tokenizer(path, train_steps: int):
    """A tiny Llama checkpoint beside a byte-level BPE tokenizer trained here on the fixed text (offline, a
    second), after train_steps of Adam on that text (0: its random weights)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from bench.core.paths import seeds_dir

    text = (seeds_dir() / output_check.PERPLEXITY_TEXT).read_text(encoding="utf-8")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
    bpe.train_from_iterator([text], trainers.BpeTrainer(vocab_size=512, special_tokens=["<unk>", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tokenizer.save_pretrained(path)
    config = resolve_model("tiny").config
    config.vocab_size, config.num_hidden_layers = 512, 2
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    ids = ids[0, :ids.shape[1] // 256 * 256].view(-1, 256)  # the whole text, in rows of 256 tokens
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(train_steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(path)
    return path


def test_pretrained_weights_report_perplexity_on_the_fixed_text(tmp_path):
    """A local checkpoint with its tokenizer: the row carries the perplexity of the fixed text, and a model
    trained a few steps on that text scores far lower than the same model untrained (the figure measures the
    model, not the plumbing)."""
    models = [_checkpoint_with_tokenizer(tmp_path / f"model-{steps}", steps) for steps in (0, 30)]
    proc = run_bench("run", "--set", f"model={models[0]},{models[1]}", "--set", "dtype=float32",
                     "--set", "batch_size=1", "--set", "output_len=4", *FAST, "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_csv(single_run_dir(tmp_path / "out") / "results.csv").to_dict("records")
    assert [r["model"] for r in rows] == [str(m) for m in models]
    assert all(r["weights"] == "pretrained" and r["check_kld_mean"] < 1e-4 for r in rows)
    figures = {0: rows[0]["perplexity"], 30: rows[1]["perplexity"]}
    assert 100 < figures[0] < 5000  # random weights: about the vocabulary's 512, give or take
    assert 1 < figures[30] < figures[0] / 5, figures


def test_a_server_that_repeats_one_token_is_caught_where_its_weights_are_local(tmp_path):
    """The openai engine against a server whose answers are one token over and over: with --model naming the
    checkpoint locally, the check compares the server's top log-probabilities with it and warns; with a bundled
    config the server's weights are not local, and the row says so."""
    from transformers import AutoModelForCausalLM

    from tests.stub_openai_server import StubServer
    from tests.test_engines_remote import run_openai_results

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(resolve_model("tiny").config, dtype=torch.float32).save_pretrained(tmp_path)
    with StubServer("ok") as server:
        (local,) = run_openai_results(server.url, model=[str(tmp_path)], served_model="tiny", dtype=["float32"])
        (bundled,) = run_openai_results(server.url)
    assert local.row["status"] == "ok", local.row["detail"]
    assert [w.kind for w in local.warnings if w.kind == "wrong-output"] == ["wrong-output"]
    assert local.row["check_kld_mean"] > 1 and local.row["check_top1"] < 0.5
    assert "top 20 log-probabilities" in local.row["check_ref"]
    assert bundled.row["check_ref"].startswith("not checked: the server's weights are not local")
