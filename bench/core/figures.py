"""How a figure is written for people, in every table, verdict and reason."""

from __future__ import annotations

import math


def num(value: object, digits: int = 4) -> str:
    """A figure for people: `digits` significant digits, but a number with more whole digits than that
    in full (131056 tokens, 135915 ms, never 1.311e+05); "" for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    v = float(value)  # type: ignore[arg-type]
    text = f"{v:.{digits}g}"
    return f"{v:.0f}" if "e+" in text and abs(v) < 1e15 else text


def finite(value: object) -> float | None:
    """A cell as a finite number, or None (empty, text, NaN or infinite)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
