"""Load and validate a workload TOML file and expand its matrix into cases.

A workload file looks like::

    name = "throughput"
    description = "..."
    kind = "generate"            # what the runner does with each case
    claims = ["groq-500-tps"]    # ids in seeds/claims.toml it helps test

    [params]                     # any key below; a list expands the matrix
    batch_size = [1, 8]
    input_len = [128, 512]

    [quick]                      # overrides applied by --quick
    batch_size = [1]

Parameters that take a list are expanded as a cartesian product (llama-bench
style). Cases are ordered with the model (and what decides how it is loaded)
outermost, so each model is loaded once.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.caseid import case_label
from bench.core.errors import MAX_VALUE_CHARS, QUOTE_CHARS, BadInput, quote
from bench.core.params import Param
from bench.core.paths import workloads_dir
from bench.core.plugins import KINDS, workload_params

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib



# The core keys and every engine's own options (each engine module declares its OPTIONS).
PARAMS: dict[str, Param] = workload_params()
MATRIX_KEYS: tuple[str, ...] = tuple(k for k, p in PARAMS.items() if p.matrix)
META_KEYS = {"name", "description", "kind", "claims", "params", "quick", "gpu"}


@dataclass
class Workload:
    """A validated workload: metadata plus parameter values (lists for matrix keys)."""

    name: str
    description: str
    kind: str
    claims: list[str]
    params: dict[str, Any]
    quick: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    explicit: set[str] = field(default_factory=set)  # keys the file or the user set

    def to_dict(self) -> dict[str, Any]:
        """Plain data for run.json."""
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "claims": self.claims,
            "params": self.params,
            "source": self.source,
        }


@dataclass(frozen=True)
class Case:
    """One point of the matrix: scalar values for every parameter."""

    index: int
    params: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def label(self) -> str:
        """Short human label, the same words every table uses: model dtype bs= in= out= and what sets it apart."""

        return case_label(self.params, workload=False)


def available_workloads() -> dict[str, Path]:
    """Bundled workload names and their files."""
    return {p.stem: p for p in sorted(workloads_dir().glob("*.toml"))}


def coerce(key: str, value: Any, where: str) -> Any:
    """Check one value (or list of values) against PARAMS[key]; return it in the right type."""
    if key not in PARAMS:
        raise BadInput(f"{where}: unknown key {quote(key)}" + (did_you_mean(key, PARAMS) or
                                                                "; bench run --help and README list the keys"))
    spec = PARAMS[key]
    if spec.as_text and not isinstance(value, bool) and isinstance(value, int | list):
        value = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if isinstance(value, list):
        if not spec.matrix:
            raise BadInput(f"{where}: '{key}' takes one value, not a list")
        if not value:
            raise BadInput(f"{where}: '{key}' is an empty list")
        return [_coerce_scalar(key, v, spec, where) for v in value]
    scalar = _coerce_scalar(key, value, spec, where)
    return [scalar] if spec.matrix else scalar  # a matrix value is always a list once loaded


def _coerce_scalar(key: str, value: Any, spec: Param, where: str) -> Any:
    expected = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[spec.type]
    ok = (
        (spec.type is bool and isinstance(value, bool))
        or (spec.type is int and isinstance(value, int) and not isinstance(value, bool))
        or (spec.type is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (spec.type is str and isinstance(value, str))
    )
    if not ok:
        raise BadInput(f"{where}: '{key}' must be {expected}{' or a list of them' if spec.matrix else ''}, "
                       f"got {quote(value)}")
    if spec.type is str and len(value) > MAX_VALUE_CHARS:
        raise BadInput(f"{where}: '{key}' is {len(value)} characters long (at most {MAX_VALUE_CHARS}): {quote(value)}")
    if spec.type is float:
        value = float(value)
        if not math.isfinite(value):  # nan compares false with everything: it would pass every bound
            raise BadInput(f"{where}: '{key}' must be a finite number, got {quote(value)}")
    if spec.type is int and not -MAX_INT <= value <= MAX_INT:
        raise BadInput(f"{where}: '{key}' is out of range ({quote(value)}; at most {MAX_INT})")
    if spec.choices and value not in spec.choices:
        raise BadInput(f"{where}: '{key}' must be one of {', '.join(spec.choices)}, got {quote(value)}"
                       + did_you_mean(str(value), spec.choices))
    if spec.minimum is not None and not value >= spec.minimum:
        raise BadInput(f"{where}: '{key}' must be >= {spec.minimum:g}, got {quote(value)}")
    if spec.maximum is not None and not value <= spec.maximum:
        raise BadInput(f"{where}: '{key}' must be <= {spec.maximum:g}, got {quote(value)} (beyond what it can mean)")
    return value


def did_you_mean(word: str, known: Any) -> str:
    """'; did you mean X?' for the closest known names (difflib), else ''."""
    import difflib

    close = difflib.get_close_matches(word[:QUOTE_CHARS], list(known), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else \
        (f" (known: {', '.join(known)})" if len(known) <= 12 else "")


MAX_INT = 2**53  # exact in JSON and floats, and within what torch and the engines take (a seed, a length)

# Pairs of keys that must be ordered: (smaller, larger).
ORDERED = (("min_reps", "max_reps"), ("min_seconds", "max_seconds"))


def check_consistent(params: dict[str, Any], where: str) -> None:
    """Keys that must agree with each other (every value is already valid on its own)."""
    for low, high in ORDERED:
        if params[low] > params[high]:
            raise BadInput(f"{where}: {low}={params[low]:g} is larger than {high}={params[high]:g}")


def validate_params(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise BadInput(f"{where}: must be a table of parameters")
    return {k: coerce(k, v, f"{where}") for k, v in table.items()}


def load_workload(name_or_path: str) -> Workload:
    """Load a bundled workload by name, or a TOML file by path, and validate it."""
    path, data = read_workload_file(name_or_path)
    if data.get("kind") == "suite":
        raise BadInput(f"{path}: a suite of workloads, not one workload (run it with bench run --workload "
                       f"{name_or_path})")
    return workload_from(path, data)


def read_workload_file(name_or_path: str) -> tuple[Path, dict[str, Any]]:
    """The workload file's path and its TOML content; BadInput when it cannot be found or read."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" or path.is_file()):  # a folder named like a workload (./claims) is not one
        bundled = available_workloads()
        if name_or_path not in bundled:
            raise BadInput(f"unknown workload {quote(name_or_path)}" + (did_you_mean(name_or_path, bundled) or
                           f" (bundled: {', '.join(bundled)}; or give a .toml file)"))
        path = bundled[name_or_path]
    if not path.is_file():
        raise BadInput(f"workload file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: malformed TOML: {exc}") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise BadInput(f"{path}: a value is out of range: {str(exc)[:QUOTE_CHARS]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from None

    if not data:
        raise BadInput(f"{path}: empty workload file (give at least [params]; see workloads/*.toml)")
    return path, data


def workload_from(path: Path, data: dict[str, Any]) -> Workload:
    """Validate a workload file's content."""
    unknown = set(data) - META_KEYS
    if unknown:
        raise BadInput(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                       f"(parameters go in [params]; allowed: {', '.join(sorted(META_KEYS))})")
    kind = data.get("kind", "generate")
    if kind not in KINDS:
        raise BadInput(f"{path}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    claims = data.get("claims", [])
    if not (isinstance(claims, list) and all(isinstance(c, str) for c in claims)):
        raise BadInput(f"{path}: claims must be a list of claim ids")
    params = {k: [p.default] if p.matrix else p.default for k, p in PARAMS.items()}
    given = validate_params(data.get("params", {}), f"{path} [params]")
    params.update(given)
    return Workload(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        kind=kind,
        claims=claims,
        params=params,
        quick=validate_params(data.get("quick", {}), f"{path} [quick]"),
        gpu=validate_params(data.get("gpu", {}), f"{path} [gpu]"),
        source=str(path),
        explicit=set(given),
    )


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one ``--set KEY=VALUE``; VALUE is a TOML value, a comma list, or a bare string."""
    shown = item if len(item) <= QUOTE_CHARS else f"{item[:QUOTE_CHARS]}..."
    if "=" not in item:
        raise BadInput(f"--set {shown}: expected KEY=VALUE")
    key, raw = (s.strip() for s in item.split("=", 1))
    if key not in PARAMS:
        raise BadInput(f"--set: unknown key {quote(key)}" + (did_you_mean(key, PARAMS) or
                                                             "; README's Workloads section lists the keys"))
    if raw == "":
        raise BadInput(f"--set {shown}: empty value")
    if len(raw) > MAX_VALUE_CHARS:
        raise BadInput(f"--set {key}: the value is {len(raw)} characters long (at most {MAX_VALUE_CHARS})")
    item = shown
    if raw.startswith("["):
        value: Any = _parse_scalar(raw)
    elif "," in raw:
        value = [_parse_scalar(p.strip()) for p in raw.split(",")]
    else:
        value = _parse_scalar(raw)
    return key, coerce(key, value, f"--set {item}")


def _parse_scalar(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word: a string
    except ValueError:  # digits beyond Python's integer-string limit
        raise BadInput(f"{quote(raw)}: a number beyond what any parameter can mean") from None


def apply_overrides(workload: Workload, overrides: dict[str, Any], quick: bool = False,
                    on_gpu: bool = False) -> Workload:
    """Return the workload with [gpu] (on a GPU), [quick] (if asked) and then --set values applied."""
    params = dict(workload.params)
    if on_gpu:
        params.update(workload.gpu)
    if quick:
        params.update(workload.quick)
    # a matrix key given one value (from code, not the CLI, which validates) is a one-value axis
    params.update({k: [v] if k in MATRIX_KEYS and not isinstance(v, list) else v for k, v in overrides.items()})
    explicit = set(workload.explicit) | set(overrides)
    if on_gpu:
        explicit |= set(workload.gpu)
    if quick:
        explicit |= set(workload.quick)
    check_consistent(params, f"workload {workload.name}")
    return Workload(workload.name, workload.description, workload.kind, workload.claims, params,
                    workload.quick, workload.gpu, workload.source, explicit)


def context_lengths(min_context: int, limit: int) -> list[int]:
    """Doubling input lengths from min_context, ending with the limit itself."""
    lengths = []
    n = min_context
    while n < limit:
        lengths.append(n)
        n *= 2
    if limit >= 1:
        lengths.append(limit)
    return lengths


def expand(workload: Workload,
           input_lengths: Callable[[str, list[int]], list[int]] | None = None) -> list[Case]:
    """Cartesian product of the matrix keys, model-major so each model loads once.

    input_lengths(model, output_lens), when given, replaces the input_len axis per model
    (the long-context scenario derives it from the model's maximum position).
    """
    scalars = {k: v for k, v in workload.params.items() if k not in MATRIX_KEYS}
    cases: list[Case] = []
    seen: set[tuple] = set()
    for model in workload.params["model"]:
        axes = {k: workload.params[k] for k in MATRIX_KEYS if k != "model"}
        if input_lengths is not None:
            axes["input_len"] = input_lengths(model, axes["output_len"])
        for combo in itertools.product(*axes.values()):
            params = dict(scalars, model=model)
            params.update(zip(axes, combo))
            if params["compile"]:
                params["cache"] = "static"  # torch.compile needs fixed shapes
            key = tuple(sorted((k, str(v)) for k, v in params.items()))
            if key not in seen:  # compile forcing the static cache can make two cases equal
                seen.add(key)
                cases.append(Case(len(cases), params))
    return cases

