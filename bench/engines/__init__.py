"""Engines: the interface, the registry, and what decides a reload or a device count."""

from __future__ import annotations

from typing import Any

from bench.engines.base import Engine, EngineUnavailable, LoadOptions
from bench.engines.registry import ENGINES, engine_class

# What decides a (re)load for every engine; each engine's own options marked reload=True are added.
LOAD_KEYS = ("model", "engine", "dtype", "compile", "cache", "seed", "trust_remote_code", "quant")


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
    cls = engine_class(name)
    try:
        return cls()
    except ImportError as exc:
        raise EngineUnavailable(f"engine '{name}' cannot be imported: {exc}") from None


__all__ = ["ENGINES", "Engine", "EngineUnavailable", "LoadOptions", "device_count", "engine_class", "engine_names",
           "get_engine", "load_key"]
