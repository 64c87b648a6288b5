"""Errors that the CLI turns into one line on stderr and an exit code, and how a failed case is told."""

from __future__ import annotations


class BadInput(Exception):
    """The user asked for something that cannot be done as asked (exit code 2)."""


def is_oom(exc: BaseException) -> bool:
    """torch's OOM, or an allocator failure that means the same on CPU."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def first_line(exc: BaseException) -> str:
    """An exception as one line for a row's detail: its class and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}".strip()


QUOTE_CHARS = 80  # an error message repeats at most this much of a value
MAX_VALUE_CHARS = 1000  # a --set value, a label or a string parameter longer than this is bad input


def quote(value: object) -> str:
    """A value as an error message shows it: its repr, cut to the first QUOTE_CHARS characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"  # repr() of a huge int fails
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else f"{text[:QUOTE_CHARS]}... ({len(text)} characters)"
