"""Engine registry: name -> class, importing an engine's heavy dependencies only when used."""

from __future__ import annotations

import importlib
from typing import Any

from bench.engines.base import Engine, EngineUnavailable, LoadOptions
from bench.errors import BadInput

# name -> "module:Class"; modules are imported lazily so a missing optional
# dependency only matters to the cases that use that engine.
ENGINES: dict[str, str] = {
    "transformers": "bench.engines.transformers_engine:TransformersEngine",
    "vllm": "bench.engines.vllm_engine:VllmEngine",
    "openai": "bench.engines.openai_engine:OpenAIEngine",
    "simulated": "bench.engines.simulated:SimulatedEngine",  # deterministic timing model, for tests
}


# What decides a (re)load for every engine; each engine's own options marked reload=True are added.
LOAD_KEYS = ("model", "engine", "dtype", "compile", "cache", "seed")


def load_key(params: dict[str, Any]) -> tuple:
    """Two cases with the same key run on the same loaded model."""
    from bench.workload import PARAMS

    own = [k for k, p in PARAMS.items() if p.engine == params["engine"] and p.reload]
    return tuple(params[k] for k in (*LOAD_KEYS, *own))


def device_count(params: dict[str, Any]) -> int:
    """Devices a case uses: the product of its engine's parallelism options (1 without any)."""
    from bench.workload import PARAMS

    count = 1
    for k, p in PARAMS.items():
        if p.engine == params["engine"] and p.devices:
            count *= int(params[k])
    return count


def engine_names() -> list[str]:
    """Registered engine names."""
    return list(ENGINES)


def get_engine(name: str) -> Engine:
    """A fresh engine instance; BadInput for an unknown name, EngineUnavailable if it cannot run here."""
    if name not in ENGINES:
        raise BadInput(f"unknown engine '{name}' (known: {', '.join(ENGINES)})")
    module_name, cls_name = ENGINES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineUnavailable(f"engine '{name}' cannot be imported: {exc}") from None
    except EngineUnavailable:
        raise
    return getattr(module, cls_name)()


__all__ = ["Engine", "EngineUnavailable", "LoadOptions", "device_count", "engine_names", "get_engine", "load_key"]
