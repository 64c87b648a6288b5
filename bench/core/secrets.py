"""Keep credentials out of everything claimbench writes or prints: URL userinfo is redacted."""

from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def redact(text: str) -> str:
    """'http://user:pw@host/v1' -> 'http://***@host/v1', anywhere in the text."""
    return _USERINFO.sub(r"\1***@", text)


def redact_all(value: Any) -> Any:
    """Every string inside lists, tuples and dicts, redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_all(v) for v in value)
    return value
