"""The two declarations every table of claimbench is made of: a workload key (Param) and a results.csv column
(Column). The tables themselves are bench/core/params.py (the keys every kind reads), bench/core/schema.py
(the columns every kind writes), bench/core/kinds.py (what one workload kind adds) and the engines' OPTIONS.
Pure data: importing it imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# identity: "case" for the shape every row names (model, engine, dtype, batch, lengths); "param" for a
# parameter that sets a case apart only where it differs from its default (a row lacking it takes the default).
CASE, PARAM = "case", "param"
MAX_TOKENS = 1 << 24  # 16.7M tokens: far beyond any model's context, short of what would exhaust memory to plan


@dataclass(frozen=True)
class Param:
    """One workload parameter: its type, default, whether it may be a list, its meaning and its roles."""

    type: type
    default: Any
    doc: str
    matrix: bool = False
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None  # beyond what the parameter can mean (a context of 2**40 tokens)
    engine: str = ""  # set for an engine's own option: which engine reads it
    reload: bool = False  # a change needs the model loaded again
    devices: bool = False  # an engine option that multiplies the devices a case uses
    identity: str = ""  # CASE | PARAM | "" (not part of what makes a case a case)
    load: bool = False  # a field of the engine's LoadOptions (the one channel from a case to an engine)
    plan: str = ""  # the heading of its column in a --dry-run plan ("" = not shown)
    label: str = ""  # how a case label names it: a format ("bs={}"), or for a bool "word" / "true-word|false-word"
    label_if: str = ""  # name it only where this column holds a value (a non-default parameter, a measured metric)
    as_text: bool = False  # a str parameter whose value may be written as a number or a comma list (cards=0,2)


@dataclass(frozen=True)
class Column:
    """A results.csv column, declared once with every fact about it: its name, unit and meaning; for a metric,
    which way is better, its terminal heading and format, whether `bench check` gates it, which samples.csv
    column holds its value per repetition, which terminal table shows it (compact: the default 80-column
    table and --wide; wide: --wide only), which rows carry it beyond the contract (row: every row; model:
    every row of a model; '': a scenario declares it), whether it is derived from measured energy, and
    whether it holds numbers (by default: when it has a unit)."""

    name: str
    unit: str
    doc: str
    direction: int = 0  # +1 higher is better, -1 lower is better, 0 neither
    header: str = ""  # terminal table heading
    fmt: str = "{}"  # terminal cell format
    gated: bool = False  # bench check compares it
    sample: str | None = None  # samples.csv column with one value per repetition
    table: str = ""  # "compact" | "wide" | ""
    every: str = ""  # beyond the contract: "row" (every row has it) | "model" (every model row) | "" (a scenario's)
    energy: bool = False  # derived from measured energy: left out where telemetry reads none
    numeric: bool | None = None  # None: numeric when it has a unit

    @property
    def holds_numbers(self) -> bool:
        return bool(self.unit) if self.numeric is None else self.numeric
