"""The transformers engine on the tiny model: exact lengths, one-call timelines, real weights from disk."""

import pytest
import torch

from bench.core.errors import BadInput
from bench.engines import get_engine
from bench.engines.base import LoadOptions
from bench.hardware.devices import resolve_device
from bench.spec.models import resolve_model
from bench.spec.prompts import random_prompts, special_token_ids


@pytest.fixture(scope="module")
def tiny_engine():
    engine = get_engine("transformers")
    engine.load(resolve_model("tiny"), resolve_device("cpu"), LoadOptions(dtype=torch.float32))
    yield engine
    engine.close()


def test_exact_token_counts_and_monotonic_timeline(tiny_engine):
    ids = random_prompts(3, 20, 8192, seed=1)
    rep = tiny_engine.generate(ids, 12)
    assert len(rep.requests) == 3
    for req in rep.requests:
        assert req.output_len == 12
        assert req.input_len == 20
        times = (req.start, *req.token_times)
        assert all(b >= a for a, b in zip(times, times[1:]))
        assert req.ttft > 0


def test_static_cache_is_used_and_gives_the_same_lengths(monkeypatch):
    from transformers import StaticCache

    engine = get_engine("transformers")
    engine.load(resolve_model("tiny"), resolve_device("cpu"), LoadOptions(dtype=torch.float32, cache="static", decode="generate"))
    caches = []
    original = engine.model.generate

    def spy(*args, **kwargs):
        out = original(*args, return_dict_in_generate=True, **kwargs)
        caches.append(type(out.past_key_values))
        return out.sequences

    monkeypatch.setattr(engine.model, "generate", spy)
    rep = engine.generate(random_prompts(2, 8, 8192, seed=0), 5)
    assert rep.requests[0].output_len == 5
    assert caches and issubclass(caches[0], StaticCache), caches


def test_prompts_are_seeded_and_avoid_special_tokens():
    a = random_prompts(2, 64, 50, seed=7, avoid={0, 1, 2})
    b = random_prompts(2, 64, 50, seed=7, avoid={0, 1, 2})
    assert torch.equal(a, b)
    assert not torch.isin(a, torch.tensor([0, 1, 2])).any()
    assert special_token_ids(resolve_model("tiny").config) == {1, 2}


def test_unknown_engine():
    with pytest.raises(BadInput, match="unknown engine"):
        get_engine("tensorrt-magic")


def test_pretrained_weights_from_a_local_directory(tmp_path):
    """A model the test saves itself is loaded with its real weights (no network)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(resolve_model("tiny").config)
    model.save_pretrained(tmp_path)
    spec = resolve_model(str(tmp_path))
    assert spec.weights == "pretrained"
    engine = get_engine("transformers")
    engine.load(spec, resolve_device("cpu"), LoadOptions(dtype=torch.float32))
    loaded = dict(engine.model.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(loaded[name].detach(), p.detach()), name
    assert engine.generate(random_prompts(1, 4, 8192, 0), 3).requests[0].output_len == 3


def test_quantized_weights_change_the_bytes_and_the_roofline(tmp_path):
    """tiny with int8 and int4 weight-only linears: the row says the quantization, weight_bytes is the stored
    bytes, and MBU is computed from them; the token count is asserted as for any row."""
    pytest.importorskip("torchao")
    import pandas as pd

    from bench.hardware.roofline import decode_bytes_per_step
    from bench.spec.models import resolve_model
    from tests.helpers import FAST, auto_bytes_per_element, run_bench, single_run_dir

    proc = run_bench("run", "--set", "quant=none,int8,int4", "--set", "batch_size=1", "--set", "output_len=8",
                     "--out", str(tmp_path), *FAST)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv").set_index("quant")
    assert (df["status"] == "ok").all(), df["detail"]
    full, int8, int4 = (df.loc[q, "weight_bytes"] for q in ("none", "int8", "int4"))
    shape = resolve_model("tiny").shape
    assert full == shape.params * auto_bytes_per_element() and int8 < 0.75 * full and int4 < full
    assert "unpacked in int8" in df.loc["int4", "detail"]
    element = auto_bytes_per_element()  # the KV cache's, and the unquantized weights'
    for quant, row in df.iterrows():
        per_step = decode_bytes_per_step(shape, row["weight_bytes"] / shape.params, 1, row["input_len"] + 4, element)
        bandwidth = row["decode_tok_s"] * per_step / row["mbu"]
        assert bandwidth == pytest.approx(df["decode_tok_s"].iloc[0] * decode_bytes_per_step(
            shape, float(element), 1, row["input_len"] + 4, element) / df["mbu"].iloc[0], rel=1e-3), quant


def test_quantization_without_torchao_is_bad_input(tmp_path):
    """A torchao that cannot be imported (a stand-in module on PYTHONPATH): one line with the install command."""
    from tests.helpers import run_bench

    fake = tmp_path / "fake" / "torchao"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no torchao here')\n")
    proc = run_bench("run", "--set", "quant=int8", "--dry-run", env={"PYTHONPATH": str(tmp_path / "fake")})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "bench: error: quant=int8 needs torchao: pip install 'claimbench[quant]' (torchao)"


def test_a_workload_that_lists_quantizations_runs_without_torchao_as_skipped_rows(monkeypatch):
    """Only a --set asks for quantization outright; a workload file's list (edge's) without torchao gives
    skipped rows that say how to install it, and the bf16 case still runs (the real engine, tiny model)."""
    from bench.engines import quant
    from bench.run.runner import Runner
    from bench.scenarios import scenario_for
    from bench.spec.workload import apply_overrides, load_workload
    from bench.telemetry.base import NoTelemetry
    from bench.telemetry.sampler import Sampler

    def no_torchao():
        raise ImportError("No module named 'torchao'")

    monkeypatch.setattr(quant, "_import_torchao", no_torchao)
    w = apply_overrides(load_workload("quick"), {"quant": ["none", "int8"], "batch_size": [1], "output_len": [4],
                                                 "min_reps": 1, "min_seconds": 0, "warmup": 0})
    rows = [r.row for r in Runner(w, resolve_device("cpu"), Sampler(NoTelemetry()), "t").run(scenario_for(w).expand())]
    assert [(r["quant"], r["status"]) for r in rows] == [("none", "ok"), ("int8", "skipped")]
    assert "pip install 'claimbench[quant]'" in rows[1]["detail"]


def _tokens(engine, ids, output_len):
    """The greedy tokens one call produced, on whichever path the engine runs."""
    if engine.loop is not None:
        engine.generate(ids, output_len)
        return engine.loop.last_tokens
    out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                **engine._generation_kwargs(output_len))
    return out[:, ids.shape[1]:].cpu()


@pytest.mark.parametrize(("model", "decode"), [("tiny", "loop"), ("tiny", "captured"), ("qwen2.5-0.5b", "loop")])
def test_every_decode_path_gives_generates_greedy_tokens(model, decode):
    """Same seed, same prompt: the static-cache loop (eager or compiled) picks the tokens generate picks; exact
    lengths on every path; warm-up compiles, a timed call does not."""
    spec = resolve_model(model)
    cpu = resolve_device("cpu")
    ids = random_prompts(2, 24, spec.shape.vocab, 3, spec.special_token_ids)
    engines = {}
    for path in ("generate", decode):
        engine = get_engine("transformers")
        engine.load(spec, cpu, LoadOptions(dtype=torch.float32, seed=7, decode=path))
        assert engine.decode_path() == path
        engines[path] = engine
    expected = _tokens(engines["generate"], ids, 10)
    got = _tokens(engines[decode], ids, 10)  # for captured, this call compiles (the warm-up)
    assert torch.equal(expected, got), (expected, got)
    compile_s, frames = engines[decode].compile_stats()
    assert (frames > 0 and compile_s > 0) if decode == "captured" else frames == 0
    rep = engines[decode].generate(ids, 10)  # a timed call on a shape already compiled: no recompile
    assert all(r.output_len == 10 for r in rep.requests) and engines[decode].compile_stats()[1] == 0
    for engine in engines.values():
        engine.close()


def test_auto_is_captured_on_accelerators_and_loop_on_a_cpu():
    from bench.engines.transformers_engine import resolve_path
    from bench.hardware.devices import Device

    cpu, gpu = resolve_device("cpu"), Device(torch.device("cuda:0"), "stand-in card", 1)
    assert resolve_path("auto", False, cpu) == "loop" and resolve_path("auto", False, gpu) == "captured"
    assert resolve_path("auto", True, cpu) == "captured"  # compile=true is a synonym of captured
    assert resolve_path("generate", True, gpu) == "generate"


def test_a_fullgraph_compile_is_counted():
    """torch.compile(fullgraph=True), how the captured path compiles on a card, counts as a compilation:
    dynamo's `frames` counter skips fullgraph, which left compile_s empty on the H200's captured rows."""
    from bench.engines.decode_loop import dynamo_frames

    before = dynamo_frames()
    torch.compile(lambda x: x * 3 + 1, fullgraph=True)(torch.ones(4))
    assert dynamo_frames() > before


@pytest.mark.parametrize("slow", ["static", "dynamic"])
def test_auto_on_a_cpu_keeps_the_kv_cache_that_decodes_faster_here(slow):
    """decode=auto on a CPU times a few steps of each KV cache kind in a shape's first call and keeps the
    faster (on an AMD EPYC the static cache decoded qwen2.5-0.5b at a third of the dynamic one's speed; on an
    Intel Xeon they were even): here one kind is made 0.25 s a step slower (far beyond what a busy machine
    does to a step of the tiny model). Same tokens either way; the row's cache says auto and the note says which
    ran."""
    import time

    from transformers import StaticCache

    spec = resolve_model("tiny")
    ids = random_prompts(2, 16, spec.shape.vocab, 3, spec.special_token_ids)
    engine = get_engine("transformers")
    engine.load(spec, resolve_device("cpu"), LoadOptions(dtype=torch.float32, seed=7, decode="auto"))
    loop = engine.loop
    fast_step = loop._step

    def step(token, position, cache):
        if isinstance(cache, StaticCache) == (slow == "static"):
            time.sleep(0.25)
        return fast_step(token, position, cache)

    loop._step = step
    engine.generate(ids, 6)
    kept = "dynamic" if slow == "static" else "static"
    assert loop.cache_used == kept and engine.cache_used() == "auto"
    assert f"the eager loop with a {kept} KV cache" in " ".join(engine.notes())
    tokens = loop.last_tokens.clone()
    loop._step = fast_step
    loop.cache_mode = slow  # the other kind decodes the same tokens
    engine.generate(ids, 6)
    assert torch.equal(loop.last_tokens, tokens)
    engine.close()
