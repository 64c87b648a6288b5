"""The transformers engine on the tiny model: exact lengths, one-call timelines, real weights from disk."""

import pytest
import torch

from bench.devices import resolve_device
from bench.engines import get_engine
from bench.engines.base import LoadOptions
from bench.errors import BadInput
from bench.models import resolve_model
from bench.prompts import random_prompts, special_token_ids


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
    engine.load(resolve_model("tiny"), resolve_device("cpu"), LoadOptions(dtype=torch.float32, cache="static"))
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
