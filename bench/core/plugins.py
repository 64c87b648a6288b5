"""Every plug-in in one table: engines, workload kinds (scenarios) and telemetry backends, each named
"module:Class" and imported only when asked for (a plug-in's heavy dependency is imported when it is created).

Adding an engine is its module (a class, and OPTIONS if it has settings) plus one line here. A workload kind is
its scenario module plus its entry in bench/core/kinds.py. A telemetry backend is its module alone: a class in
bench/telemetry/ that declares its own `name` and `probe_rank` is found there (`backends()`), so a vendor's
tool is its module and its test fixtures.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
from pathlib import Path
from typing import Any

from bench.core import kinds
from bench.core.errors import BadInput
from bench.core.params import CORE_PARAMS, Param

ENGINES: dict[str, str] = {
    "transformers": "bench.engines.transformers_engine:TransformersEngine",
    "vllm": "bench.engines.vllm_engine:VllmEngine",
    "openai": "bench.engines.openai_engine:OpenAIEngine",
    "simulated": "bench.engines.simulated:SimulatedEngine",  # deterministic timing model, for tests
}

# Workload kinds: a workload file's `kind` -> its scenario class (declared with the kind's own keys and
# columns in bench/core/kinds.py).
SCENARIOS: dict[str, str] = {name: kind.scenario for name, kind in kinds.KINDS.items()}
KINDS: tuple[str, ...] = tuple(SCENARIOS)

TELEMETRY_PACKAGE = "bench.telemetry"
ENV_BACKEND = "CLAIMBENCH_TELEMETRY"  # a backend's name: use it, and only it (a card torch cannot use yet)


def load(target: str) -> Any:
    """The class a "module:Class" entry names (its module imported now)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def engine_options() -> dict[str, Param]:
    """Every engine's own workload keys, each marked with the engine that reads it."""
    options: dict[str, Param] = {}
    for name, target in ENGINES.items():
        for key, param in getattr(importlib.import_module(target.partition(":")[0]), "OPTIONS", {}).items():
            if key in options:
                raise RuntimeError(f"engine option {key!r} is declared twice")
            options[key] = dataclasses.replace(param, engine=name)
    return options


@functools.cache
def workload_params() -> dict[str, Param]:
    """Every key a workload may set: every kind's, each kind's own, and each engine's own options."""
    return {**CORE_PARAMS, **engine_options()}


def engine_class(name: str) -> Any:
    """The engine's class (importing nothing heavy); BadInput for an unknown name."""
    if name not in ENGINES:
        raise BadInput(f"unknown engine '{name}' (known: {', '.join(ENGINES)})")
    return load(ENGINES[name])


def scenario_class(kind: str) -> Any:
    """The scenario class of a workload kind."""
    return load(SCENARIOS[kind])


@functools.cache
def backends() -> dict[str, str]:
    """Every telemetry backend, name -> "module:Class", in the order the probe tries them (lowest probe_rank
    first, the CPU last). Found by reading the modules of bench/telemetry, not importing them: listing the
    backends loads no vendor library, and a module is imported only when its backend is asked for."""
    found: dict[str, tuple[int, str]] = {}
    for folder in importlib.import_module(TELEMETRY_PACKAGE).__path__:  # the package alone: its __init__ is empty
        for path in sorted(Path(folder).glob("*.py")):
            for name, rank, cls in _declared_backends(path.read_text(encoding="utf-8")):
                if name in found:
                    raise RuntimeError(f"telemetry backend {name!r} is declared twice ({found[name][1]}, {path})")
                found[name] = (rank, f"{TELEMETRY_PACKAGE}.{path.stem}:{cls}")
    return {name: target for name, (_, target) in sorted(found.items(), key=lambda item: (item[1][0], item[0]))}


def _declared_backends(source: str) -> list[tuple[str, int, str]]:
    """(name, probe_rank, class) for each class in a module's source whose own body sets both as literals."""
    declared = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        values: dict[str, Any] = {}
        for statement in node.body:
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target = statement.targets[0]
            elif isinstance(statement, ast.AnnAssign):
                target = statement.target
            else:
                continue
            if isinstance(target, ast.Name) and isinstance(statement.value, ast.Constant):
                values[target.id] = statement.value.value
        if isinstance(values.get("name"), str) and isinstance(values.get("probe_rank"), int):
            declared.append((values["name"], values["probe_rank"], node.name))
    return declared


def backend_class(name: str) -> Any:
    """The telemetry backend's class (its library is imported only when it is constructed)."""
    return load(backends()[name])
