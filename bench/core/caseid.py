"""A case's identity as text: one way to write a parameter's value and one way to name a case, for every
table, plot and verdict. Which keys make a case, and how each is named, come from bench.core.params."""

from __future__ import annotations

from typing import Any

from bench.core.params import CASE, IDENTITY

# The keys a case label may name, in declaration order (the shape first, then what sets a case apart).
LABELLED = [k for k, p in IDENTITY.items() if p.label and p.identity == CASE] + \
    [k for k, p in IDENTITY.items() if p.label and p.identity != CASE]


def param_text(value: Any) -> str:
    """A case parameter as text that is the same whoever wrote it: True/'True' -> 'true', 8192.0 -> '8192'."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return str(bool(value)).lower()
    if isinstance(value, int | float) or type(value).__module__ == "numpy":
        number = float(value)  # every digit: a 1048576-token context is not 1048580 (as "%g" would have it)
        return str(int(number)) if number.is_integer() else repr(number)
    text = str(value).strip()
    return text.lower() if text.lower() in ("true", "false") else text


def _names(row: Any) -> list[str]:
    import pandas as pd

    return list(row.index) if isinstance(row, pd.Series) else list(row)  # a Series iterates over its values


def _has_value(row: Any, names: list[str], column: str) -> bool:
    """The column holds something worth naming: a parameter away from its default, or a measured metric
    (a compare table names a metric 'bandwidth_gb_s [0]'; older rows hold it empty)."""
    if column in IDENTITY:
        return param_text(row.get(column)) not in ("", param_text(IDENTITY[column].default))
    return any(str(k).startswith(column) and param_text(row.get(k)) for k in names)


def _word(key: str, text: str, row: Any, names: list[str]) -> str:
    """How the label names one key's value ('' when it says nothing)."""
    p = IDENTITY[key]
    if p.label_if:
        if not _has_value(row, names, p.label_if):
            return ""
    elif p.identity != CASE and text == param_text(p.default):
        return ""
    if p.type is bool:
        true_word, _, false_word = p.label.partition("|")
        return true_word if text == "true" else false_word if text == "false" else ""
    return p.label.format(text)


def case_label(row: Any, workload: bool = True) -> str:
    """One way to name a case everywhere: [workload] model dtype bs= in= out=, then the parameters
    that set it apart from the default case (int4, compiled, prefix=8192 reused, 256 MiB, n=8192...).
    What a row does not have (a microbenchmark's model and lengths) is left out."""
    names = _names(row)
    parts = []
    for key in LABELLED:
        text = param_text(row.get(key))
        if text in ("", "none") and IDENTITY[key].identity == CASE:
            continue  # a microbenchmark has no model
        word = _word(key, text, row, names) if text else ""
        if word:
            parts.append(word)
    text = " ".join(parts)
    return f"{row['workload']} {text}" if workload and "workload" in names else text


def case_tags(params: dict[str, Any]) -> str:
    """What sets a case apart beyond its parameters' columns, as `tags` (telemetry=off, rate=, users=, turns=, trace=,
    trial=)."""
    tags = [] if params["telemetry"] else ["telemetry=off"]
    if params.get("request_rate", 0):
        tags.append(f"rate={params['request_rate']:g}")  # a load sweep's cases differ by their arrival rate
    if params.get("power_limit_w", 0):
        tags.append(f"cap={params['power_limit_w']:g}W")  # a power-cap sweep's cases differ by their cap
    if params.get("concurrency", 0):
        tags.append(f"users={params['concurrency']}")  # a concurrency sweep's cases differ by their users
    if params.get("turns", 1) > 1:
        tags.append(f"turns={params['turns']}")
    if params.get("trace"):
        from pathlib import Path

        tags.append(f"trace={Path(params['trace']).name}" + (f"@{params['trace_speed']:g}x"
                                                             if params["trace_speed"] != 1 else ""))
    if params["trial"] > 1:
        tags.append(f"trial={params['trial']}")
    return ";".join(tags)


def case_text(row: Any) -> str:
    """A case as an answer line names it: 'case 3 (tiny bfloat16 bs=1 in=128 out=32)'."""
    return f"case {row.get('case')} ({case_label(row, workload=False)})"
