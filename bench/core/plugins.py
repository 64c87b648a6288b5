"""Every plug-in in one table: engines, workload kinds (scenarios) and telemetry backends, each named
"module:Class" and imported only when asked for (a plug-in's heavy dependency is imported when it is created).

Adding one is its module plus one line here: an engine (a class, and OPTIONS if it has settings), a telemetry
backend (a class that raises from its constructor when its library or card is not there; the probe tries
them in this order). A workload kind is its scenario module plus its entry in bench/core/kinds.py.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
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

BACKENDS: dict[str, str] = {
    "nvml": "bench.telemetry.nvml:NvmlBackend",
    "nvml-compat": "bench.telemetry.nvml:NvmlCompatBackend",  # Iluvatar's libixml.so, or a library named
    "amdsmi": "bench.telemetry.amdsmi_backend:AmdSmiBackend",
    "hy-smi": "bench.telemetry.hygon:HygonBackend",
    "dcmi": "bench.telemetry.dcmi:DcmiBackend",  # Ascend, in-process where CANN's library is present
    "npu-smi": "bench.telemetry.ascend:AscendBackend",  # Ascend, the tool's watch mode otherwise
    "mtml": "bench.telemetry.nvml:MtmlBackend",  # Moore Threads' binding where installed
    "mthreads-gmi": "bench.telemetry.moorethreads:MooreThreadsBackend",
    "cnmon": "bench.telemetry.cambricon:CambriconBackend",
    "xpu-smi-kunlunxin": "bench.telemetry.kunlunxin:KunlunxinBackend",  # Kunlunxin's xpu-smi -m
    "xpu-smi": "bench.telemetry.intel_xpu:IntelXpuBackend",  # Intel's xpu-smi dump
    "mx-smi": "bench.telemetry.metax:MetaxBackend",
    "efsmi": "bench.telemetry.enflame:EnflameBackend",
    "cpu": "bench.telemetry.cpu:CpuBackend",
}
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


def backend_class(name: str) -> Any:
    """The telemetry backend's class (its library is imported only when it is constructed)."""
    return load(BACKENDS[name])
