"""One model over several cards of one machine: which cards, and which layers go on which (a layer split).

`parse_cards` turns `--set cards=...` into card indices and says in one line what is wrong with it;
`layer_split_map` is an accelerate-style device map (module name -> card) that gives each card a
contiguous run of decoder layers in proportion to the memory it has free, the embeddings on the first
card and the final norm and head on the last (on the first where the head shares the embedding's
weights). `place_random_weights` builds a bundled config's random weights straight onto that map, and
accelerate's `dispatch_model` moves activations between cards at the boundaries. A layer split runs one
card at a time: the cards add memory, not bandwidth (the roofline says so).
"""

from __future__ import annotations

import re
from typing import Any

from bench.core.errors import BadInput
from bench.hardware.devices import Device, backend_module, resolve_device, usable_memory_bytes
from bench.spec.models import resolve_model

PLACEMENTS = ("auto", "layer-split", "tp")


def card_count(spec: str) -> int:
    """How many cards a `cards` value names, without looking at the machine ('' is one)."""
    spec = spec.strip()
    if not spec:
        return 1
    if re.fullmatch(r"\d+", spec):
        return max(1, int(spec))
    return len([part for part in spec.split(",") if part.strip()])


def parse_cards(spec: str, first: int, present: int, kind: str) -> list[int]:
    """Card indices for a `cards` value: N (N cards from `first` on) or a list such as '0,2'.
    BadInput for a malformed list, a duplicate, a card that does not exist, or more cards than present."""
    spec = spec.strip()
    if not spec:
        return [first]
    if re.fullmatch(r"\d+", spec):
        count = int(spec)
        if count < 1:
            raise BadInput("cards=0: a model needs at least one card")
        if first + count > present:
            raise BadInput(f"cards={count}: {count} card(s) from {kind}:{first} asked, this machine has {present} "
                           f"{kind} card(s)")
        return list(range(first, first + count))
    parts = [part.strip() for part in spec.split(",")]
    if not all(re.fullmatch(r"\d+", part) for part in parts):
        raise BadInput(f"cards={spec[:60]!r}: use a count (cards=2) or card indices (cards=0,2)")
    indices = [int(part) for part in parts]
    duplicates = sorted({i for i in indices if indices.count(i) > 1})
    if duplicates:
        raise BadInput(f"cards={spec}: card {', '.join(map(str, duplicates))} listed twice")
    missing = [i for i in indices if i >= present]
    if missing:
        raise BadInput(f"cards={spec}: no {kind} card {', '.join(map(str, missing))} (this machine has {present})")
    return indices


def resolve_cards(spec: str, device: Device) -> list[Device]:
    """The Devices a `cards` value names, --device's card first by default (BadInput for cards that are not
    there or listed twice); the CPU is one device."""
    if device.type in ("cpu", "mps"):
        if card_count(spec) > 1:
            raise BadInput(f"cards={spec}: the {device.type.upper()} is one device; more than one card needs an "
                           "accelerator (--device cuda, npu, ...)")
        parse_cards(spec, 0, 1, device.type)  # the value's form (cards=0, -1, abc) is wrong here too
        return [device]
    module = backend_module(device.type)
    indices = parse_cards(spec, device.torch_device.index or 0, module.device_count(), device.type)
    return [device if i == device.torch_device.index else resolve_device(f"{device.type}:{i}") for i in indices]


def tensor_parallel_ranks(spec: str, device: Device) -> list[Device]:
    """One Device per rank of a tensor-parallel group: the cards `cards` names (as resolve_cards), or on a CPU
    cards=N ranks on the host (cpu:0, cpu:1, ...). BadInput for fewer than two, or a card list on a CPU."""
    import os

    import torch

    if device.type == "cpu":
        spec = spec.strip()
        if not re.fullmatch(r"\d+", spec or "1"):
            raise BadInput(f"cards={spec[:60]!r}: on a CPU, placement=tp takes a rank count (cards=2)")
        count = int(spec or 1)
        if count > (os.cpu_count() or 1):
            raise BadInput(f"cards={count}: {count} tensor-parallel ranks on a CPU with {os.cpu_count()} cores")
        ranks = [Device(torch.device("cpu", r), device.name, device.total_memory_bytes) for r in range(count)]
    else:
        ranks = resolve_cards(spec, device)
    if len(ranks) < 2:
        raise BadInput("placement=tp needs two or more cards: --set cards=N (N >= 2) or a list such as cards=0,1")
    return ranks


def check_tensor_parallel_case(params: dict[str, Any]) -> None:
    """A transformers tensor-parallel case the engine can run, said before any work: the cards (BadInput as
    above), a model with a tp plan whose heads the rank count divides, unquantized weights, the decode loop."""

    model = resolve_model(params["model"])
    if not getattr(model.config, "base_model_tp_plan", None):
        raise BadInput(f"placement=tp: transformers has no tensor-parallel plan for {model.name} "
                       f"({type(model.config).__name__}); use placement=layer-split")
    check_tensor_parallel(model.shape.heads, model.shape.kv_heads, card_count(params.get("cards", "")))
    tensor_parallel_ranks(params.get("cards", ""), resolve_device(params["device"]))
    if params.get("quant", "none") != "none":
        raise BadInput(f"placement=tp with quant={params['quant']}: quantized shards are not run; use quant=none")
    if params.get("decode") == "generate":
        raise BadInput("placement=tp runs the decode loop on every rank: use decode=loop or decode=captured")


def check_tensor_parallel(heads: int, kv_heads: int, tp: int) -> None:
    """Tensor parallelism splits attention heads across cards: it must divide them."""
    if tp > 1 and (heads % tp or kv_heads % tp and tp % kv_heads):
        raise BadInput(f"tensor parallelism over {tp} cards (tensor_parallel_size or cards) does not divide the "
                       f"model's {heads} attention heads ({kv_heads} key/value heads); use a divisor of {heads}")


def decoder_layers(model: Any) -> tuple[str, int]:
    """The dotted name of the model's list of decoder layers and its length (the classes it names as
    never to be split, `_no_split_modules`)."""
    import torch

    unsplit = set(getattr(model, "_no_split_modules", None) or ())
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) and \
                (type(module[0]).__name__ in unsplit or not unsplit):
            return name, len(module)
    raise BadInput(f"{type(model).__name__}: no list of decoder layers found to split across cards")


def layer_split_map(model: Any, cards: list[Any], free_bytes: list[float]) -> dict[str, Any]:
    """Module name -> card: layers in contiguous runs, each card's share in proportion to its free memory;
    every other top-level part on the first card, except the final norm and head on the last (on the first
    when the head's weight is the embedding's)."""
    layers_name, n_layers = decoder_layers(model)
    total = sum(free_bytes) or 1.0
    shares = [round(n_layers * f / total) for f in free_bytes]
    shares[-1] = n_layers - sum(shares[:-1])
    while min(shares) < 0:  # rounding took the last card below zero: give it back from the largest
        shares[shares.index(max(shares))] -= 1
        shares[-1] += 1
    device_map: dict[str, Any] = {}
    layer = 0
    for card, share in zip(cards, shares):
        for _ in range(share):
            device_map[f"{layers_name}.{layer}"] = card
            layer += 1
    parent = layers_name.rpartition(".")[0]
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    owners = [parent, ""] if parent else [""]
    for owner in owners:
        base = model.get_submodule(owner) if owner else model
        for child, _module in base.named_children():
            name = f"{owner}.{child}" if owner else child
            if name in (layers_name, parent) or any(k.startswith(name + ".") for k in device_map):
                continue
            last = ("norm" in child or child in ("lm_head", "output", "head")) and not tied
            device_map[name] = cards[-1] if last else cards[0]
    return device_map


def place_random_weights(model: Any, device_map: dict[str, Any]) -> Any:
    """Materialise a model built on the meta device onto its map, then initialise its weights and buffers as
    from_config would (transformers' init_weights), and add accelerate's hooks that move activations."""
    try:
        from accelerate import dispatch_model
    except ImportError:
        raise BadInput("a model over several cards needs accelerate: pip install -e '.[multicard]'") from None
    for name, card in device_map.items():
        model.get_submodule(name).to_empty(device=card)
    model.init_weights()
    return dispatch_model(model, device_map=device_map)


def per_card_gb(readings: dict[str, float]) -> str:
    """'cuda:0=1.20 cuda:1=1.18' from {card: GB}; '' when nothing was read."""
    return " ".join(f"{card}={gb:.2f}" for card, gb in readings.items() if gb == gb)


def weights_cannot_fit(model: str, params: float, quant: str, dtype: Any, cards: list[Device] | None) -> str:
    """Why a model's weights alone cannot be held by the cards a case names (their usable memory summed, the
    host once), or ''. Checked before loading: a host that runs out of memory kills the run, not just the
    case. cards None: the weights are not in this process (a server, a timing model)."""
    import torch

    if not cards:
        return ""
    per_param = {"int8": 1.0, "int4": 0.5}.get(quant, torch.empty((), dtype=dtype).element_size())
    need = params * per_param
    limit = sum(usable_memory_bytes(c) for c in {str(c): c for c in cards}.values())
    if need <= limit:
        return ""
    where = f"{len(cards)} cards" if len(cards) > 1 else str(cards[0])
    return f"does not fit: {model}'s weights alone are {need / 1e9:.1f} GB, {where} can hold {limit / 1e9:.1f} GB; not loaded"
