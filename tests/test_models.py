"""Bundled configs have the published dimensions; local directories load real weights."""

import pytest

from bench.core.errors import BadInput
from bench.spec.models import bundled_models, resolve_model

# Published parameter counts (model cards), to 1%.
PUBLISHED = {
    "tiny": 10.49e6,
    "qwen2.5-0.5b": 494e6,
    "llama-3.2-1b": 1.24e9,
    "gemma-2-2b": 2.61e9,
    "llama-3.1-8b": 8.03e9,
    "llama-2-70b": 69.0e9,
    "mixtral-8x7b": 46.7e9,
}


def test_bundled_models_present():
    assert set(PUBLISHED) <= set(bundled_models())


@pytest.mark.parametrize(("name", "params"), PUBLISHED.items())
def test_parameter_counts_match_the_published_models(name, params):
    spec = resolve_model(name)
    assert spec.weights == "random"
    assert spec.shape.params == pytest.approx(params, rel=0.01)


def test_kv_bytes_per_token_formula():
    s = resolve_model("llama-3.1-8b").shape
    # 2 * 32 layers * 8 kv heads * 128 head dim * 2 bytes = 131072 B (128 KiB) per token
    assert s.kv_bytes_per_token(2) == 131072
    assert s.max_position == 131072


def test_mixtral_active_parameters():
    s = resolve_model("mixtral-8x7b").shape
    assert s.active_params == pytest.approx(12.9e9, rel=0.02)  # 2 of 8 experts per token


def test_unknown_model_and_bad_directories(tmp_path):
    with pytest.raises(BadInput, match="unknown model"):
        resolve_model("gpt-17")
    with pytest.raises(BadInput, match="no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(BadInput, match="not readable JSON"):
        _ = resolve_model(str(tmp_path)).config
