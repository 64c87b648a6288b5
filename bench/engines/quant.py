"""Weight-only quantization of a loaded transformers model with torchao, and the bytes its weights take.

int8: torchao's Int8WeightOnlyConfig on every device. int4: Int4WeightOnlyConfig (group 128) in
tinygemm's tile-packed format on CUDA (the default plain format needs the mslk package; not yet run on a
card); on a CPU, where torchao 0.18's int4 formats all need CUDA or mslk, IntxWeightOnlyConfig with
int4 values in groups of 32 (unpacked into int8 storage). The output projection (lm_head) stays in
the model's dtype, as in transformers' own torchao integration. A path torchao cannot take here is
an EngineUnavailable with the reason: its cases become skipped rows.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from bench.core.errors import BadInput, first_line
from bench.engines.base import EngineUnavailable

INSTALL = "pip install 'claimbench[quant]' (torchao)"


def check_available(quant: str) -> None:
    """BadInput when quantization is asked for and torchao is not installed."""
    if quant == "none":
        return
    try:
        _import_torchao()
    except ImportError:
        raise BadInput(f"quant={quant} needs torchao: {INSTALL}") from None


def _import_torchao() -> Any:
    # torchao logs a line per CUDA-only extension it cannot load on a CPU machine: not our user's problem.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    import torchao

    return torchao


def quantize(model: Any, quant: str, device_type: str) -> None:
    """Quantize the model's linear layers' weights in place (all but lm_head)."""
    if quant == "none":
        return
    import torch

    try:
        torchao = _import_torchao()
    except ImportError:
        raise EngineUnavailable(f"quant={quant} needs torchao: {INSTALL}") from None
    from torchao.quantization import (
        Int4WeightOnlyConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        quantize_,
    )
    from torchao.quantization.granularity import PerGroup

    if quant == "int8":
        config: Any = Int8WeightOnlyConfig()
    elif device_type == "cuda":
        # tinygemm's packing: its kernel ships with torch's CUDA build (the default "plain" needs mslk).
        config = Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d")
    else:
        config = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32))

    def linear_but_head(module: Any, fqn: str) -> bool:
        return isinstance(module, torch.nn.Linear) and not fqn.endswith("lm_head")

    try:
        quantize_(model, config, filter_fn=linear_but_head)
    except (ImportError, ValueError, RuntimeError, NotImplementedError, AssertionError) as exc:
        raise EngineUnavailable(f"{quant} weights on {device_type}: torchao {torchao.__version__} cannot "
                                f"({type(config).__name__}: {first_line(exc)})") from None


def storage_note(quant: str, device_type: str) -> str:
    """What a row should say about how its quantized weights are stored."""
    if quant == "int4" and device_type != "cuda":
        return "int4: torchao's CPU path stores int4 values unpacked in int8, so weight bytes match int8's"
    return ""


def tensor_bytes(tensor: Any) -> int:
    """Bytes a tensor holds; a torchao tensor subclass counts its inner tensors (data, scales, zero points)."""
    if hasattr(type(tensor), "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        # Only the inner tensors: a DTensor also names its device mesh (its own shard is what this card holds).
        return sum(tensor_bytes(inner) for name in names if isinstance(inner := getattr(tensor, name), torch.Tensor))
    return tensor.numel() * tensor.element_size()


def weight_bytes(model: Any) -> int:
    """Bytes of the model's parameters as stored (a tied weight counted once)."""
    return sum(tensor_bytes(p.data if hasattr(p, "data") and type(p).__name__ == "Parameter" else p)
               for p in model.parameters())
