"""The claims in seeds/claims.toml as data: what each says, its figure, and the conditions a measurement
must meet to answer it. Loading and checking only; bench.analysis.verify gives the verdicts."""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import BadInput
from bench.core.paths import seeds_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

COMPARISONS = (">=", "<=", "ratio>=", "ratio<=", "price")


@dataclass(frozen=True)
class Claim:
    """One claim as data: what it says, the figure, and the conditions a measurement must meet to count."""

    id: str
    source: str
    assertion: str
    figure: float
    unit: str
    metric: str
    comparison: str
    workloads: list[str]
    conditions: dict[str, Any]
    tolerance: float = 1.0
    price: dict[str, float] | None = None
    scope: str = ""  # the hardware and model the article speaks of
    hardware: str = ""  # regex of the claimed hardware class ("" for a claim about any hardware)
    measure: str = ""  # the command that measures it (default: the first workload)

    def command(self) -> str:
        """What to run to measure this claim."""
        if self.measure:
            return self.measure
        models = self.conditions.get("model")
        model = (models[0] if isinstance(models, list) else models) if models else ""
        return f"bench run --workload {self.workloads[0]}" + (f" --model {model}" if model else "")


def load_claims(path: Path | None = None) -> list[Claim]:
    """Read and check seeds/claims.toml."""
    path = path or seeds_dir() / "claims.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: cannot read claims: {exc}") from None
    claims = []
    for raw in data.get("claim", []):
        raw = dict(raw)
        if "workload" in raw:  # one workload, the older spelling
            one = raw.pop("workload")
            raw.setdefault("workloads", [one])
        try:
            claim = Claim(**raw)
        except TypeError as exc:
            raise BadInput(f"{path}: claim {raw.get('id', '?')}: {exc}") from None
        if claim.comparison not in COMPARISONS:
            raise BadInput(f"{path}: claim {claim.id}: comparison must be one of {', '.join(COMPARISONS)}")
        _check_claim(claim, path)
        claims.append(claim)
    return claims


def _check_claim(claim: Claim, path: Path) -> None:
    """Every field of the type the verdicts rely on (a claims file is read back like any other input)."""
    where = f"{path}: claim {claim.id!r}"
    for name in ("id", "source", "assertion", "unit", "metric"):
        if not isinstance(getattr(claim, name), str) or not getattr(claim, name):
            raise BadInput(f"{where}: {name} must be a non-empty string")
    for name in ("scope", "hardware", "measure"):
        if not isinstance(getattr(claim, name), str):
            raise BadInput(f"{where}: {name} must be a string")
    if not isinstance(claim.workloads, list) or not claim.workloads or \
            not all(isinstance(w, str) and w for w in claim.workloads):
        raise BadInput(f"{where}: workloads must be a non-empty list of workload names")
    for name in ("figure", "tolerance"):
        value = getattr(claim, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise BadInput(f"{where}: {name} must be a finite positive number, got {value!r}")
    if not isinstance(claim.conditions, dict):
        raise BadInput(f"{where}: conditions must be a table")
    if claim.comparison == "price" and not isinstance(claim.price, dict):
        raise BadInput(f"{where}: a price claim needs a price table")


def describe(conditions: dict[str, Any]) -> str:
    """Conditions in words: batch_size=1, output_len >= 1024, params >= 4e+08."""
    def one(k: str, v: Any) -> str:
        bound = re.fullmatch(r"(min|max)_(.+)", k)
        if bound:
            return f"{bound.group(2)} {'>=' if bound.group(1) == 'min' else '<='} {v:g}"
        return f"{k}={'|'.join(map(str, v)) if isinstance(v, list) else v}"

    return ", ".join(one(k, v) for k, v in conditions.items())
