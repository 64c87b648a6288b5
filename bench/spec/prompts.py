"""Seeded synthetic prompts of exact token length, shared by every engine."""

from __future__ import annotations

import torch


def special_token_ids(config: object) -> set[int]:
    """bos/eos/pad ids named in a config (any may be a list or missing)."""
    ids: set[int] = set()
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def random_prompts(batch_size: int, input_len: int, vocab_size: int, seed: int,
                   avoid: set[int] | None = None) -> torch.Tensor:
    """A (batch_size, input_len) int64 tensor of token ids, the same for the same seed.

    Special tokens are replaced so that no prompt ends early or contains padding.
    """
    if batch_size < 1 or input_len < 1:
        raise ValueError("batch_size and input_len must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    for token in avoid or ():
        if 0 <= token < vocab_size:
            allowed[token] = False
    choices = allowed.nonzero().flatten()
    picks = torch.randint(0, len(choices), (batch_size, input_len), generator=gen)
    return choices[picks]
