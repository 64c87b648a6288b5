"""Resolve a model name or directory to a config, and describe its size.

A bundled name (workloads/models/<name>/config.json) is built with random
weights: same FLOPs and bytes as the real model, no download. A local HF
directory with weight files loads its real weights. Nothing here touches the
network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from bench.core import cache
from bench.core.errors import BadInput, first_line
from bench.core.paths import models_dir

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")


# What the size of a model is made of: without these, transformers fills in its defaults (a 4096-wide
# model from a config that says nothing), and the harness would measure a model nobody described.
REQUIRED_DIMENSIONS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def check_config_json(path: Path, name: str) -> None:
    """config.json is a JSON object naming an architecture and the dimensions, as positive integers."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"model '{name}': {path} is not readable JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"model '{name}': {path} must hold a JSON object")
    text = raw.get("text_config") if isinstance(raw.get("text_config"), dict) else raw
    missing = [k for k in REQUIRED_DIMENSIONS if k not in text]
    if missing:
        raise BadInput(f"model '{name}': {path} does not give {', '.join(missing)} "
                       "(transformers would fill in defaults and measure another model)")
    bad = [k for k in REQUIRED_DIMENSIONS if not (isinstance(text[k], int) and not isinstance(text[k], bool)
                                                 and text[k] > 0)]
    if bad:
        raise BadInput(f"model '{name}': {path}: {', '.join(f'{k}={text[k]!r}' for k in bad)} must be positive "
                       "integers")
    if not raw.get("model_type"):
        raise BadInput(f"model '{name}': {path} has no model_type")


@dataclass
class ModelSpec:
    """What to load: the model's name, its config directory, and whether it has real weights."""

    name: str
    path: Path
    weights: str  # "random" | "pretrained"
    trust_remote_code: bool = False  # run the model repository's own Python code (off unless the user sets it)

    @cached_property
    def config(self) -> Any:
        """The transformers config (PretrainedConfig), read from disk only."""
        from transformers import AutoConfig

        logging.getLogger("transformers").setLevel(logging.ERROR)
        check_config_json(self.path / "config.json", self.name)
        try:
            return AutoConfig.from_pretrained(self.path, local_files_only=True,
                                              trust_remote_code=self.trust_remote_code)
        except (ValueError, KeyError, TypeError, OSError, json.JSONDecodeError) as exc:
            raise BadInput(f"model '{self.name}': cannot read {self.path / 'config.json'}: "
                           f"{str(exc).splitlines()[0]}") from None

    @cached_property
    def shape(self) -> ModelShape:
        """Parameter count and the dimensions that set KV-cache size."""
        return ModelShape(**self._derived["shape"])

    @cached_property
    def special_token_ids(self) -> set[int]:
        """bos/eos/pad ids as transformers reads them from the config (defaults included)."""
        return set(self._derived["special_token_ids"])

    @cached_property
    def _derived(self) -> dict[str, Any]:
        """Shape and special ids, from the per-user cache when this exact config.json was seen before.

        Working them out needs transformers and a meta-device model (seconds per process); the
        cache key is the file's bytes and the transformers version, so any change is a miss.
        """
        from importlib.metadata import version

        from bench.spec.prompts import special_token_ids

        config_json = self.path / "config.json"
        check_config_json(config_json, self.name)
        key = hashlib.sha256(config_json.read_bytes() + version("transformers").encode()).hexdigest()
        hit = cache.load("model-shapes", key)
        if isinstance(hit, dict) and set(hit) == {"shape", "special_token_ids"}:
            try:
                ModelShape(**hit["shape"])
                return hit
            except TypeError:
                pass  # written by another version of ModelShape: work it out again
        derived = {"shape": dataclasses.asdict(model_shape(self.config, self.trust_remote_code)),
                   "special_token_ids": sorted(special_token_ids(self.config))}
        cache.store("model-shapes", key, derived)
        return derived


@dataclass(frozen=True)
class ModelShape:
    """Sizes derived from a config: what the roofline and memory estimates need."""

    params: int
    active_params: int  # per token (mixture-of-experts models use a subset)
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    vocab: int
    max_position: int
    intermediate: int = 0  # feed-forward width (per expert for mixture-of-experts models)

    def kv_bytes_per_token(self, bytes_per_element: int) -> int:
        """KV bytes per token: 2 (K and V) * layers * kv_heads * head_dim * bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_element


def model_shape(config: Any, trust_remote_code: bool = False) -> ModelShape:
    """Count parameters by building the model on the meta device (no memory, no time)."""
    import torch
    from transformers import AutoModelForCausalLM

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    params = sum(p.numel() for p in model.parameters())
    active = params
    experts = getattr(text, "num_local_experts", None)
    per_tok = getattr(text, "num_experts_per_tok", None)
    if experts and per_tok:
        expert_params = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
        active = params - expert_params + expert_params * per_tok // experts
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return ModelShape(
        params=params,
        active_params=active,
        layers=text.num_hidden_layers,
        heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        hidden=text.hidden_size,
        vocab=text.vocab_size,
        max_position=getattr(text, "max_position_embeddings", 0) or 0,
        intermediate=getattr(text, "intermediate_size", None) or 4 * text.hidden_size,
    )


def bundled_models() -> dict[str, Path]:
    """Names of the bundled model configs and their directories."""
    return {p.parent.name: p.parent for p in sorted(models_dir().glob("*/config.json"))}


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def resolve_model(name_or_dir: str, allow_download: bool = False, trust_remote_code: bool = False) -> ModelSpec:
    """A bundled name, a local directory or a Hugging Face hub id (ORG/NAME, from the local cache) -> ModelSpec.

    A hub id is looked up in the cache the hub client uses (HF_HOME / HF_HUB_CACHE); it is downloaded
    only with allow_download. Raises BadInput when nothing works, saying what to do.
    """
    path = Path(name_or_dir).expanduser()
    bundled = bundled_models()
    if name_or_dir in bundled:
        return ModelSpec(name_or_dir, bundled[name_or_dir], "random", trust_remote_code)
    if path.is_dir():
        return _directory(str(path), path, trust_remote_code)
    if path.exists():
        raise BadInput(f"model path {path} is not a directory")
    if HUB_ID.fullmatch(name_or_dir):
        return _directory(name_or_dir, hub_snapshot(name_or_dir, allow_download), trust_remote_code)
    raise BadInput(f"unknown model '{name_or_dir}' (bundled: {', '.join(bundled)}; a local HF directory; "
                   "or a hub id ORG/NAME in the Hugging Face cache)")


def _directory(name: str, path: Path, trust_remote_code: bool) -> ModelSpec:
    if not (path / "config.json").is_file():
        raise BadInput(f"model directory {path} has no config.json")
    has_weights = any(any(path.glob(p)) for p in WEIGHT_PATTERNS)
    return ModelSpec(name, path, "pretrained" if has_weights else "random", trust_remote_code)


def hub_snapshot(repo_id: str, allow_download: bool) -> Path:
    """The cached snapshot directory of a hub model; downloaded first only when allowed."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        if not allow_download:
            raise BadInput(f"model {repo_id} is neither a local directory nor in the Hugging Face cache; download it with "
                           f"`hf download {repo_id}` (or run with --set allow_download=true)") from None
    except Exception as exc:  # noqa: BLE001 - a malformed cache or id: say so in one line
        raise BadInput(f"model {repo_id}: cannot read it from the Hugging Face cache ({first_line(exc)})") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, gated model...
        raise BadInput(f"model {repo_id}: download failed ({first_line(exc)})") from None
