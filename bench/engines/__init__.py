"""Engine registry: name -> class, importing an engine's heavy dependencies only when used."""

from __future__ import annotations

import importlib

from bench.engines.base import Engine, EngineUnavailable, LoadOptions
from bench.errors import BadInput

# name -> "module:Class"; modules are imported lazily so a missing optional
# dependency only matters to the cases that use that engine.
ENGINES: dict[str, str] = {
    "transformers": "bench.engines.transformers_engine:TransformersEngine",
    "vllm": "bench.engines.vllm_engine:VllmEngine",
    "openai": "bench.engines.openai_engine:OpenAIEngine",
}


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


__all__ = ["Engine", "EngineUnavailable", "LoadOptions", "engine_names", "get_engine"]
