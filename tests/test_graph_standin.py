"""The card's semantics on a CPU: captured steps whose outputs the next replay overwrites
(bench/engines/graph_standin.py) and timing events readable only after a synchronisation (tests/fake_card.py),
run through every decode path that can be captured. On a CPU the real captured step is inductor without
graphs, whose outputs are fresh tensors: without these stand-ins, keeping a graph output past its replay (the
bug that ended every captured case on the first CUDA card in an error row) passes CI."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bench.engines import decode_loop, get_engine, graph_standin
from bench.engines.base import LoadOptions
from bench.hardware.devices import Device, resolve_device
from bench.spec.models import resolve_model
from bench.spec.prompts import random_prompts
from tests.fake_card import FakeCard
from tests.helpers import FAST, run_bench, single_run_dir


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setenv(graph_standin.ENV, "1")


def test_an_output_kept_past_its_replay_raises_as_on_a_card():
    step = graph_standin.StaticGraphStep(lambda x: x * 2)
    given = torch.tensor([1.0, 2.0])
    first = step(given)
    given.fill_(100.0)  # the graph read its own copy of the input
    assert first.shape == (2,) and torch.equal(first + 0, torch.tensor([2.0, 4.0]))
    second = step(torch.tensor([3.0, 4.0]))
    assert second.data_ptr() == step._outputs.data_ptr()  # one static output buffer, as a replay writes
    with pytest.raises(RuntimeError, match="overwritten by a subsequent run"):
        torch.cat([first, second])
    with pytest.raises(RuntimeError, match="overwritten"):
        first.clone()
    assert first.shape == (2,)  # metadata stays readable, as on a card
    assert torch.equal(second.clone(), torch.tensor([6.0, 8.0]))  # the newest output is valid until the next


def _reference_tokens(spec, ids, output_len):
    engine = get_engine("transformers")
    engine.load(spec, resolve_device("cpu"), LoadOptions(dtype=torch.float32, seed=7, decode="loop"))
    engine.generate(ids, output_len)
    tokens = engine.loop.last_tokens.clone()
    engine.close()
    return tokens


def test_the_captured_path_keeps_no_graph_output(standin):
    """One device: every call on the stand-in decodes the eager loop's tokens (today's code; the version that
    kept each step's output in a list raises here, as it did on the H200)."""
    spec = resolve_model("tiny")
    ids = random_prompts(3, 20, spec.shape.vocab, 5, spec.special_token_ids)
    expected = _reference_tokens(spec, ids, 12)
    engine = get_engine("transformers")
    engine.load(spec, resolve_device("cpu"), LoadOptions(dtype=torch.float32, seed=7, decode="captured"))
    for _ in range(2):
        rep = engine.generate(ids, 12)
        assert torch.equal(engine.loop.last_tokens, expected)
        assert [r.output_len for r in rep.requests] == [12, 12, 12]
    assert graph_standin.NOTE in engine.notes()
    engine.close()


def test_the_card_path_runs_on_a_cpu_with_events_and_overwritten_outputs(standin, monkeypatch):
    """The decode loop as a card runs it: a non-CPU device, events read only after the one synchronisation,
    the captured step's outputs overwritten by each replay. Tokens are the eager loop's; times come from the
    events, increase, and lie inside the loop's synchronised window."""
    card = FakeCard()
    monkeypatch.setattr(decode_loop, "_event_class", card.event_class)
    monkeypatch.setattr(decode_loop, "synchronize", card.synchronize)
    spec = resolve_model("tiny")
    ids = random_prompts(2, 16, spec.shape.vocab, 9, spec.special_token_ids)
    expected = _reference_tokens(spec, ids, 10)
    torch.manual_seed(7)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(spec.config, dtype=torch.float32).eval()
    fake = Device(torch.device("cuda:0"), "stand-in card", 1)
    loop = decode_loop.DecodeLoop(model, fake, captured=True)
    assert isinstance(loop._step, graph_standin.StaticGraphStep)
    card.syncs = 0
    start, times = loop.run(ids, 10)
    assert torch.equal(loop.last_tokens, expected)
    assert len(times) == 10 and all(b > a for a, b in zip(times, times[1:]))
    assert loop.last_window[0] == start < times[0] and times[-1] <= loop.last_window[1]
    assert card.syncs == 2  # the window's two edges, nothing per step

    stamps = decode_loop._Stamps(fake)  # the fake holds the card's contract: no reading before a sync
    stamps.start()
    stamps.mark()
    with pytest.raises(RuntimeError, match="device not ready"):
        stamps.first.elapsed_time(stamps.events[0])
    assert len(stamps.times()) == 1


def test_tensor_parallel_ranks_capture_on_the_stand_in(standin, tmp_path):
    """Each rank process compiles its own step: over two ranks on the stand-in, the tokens are the one-process
    tokens (the ranks inherit the setting)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(resolve_model("tiny").config, dtype=torch.float32).save_pretrained(tmp_path)
    spec = resolve_model(str(tmp_path))
    ids = torch.randint(3, 10000, (2, 12), generator=torch.Generator().manual_seed(1))
    expected = _reference_tokens(spec, ids, 8)
    from bench.engines import load_options
    from bench.spec.workload import PARAMS

    params = {k: p.default for k, p in PARAMS.items()}
    params.update(engine="transformers", dtype="float32", decode="captured", cards="2", placement="tp")
    tp = get_engine("transformers")
    tp.load(spec, resolve_device("cpu"), load_options(params, torch.float32))
    try:
        for _ in range(2):
            tp.generate(ids, 8)
            assert torch.equal(tp.last_tokens, expected)
        assert tp.group.fallback == graph_standin.NOTE
    finally:
        tp.close()


def test_the_long_context_sweep_runs_captured_on_the_stand_in(tmp_path):
    """The CLI's long-context sweep on the captured path under the stand-in: every row ok and saying what ran.
    (Prefix reuse is not a captured path: its DynamicCache holds the prefix, and decode=captured is refused.)"""
    proc = run_bench("run", "--workload", "long-context", "--quick", "--set", "decode=captured", *FAST,
                     "--out", str(tmp_path), env={graph_standin.ENV: "1"})
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv")
    assert (df["status"] == "ok").all(), df["detail"].tolist()
    captured = df[df["decode_path"] == "captured"]
    assert len(captured) > 0 and captured["detail"].str.contains("stand-in for CUDA graphs").all()
