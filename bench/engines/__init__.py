"""Engines: the interface, and what decides a reload or a device count (their table is bench.core.plugins)."""

from __future__ import annotations

from typing import Any

import torch

from bench.core.params import LOAD_FIELDS
from bench.core.plugins import ENGINES, engine_class, workload_params
from bench.engines.base import Engine, EngineUnavailable, LoadOptions
from bench.hardware.placement import card_count


def load_key(params: dict[str, Any]) -> tuple:
    """Two cases with the same key run on the same loaded model: every parameter declared reload=True
    (the core ones and the case's engine's own)."""
    return tuple(params[k] for k, p in workload_params().items() if p.reload and p.engine in ("", params["engine"]))


def load_options(params: dict[str, Any], dtype: torch.dtype, prefix_caching: bool = False) -> LoadOptions:
    """The one channel from a case to its engine: the core load fields, the resolved dtype, whether the
    scenario wants a prefix cache, and the engine's own declared options."""
    return LoadOptions(dtype=dtype, prefix_caching=prefix_caching, engine=own_options(params),
                       **{k: params[k] for k in LOAD_FIELDS})


def own_options(params: dict[str, Any]) -> dict[str, Any]:
    """The case's engine's own declared options (request_rate, tensor_parallel_size, ...)."""
    return {k: params[k] for k, p in workload_params().items() if p.engine == params["engine"]}


def device_count(params: dict[str, Any]) -> int:
    """Devices a case uses: the product of its engine's parallelism options (1 without any)."""
    count = 1
    for k, p in workload_params().items():
        if p.engine == params["engine"] and p.devices:
            value = params.get(k, p.default)
            count *= card_count(value) if isinstance(value, str) else int(value)
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
           "get_engine", "load_key", "load_options", "own_options"]
