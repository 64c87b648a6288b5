"""Engine registry: name -> class, and the workload keys each engine declares for itself.

Engine modules are light to import (an engine's heavy dependency is imported when
the engine is created), so the workload loader can read every engine's OPTIONS and
a missing optional dependency only matters to the cases that use that engine.
Adding an engine is one module (a class, and OPTIONS if it has settings) plus one line here.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from bench.core.errors import BadInput
from bench.core.params import Param

ENGINES: dict[str, str] = {
    "transformers": "bench.engines.transformers_engine:TransformersEngine",
    "vllm": "bench.engines.vllm_engine:VllmEngine",
    "openai": "bench.engines.openai_engine:OpenAIEngine",
    "simulated": "bench.engines.simulated:SimulatedEngine",  # deterministic timing model, for tests
}


def _module(name: str) -> Any:
    return importlib.import_module(ENGINES[name].split(":")[0])


def engine_options() -> dict[str, Param]:
    """Every engine's own workload keys, each marked with the engine that reads it."""
    options: dict[str, Param] = {}
    for name in ENGINES:
        for key, param in getattr(_module(name), "OPTIONS", {}).items():
            if key in options:
                raise RuntimeError(f"engine option {key!r} is declared twice")
            options[key] = dataclasses.replace(param, engine=name)
    return options


def engine_class(name: str) -> Any:
    """The engine's class (importing nothing heavy); BadInput for an unknown name."""
    if name not in ENGINES:
        raise BadInput(f"unknown engine '{name}' (known: {', '.join(ENGINES)})")
    return getattr(_module(name), ENGINES[name].split(":")[1])
