"""What physics allows on hardware you do not have: bounds on paper from a datasheet and a model's shape, before
anyone runs anything (`bench whatif`, `bench verify --what-if`). Pure: a card's figures and a case in, bounds out,
each with the arithmetic and the datasheet line it came from, or empty with the reason.

The model of a decode step is the roofline's (bench/hardware/roofline.py): every weight a batch touches is read
once and every sequence's KV cache once, so tok/s <= bandwidth / bytes per step; a prefill is at least its FLOPs
over the tensor peak and at least one read of the weights. Memory counts the weights and the KV cache only (no
activations, no runtime): a "fits" here is necessary, not sufficient.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

from bench.analysis.claims import Claim
from bench.core.errors import BadInput
from bench.core.schema import NAN
from bench.hardware.roofline import DATASHEET, GB, TB, TFLOP, Peak, decode_bytes_per_step, prefill_flops
from bench.spec.models import ModelShape, resolve_model

BYTES_PER_PARAM = {"bfloat16": 2.0, "float16": 2.0, "float32": 4.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True)
class Case:
    """What is asked of the hardware: the model's shape, its weights' bytes per parameter, the KV cache's bytes
    per element, the batch, the lengths and the cards."""

    model: str
    shape: ModelShape
    weight_bytes_per_param: float
    kv_bytes_per_element: int
    batch: int
    input_len: int
    output_len: int
    cards: int = 1


@dataclass(frozen=True)
class Bound:
    """One figure on paper: its value (NaN: unknown), unit, the arithmetic, and the source or why it is empty."""

    name: str
    value: float
    unit: str
    how: str

    @property
    def known(self) -> bool:
        return not math.isnan(self.value)


def card_names() -> list[str]:
    """Every card the datasheet table names."""
    return [peak.name for _, peak in DATASHEET]


def find_card(name: str) -> Peak:
    """The datasheet entry a user names ('H100 SXM', 'h100-sxm', 'MI300X'), or BadInput with a did-you-mean."""
    def norm(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    wanted = norm(name)
    for _, peak in DATASHEET:
        if norm(peak.name) == wanted:
            return peak
    starts = [peak for _, peak in DATASHEET if norm(peak.name).startswith(wanted)] if wanted else []
    if len(starts) == 1:
        return starts[0]
    close = difflib.get_close_matches(name, card_names(), n=3, cutoff=0.4) or [p.name for p in starts[:3]]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise BadInput(f"no card named {name!r} in the datasheet table{hint} (bench whatif --list-cards names them; "
                   "or give --bandwidth-gb-s, --tflops, --memory-gb, --power-w)")


def custom_card(base: Peak | None, bandwidth_gb_s: float | None, tflops: float | None, memory_gb: float | None,
                power_w: float | None) -> Peak:
    """A card from figures on the command line, over a datasheet entry's (or none): each given figure replaces
    the entry's and the source says so."""
    given = [f"{k} {v:g}" for k, v in (("bandwidth GB/s", bandwidth_gb_s), ("TFLOP/s", tflops),
                                        ("memory GB", memory_gb), ("board W", power_w)) if v is not None]
    for value in (bandwidth_gb_s, tflops, memory_gb, power_w):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise BadInput(f"a card's figure must be a positive number, got {value}")
    if base is None and not given:
        raise BadInput("name a card (bench whatif H100-SXM ...) or give its figures (--bandwidth-gb-s ...)")
    base = base or Peak("your card", NAN, NAN, "", sure="given")
    return Peak(base.name if base.source else "your card",
                bandwidth_gb_s * 1e9 if bandwidth_gb_s is not None else base.bandwidth,
                tflops * TFLOP if tflops is not None else base.flops16,
                "; ".join(s for s in (base.source, f"given: {', '.join(given)}" if given else "") if s),
                memory_gb * GB if memory_gb is not None else base.memory,
                power_w if power_w is not None else base.power_w,
                "given" if given else base.sure)


def _missing(card: Peak, what: str) -> str:
    return f"unknown: {card.name} has no {what} in the datasheet table ({card.source or 'none given'})"


def bounds(card: Peak, case: Case) -> list[Bound]:
    """The paper bounds of `case` on `case.cards` of `card`: decode tok/s per user, per card and in all, prefill
    tok/s, TTFT and TPOT floors, the largest batch and longest context that fit, the cards needed, J/token at the
    board's power limit."""
    n, shape, b = case.cards, case.shape, case.batch
    src = f"{card.name}, {card.source}" + ("" if card.sure == "datasheet" else f" [{card.sure}]")
    weights = shape.params * case.weight_bytes_per_param
    kv_token = shape.kv_bytes_per_token(case.kv_bytes_per_element)
    context = case.input_len + case.output_len / 2  # the mean context of a decode step
    step = decode_bytes_per_step(shape, case.weight_bytes_per_param, b, context, case.kv_bytes_per_element)
    bw, flops, mem, watts = n * card.bandwidth, n * card.flops16, n * card.memory, n * card.power_w
    cards = f" x {n} cards" if n > 1 else ""
    out: list[Bound] = []

    if math.isnan(card.bandwidth):
        for name, unit in (("decode tok/s per user", "tok/s"), ("decode tok/s per card", "tok/s"),
                           ("decode tok/s in all", "tok/s"), ("TPOT floor", "ms")):
            out.append(Bound(name, NAN, unit, _missing(card, "memory bandwidth")))
    else:
        per_user = bw / step
        how = (f"{card.bandwidth / TB:g} TB/s{cards} / {step / GB:.3g} GB a step (weights {weights / GB:.3g} GB "
               f"+ KV of {b} x {context:g} tokens) ({src})")
        if not math.isnan(card.memory) and weights + b * (case.input_len + case.output_len) * kv_token > mem:
            how += f"; the weights and KV do not fit {n} card(s): the bound assumes they did"
        out += [Bound("decode tok/s per user", per_user, "tok/s", how),
                Bound("decode tok/s per card", per_user * b / n, "tok/s", f"{b} user(s) x per user / {n} card(s)"),
                Bound("decode tok/s in all", per_user * b, "tok/s", f"{b} user(s) x per user"),
                Bound("TPOT floor", 1000 / per_user, "ms", "1 / decode tok/s per user")]
    compute = prefill_flops(shape, b, case.input_len)
    if math.isnan(card.flops16) or math.isnan(card.bandwidth):
        what = "16-bit FLOP/s" if math.isnan(card.flops16) else "memory bandwidth"
        out += [Bound("TTFT floor", NAN, "ms", _missing(card, what)),
                Bound("prefill tok/s", NAN, "tok/s", _missing(card, what))]
    else:
        ttft = max(compute / flops, weights / bw)
        which = "its FLOPs" if compute / flops >= weights / bw else "one read of the weights"
        out += [Bound("TTFT floor", 1000 * ttft, "ms",
                      f"max({compute / 1e12:.3g} TFLOP / {card.flops16 / TFLOP:g} TFLOP/s{cards}, weights / "
                      f"bandwidth): {which} ({src})"),
                Bound("prefill tok/s", b * case.input_len / ttft, "tok/s", f"{b} x {case.input_len} tokens / TTFT floor")]
    if math.isnan(card.memory):
        out += [Bound(name, NAN, unit, _missing(card, "memory capacity")) for name, unit in
                (("largest batch that fits", "requests"), ("longest context that fits", "tokens"),
                 ("cards to hold weights + KV", "cards"))]
    else:
        free = mem - weights
        total = case.input_len + case.output_len
        fits_how = f"({card.memory / GB:g} GB{cards} - weights {weights / GB:.3g} GB)"
        out.append(Bound("largest batch that fits", max(0, math.floor(free / (total * kv_token))) if free > 0 else 0,
                         "requests", f"{fits_how} / ({total} tokens x {kv_token / 1e6:.3g} MB KV a token) ({src})"))
        longest = max(0, math.floor(free / (b * kv_token))) if free > 0 else 0
        out.append(Bound("longest context that fits", longest, "tokens",
                         f"{fits_how} / ({b} sequences x {kv_token / 1e6:.3g} MB a token); the model's own window "
                         f"is {shape.max_position}"))
        need = weights + b * total * kv_token
        out.append(Bound("cards to hold weights + KV", math.ceil(need / card.memory), "cards",
                         f"{need / GB:.3g} GB / {card.memory / GB:g} GB a card (weights and KV only)"))
    decode_all = next(x.value for x in out if x.name == "decode tok/s in all")
    if math.isnan(card.power_w) or math.isnan(decode_all):
        why = _missing(card, "board power") if math.isnan(card.power_w) else "unknown: no decode bound"
        out.append(Bound("J/token at the board's power", NAN, "J/token", why))
    else:
        out.append(Bound("J/token at the board's power", watts / decode_all, "J/token",
                         f"{card.power_w:g} W{cards} / decode tok/s in all: the least energy a token can take at "
                         f"full board power ({src})"))
    return out


@dataclass(frozen=True)
class PaperVerdict:
    """A claim against what a card allows on paper: impossible on paper, possible, or unknown, and why (`text`:
    the arithmetic and its source; `short`: the one clause an 80-column table has room for)."""

    verdict: str  # "impossible on paper" | "possible" | "unknown"
    bound: float
    text: str
    cards: int = 1  # the cards the bound is for (as many as hold the claim's model)

    @property
    def short(self) -> str:
        head = self.text.removeprefix("unknown: ").split(": ")[0].split(" (")[0]
        return head + (f" on {self.cards} cards" if self.cards > 1 else "")


# Which bound answers a claim's metric, and which side of it the claim must sit on: a claim of at least F is
# impossible above an upper bound; a claim of at most F is impossible below a floor.
PAPER_METRICS: dict[str, tuple[str, str]] = {
    "decode_tok_s_per_user": ("decode tok/s per user", "upper"),
    "decode_tok_s": ("decode tok/s in all", "upper"),
    "tpot_ms_p50": ("TPOT floor", "floor"),
    "itl_ms_p99": ("TPOT floor", "floor"),  # a gap between tokens is at least a step
    "input_len": ("longest context that fits", "upper"),
}
DEFAULT_MODEL = "llama-3.1-8b"  # a claim that names no model: a real 8B model, what most of the articles run


ShapeOf = Callable[[str], ModelShape]


def claim_case(claim: Claim, shape_of: ShapeOf, cards: int | None, card: Peak) -> tuple[Case, str]:
    """The case a claim's own conditions describe (its first model, its batch and lengths; otherwise batch 1,
    1024 in, 256 out), on `cards` cards or, where not given, as many as hold its weights and KV cache."""
    cond = claim.conditions
    models = cond.get("model")
    model = (models[0] if isinstance(models, list) else models) if models else DEFAULT_MODEL
    shape = shape_of(model)
    batch = int(cond.get("batch_size", cond.get("min_batch_size", 1)) or 1)
    input_len = int(cond.get("input_len", cond.get("min_input_len", 1024)))
    output_len = int(cond.get("output_len", cond.get("min_output_len", 256)))
    case = Case(model, shape, 2.0, 2, batch, input_len, output_len, 1)
    if cards is None:
        holds = next(b for b in bounds(card, case) if b.name == "cards to hold weights + KV")
        cards = int(holds.value) if holds.known and holds.value > 1 else 1
    said = f"{model}, batch {batch}, {input_len} in / {output_len} out on {cards} x {card.name}"
    return Case(model, shape, 2.0, 2, batch, input_len, output_len, cards), said


def paper_verdict(claim: Claim, card: Peak, shape_of: ShapeOf, cards: int | None = None) -> PaperVerdict:
    """Whether the claimed figure is physically possible on `card` under the claim's own conditions."""
    metric, comparison, figure = claim.metric, claim.comparison, claim.figure
    if metric == "memory_per_card_gb":
        have = card.memory / GB
        return _against(have, figure, comparison, f"{card.name} has {have:g} GB a card ({card.source})", "memory")
    if metric == "bandwidth_gb_s":
        have = card.bandwidth / 1e9
        return _against(have, figure, comparison, f"{card.name}: {have:g} GB/s ({card.source})", "bandwidth")
    if metric == "power_w_mean" and comparison == ">=":  # a card cannot draw more than its board power
        return _against(card.power_w, figure, comparison, f"{card.name}'s board power {card.power_w:g} W "
                        f"({card.source})", "board power")
    if metric not in PAPER_METRICS or comparison not in (">=", "<="):
        why = "a ratio of two systems" if comparison.startswith("ratio") else \
            "a price" if comparison == "price" else f"{metric} has no bound on paper"
        return PaperVerdict("unknown", NAN, f"unknown: {why}")
    name, side = PAPER_METRICS[metric]
    case, said = claim_case(claim, shape_of, cards, card)
    bound = next(b for b in bounds(card, case) if b.name == name)
    if not bound.known:
        return PaperVerdict("unknown", NAN, bound.how)
    said_verdict = _against(bound.value, figure, comparison, f"{name} {bound.value:,.4g} ({said}: {bound.how})",
                            name, side)
    return PaperVerdict(said_verdict.verdict, said_verdict.bound, said_verdict.text, case.cards)


def _against(bound: float, figure: float, comparison: str, text: str, what: str, side: str = "upper"
             ) -> PaperVerdict:
    """A claimed figure against a bound: past an upper bound (a claim of at least it) or under a floor (a claim
    of at most it) is impossible on paper, by how much; otherwise possible, with the headroom."""
    if math.isnan(bound):
        return PaperVerdict("unknown", NAN, f"unknown: no {what} figure for this card")
    if comparison == ">=" and side == "upper":
        if figure > bound:
            return PaperVerdict("impossible on paper", bound, f"the claim is {figure / bound:.3g}x the bound: {text}")
        return PaperVerdict("possible", bound, f"headroom {bound / figure:.3g}x: {text}")
    if comparison == "<=" and side == "floor":
        if figure < bound:
            return PaperVerdict("impossible on paper", bound, f"the claim is {bound / figure:.3g}x under the floor: "
                                f"{text}")
        return PaperVerdict("possible", bound, f"headroom {figure / bound:.3g}x: {text}")
    return PaperVerdict("unknown", NAN, f"unknown: a claim of {comparison} {figure:g} is not bounded by {what}")


def paper_rows(verdicts: list, cards: list[Peak], full: bool = True) -> list[dict[str, str]]:
    """Each verdict's claim beside what each card allows on paper: a row per claim (claim, claimed, measured
    verdict, then per card its paper verdict and why: the whole arithmetic, or with full=False its one clause)."""
    import functools

    shape_of = functools.cache(lambda model: resolve_model(model).shape)
    rows = []
    for v in verdicts:
        row = {"claim": v.claim.id, "claimed": f"{v.claim.comparison} {v.claim.figure:g} {v.claim.unit}",
               "measured verdict": v.verdict}
        for card in cards:
            said = paper_verdict(v.claim, card, shape_of)
            row[f"on paper: {card.name}"] = said.verdict
            row[f"why ({card.name})"] = said.text if full else said.short
        rows.append(row)
    return rows
