"""Claims in seeds/claims.toml -> verdicts from measured runs. Reads results; never measures.

A verdict is `holds`, `does not hold`, `inconclusive` (the claimed figure lies inside
the measurement's 95% confidence interval, or cases disagree) or `not measured` (with
the precise reason and the command that would measure it). A measurement counts only
when it meets every condition the claim states: the workloads it may come from, the
model class, the batch size, lengths, the device. Each verdict names the run and case
it came from, the claim's own scope (the hardware and model the article speaks of)
and whether this measurement is on that hardware class or a check of the figure on
the machine measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from bench.analysis.claims import Claim, describe, load_claims
from bench.analysis.cost import usd_per_mtok_owned, usd_per_mtok_rented
from bench.analysis.selection import candidate_rows, real_rows, why_not
from bench.analysis.stats import confidence_interval
from bench.core.caseid import case_label
from bench.core.errors import BadInput
from bench.core.figures import num
from bench.core.noise import doubts
from bench.core.params import CASE_KEYS, CASE_PARAMS
from bench.core.schema import NAN
from bench.hardware.roofline import decode_bound_tok_s, decode_bytes_per_step
from bench.spec.models import resolve_model
from bench.store.runs import Run, ok_rows, with_case_params


@dataclass
class Verdict:
    """What the runs say about one claim."""

    claim: Claim
    verdict: str  # holds | does not hold | inconclusive | not measured
    measured: float = NAN
    ratio: float = NAN
    bound: float = NAN
    conditions: str = ""
    reason: str = ""
    run: str = ""
    interval: tuple[float, float] | None = None
    where: str = ""  # on the claimed hardware, or a check of the figure on the machine measured
    cases: list[str] = field(default_factory=list)


def _target(claim: Claim) -> float:
    return claim.figure * claim.tolerance if claim.comparison.endswith(">=") else claim.figure / claim.tolerance


def _judge(claim: Claim, value: float, bound: float, conditions: str, run: str,
           interval: tuple[float, float] | None = None, where: str = "") -> Verdict:
    target = _target(claim)
    holds = value >= target if claim.comparison == ">=" else value <= target
    ratio = value / claim.figure if claim.figure else NAN
    notes = [] if claim.tolerance == 1.0 else [f"tolerance {claim.tolerance:g}"]
    verdict = "holds" if holds else "does not hold"
    if interval is not None and interval[0] <= target <= interval[1]:
        verdict = "inconclusive"
        notes.insert(0, f"the claimed {target:g} lies inside the 95% interval {num(interval[0])}-{num(interval[1])}"
                        " of the repetitions: more repetitions (min_reps) narrow it")
    return Verdict(claim, verdict, value, ratio, bound, conditions, "; ".join(notes), run, interval, where)


def _where(claim: Claim, device_names: list[str]) -> str:
    """Whether the measurement is on the claimed hardware class, or a check of the claim's figure elsewhere."""
    devices = ", ".join(sorted(set(device_names)))
    if not claim.hardware:
        return f"general claim, measured on {devices}"
    if any(re.search(claim.hardware, d, flags=re.IGNORECASE) for d in device_names):
        return f"on the claimed hardware ({devices})"
    return f"figure checked on {devices}, not the claimed hardware"


# --- verdicts ------------------------------------------------------------------------------


def _fingerprint_memory(run: Run) -> float:
    fp = run.fingerprint()
    device = fp.get("device") or {}
    accel = fp.get("accelerators") or []
    per_card = [a.get("memory_total_gb") for a in accel if a.get("memory_total_gb")]
    if per_card:
        return float(min(per_card))
    if device and str(device.get("torch", "")).startswith("cuda"):
        return float(device.get("memory_total_gb") or NAN)
    return NAN


def _memory_per_card(claim: Claim, runs: list[Run]) -> tuple[float, str, str, str]:
    """The smallest card's memory (the claim is per card), with the whole machine's beside it."""
    for run in runs:
        gb = _fingerprint_memory(run)
        if not math.isnan(gb):
            cards = [float(a["memory_total_gb"]) for a in run.fingerprint().get("accelerators") or []
                     if a.get("memory_total_gb")] or [gb]
            server = f"; this machine: {len(cards)} card(s), {sum(cards):.0f} GB of device memory in all"
            return gb, run.name, f"device={run.device_name}{server}", run.device_name
    return NAN, "", "no accelerator memory in the runs' fingerprints (CPU runs have none)", ""


def _ridge_point(claim: Claim, runs: list[Run]) -> tuple[float, str, str, str]:
    bw = [(r, v) for r in runs for v in ok_rows(r).get("bandwidth_gb_s", pd.Series(dtype=float)).dropna()]
    fl = [(r, v) for r in runs for v in ok_rows(r).get("tflops", pd.Series(dtype=float)).dropna()]
    if not bw or not fl:
        return NAN, "", ("needs a membw and a matmul run on the same device "
                         "(bench run --workload membw; bench run --workload matmul)"), ""
    ridge = max(v for _, v in fl) * 1e12 / (max(v for _, v in bw) * 1e9)
    return ridge, bw[0][0].name, "ridge point = peak FLOP/s / bandwidth; batch-1 decode needs ~1 FLOP/byte", \
        bw[0][0].device_name


# Metrics that are not a results column: each a function of the runs giving (value, run name, text, device),
# or NaN with the reason.
SPECIAL_METRICS: dict[str, Callable[[Claim, list[Run]], tuple[float, str, str, str]]] = {
    "memory_per_card_gb": _memory_per_card,
    "ridge_point": _ridge_point,
}


def verify_claim(claim: Claim, runs: list[Run], price_per_hour: float | None = None,
                 groups: list[list[Run]] | None = None) -> Verdict:
    """One claim against all runs (groups: the runs of each results root given, for ratio claims)."""
    if claim.comparison == "price":
        return _verify_price(claim, runs, price_per_hour)
    if claim.comparison.startswith("ratio"):
        return _verify_ratio(claim, groups if groups and len(groups) > 1 else _by_device(runs))
    if claim.metric in SPECIAL_METRICS:
        value, run_name, text, device = SPECIAL_METRICS[claim.metric](claim, runs)
        if math.isnan(value):
            return Verdict(claim, "not measured", reason=text)
        return _judge(claim, value, NAN, text, run_name, where=_where(claim, [device]))
    best: tuple[float, pd.Series, Run] | None = None
    by_path: dict[str, float] = {}  # the best figure of each engine and decode path, to say which one answered
    candidates = [(float(row[claim.metric]), row, run) for run in runs
                  for rows in [candidate_rows(run, claim)] if claim.metric in rows.columns
                  for _, row in rows[rows[claim.metric].notna()].iterrows()]
    sustained = SUSTAINED.get(claim.metric, "")
    held = [(float(row[sustained]), row, run) for _, row, run in candidates
            if sustained and pd.notna(row.get(sustained))]
    if held:  # a card under steady load answers a claim about one: the soak's sustained figure, not a peak
        candidates = held
    for value, row, run in candidates:
        if best is None or (value > best[0] if claim.comparison == ">=" else value < best[0]):
            best = (value, row, run)
        path = _path(row)
        if path not in by_path or (value > by_path[path] if claim.comparison == ">=" else value < by_path[path]):
            by_path[path] = value
    if best is None:
        return Verdict(claim, "not measured", bound=_bound_unmeasured(claim, runs), reason=why_not(claim, runs),
                       conditions=describe(claim.conditions))
    value, row, run = best
    text = f"case {_case_number(row)}: {case_label(row)}"
    verdict = _judge(claim, value, _bound_for(claim, row), text, run.name,
                     confidence_interval(run, row, claim.metric), _where(claim, [str(row.get("device_name", ""))]))
    if verdict.interval is None and verdict.verdict != "inconclusive":
        verdict.reason = "; ".join(r for r in (verdict.reason, "no interval: one figure per case") if r)
    if len(by_path) > 1:  # the hardware's figure is the fastest software measured on it: say which, and the others
        others = ", ".join(f"{p} {v:.4g}" for p, v in sorted(by_path.items(), key=lambda kv: kv[1],
                                                               reverse=claim.comparison == ">="))
        verdict.reason = "; ".join(r for r in (verdict.reason, f"from the fastest path measured, {_path(row)} "
                                               f"(best per path: {others})") if r)
    warned = doubts(row.get("warnings"))
    if "engine-bound" in warned and verdict.verdict == "does not hold":  # the engine fell short, not the hardware
        verdict.verdict = "inconclusive"
        verdict.reason = "; ".join(r for r in (verdict.reason, "its row is engine-bound (it measured the software "
                                               "more than the hardware): never 'does not hold' from it; measure "
                                               "with --set decode=captured") if r)
    said = output_doubt(row)
    if said == WRONG_OUTPUT:  # a fast wrong answer answers no claim
        verdict.verdict = "inconclusive"
    if said:
        verdict.reason = "; ".join(r for r in (verdict.reason, said) if r)
    if sustained:
        verdict.reason = "; ".join(r for r in (verdict.reason, (
            f"the soak's sustained figure (the last third of a {row.get('measured_seconds', 0):.0f} s hold)" if held
            else "rests on a peak: a few seconds of load (bench run --workload soak holds it for the sustained "
                 "figure)")) if r)
    if warned:  # the figure stands, but the reader should know what the run said about it
        verdict.reason = "; ".join(r for r in (verdict.reason, f"its case warned: {', '.join(warned)}") if r)
    return verdict


WRONG_OUTPUT = "the timed path's output disagrees with the model"
# Claims about a card under steady load: the soak's sustained column answers them where a soak ran.
SUSTAINED = {"power_w_mean": "soak_sustained_power_w"}


def output_doubt(row: pd.Series) -> str:
    """What a verdict must say about its row's output check: WRONG_OUTPUT where it failed, 'output not checked'
    (and why) where a model's row has none, '' where it passed or the row ran no model (membw, matmul)."""
    if "wrong-output" in doubts(row.get("warnings")):
        return WRONG_OUTPUT
    if str(row.get("weights") or "") not in ("random", "pretrained"):
        return ""
    ref, kld = row.get("check_ref"), row.get("check_kld_mean")
    if kld is not None and not pd.isna(kld):
        return ""
    why = str(ref).removeprefix("not checked: ") if isinstance(ref, str) and ref else "a run from before the check"
    return f"output not checked ({why})"


def _path(row: pd.Series) -> str:
    """The software that produced a row: the engine, and the transformers decode path where there is one."""
    engine = str(row.get("engine") or "")
    decode = row.get("decode_path")
    decode = str(decode) if engine == "transformers" and decode is not None and not pd.isna(decode) else ""
    return " ".join(p for p in (engine, decode) if p) or "unknown"


def _case_number(row: pd.Series) -> str:
    case = row.get("case")
    return "?" if case is None or pd.isna(case) else str(int(case))


def _bound_for(claim: Claim, row: pd.Series) -> float:
    """The roofline figure that limits this metric on this hardware, where there is one."""
    bound = row.get("roofline_decode_tok_s", NAN)
    if claim.metric == "decode_tok_s_per_user" and row.get("batch_size"):
        return float(bound) / float(row["batch_size"]) if not pd.isna(bound) else NAN
    if claim.metric == "decode_tok_s":
        return float(bound) if not pd.isna(bound) else NAN
    if claim.metric == "mbu":
        return 1.0
    return NAN


def _bound_unmeasured(claim: Claim, runs: list[Run]) -> float:
    """For a per-user decode claim on a named model: this hardware's bandwidth bound at batch 1, bf16."""

    models = claim.conditions.get("model")
    if claim.metric != "decode_tok_s_per_user" or not models or not runs:
        return NAN
    measured = [v * 1e9 for r in runs for v in ok_rows(r).get("bandwidth_gb_s", pd.Series(dtype=float)).dropna()]
    ceilings = [(r.meta.get("ceiling") or {}).get("bandwidth_bytes_s") for r in runs]
    ceilings = [c for c in ceilings if isinstance(c, int | float) and math.isfinite(c) and c > 0]
    bandwidth = max(measured) if measured else (ceilings[0] if ceilings else NAN)
    if math.isnan(bandwidth):
        return NAN
    name = models[0] if isinstance(models, list) else models
    try:
        shape = resolve_model(name).shape
    except BadInput:
        return NAN
    return decode_bound_tok_s(decode_bytes_per_step(shape, 2, 1, 0), 1, bandwidth)


# The same case on another machine: its identity, except the workload and engine it came from.
RATIO_KEYS = [k for k in (*CASE_KEYS, *CASE_PARAMS) if k not in ("workload", "engine")]


def _by_device(runs: list[Run]) -> list[list[Run]]:
    """Runs given one by one: the first run's device is the claimed system, each other device a reference."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.device_name, []).append(run)
    return list(groups.values())


def _verify_ratio(claim: Claim, groups: list[list[Run]]) -> Verdict:
    """The claimed system (first group) over each reference (other groups), case by case on shared cases."""
    how = "a comparison between machines: bench verify CLAIMED_ROOT REFERENCE_ROOT (the claimed system first)"
    if len(groups) < 2:
        runs = groups[0] if groups else []
        return Verdict(claim, "not measured", reason=how + (f"; all runs are on {runs[0].device_name}" if runs else ""))
    claimed = [with_case_params(r, candidate_rows(r, claim)).assign(_run=r.name) for r in groups[0]]
    claimed_rows = pd.concat(claimed, ignore_index=True) if claimed else pd.DataFrame()
    claimed_device = ", ".join(sorted({r.device_name for r in groups[0]}))
    cases: list[tuple[float, str, str]] = []
    for reference in groups[1:]:
        ref = [with_case_params(r, candidate_rows(r, claim)).assign(_run=r.name) for r in reference]
        ref_rows = pd.concat(ref, ignore_index=True) if ref else pd.DataFrame()
        if claimed_rows.empty or ref_rows.empty or claim.metric not in claimed_rows.columns \
                or claim.metric not in ref_rows.columns:
            continue
        keys = [k for k in RATIO_KEYS if k in claimed_rows.columns and k in ref_rows.columns]
        merged = claimed_rows.merge(ref_rows, on=keys, suffixes=("", "_ref"))
        merged = merged[merged[claim.metric].notna() & merged[f"{claim.metric}_ref"].notna()]
        for _, row in merged.iterrows():
            ratio = float(row[claim.metric]) / float(row[f"{claim.metric}_ref"])
            label = f"{case_label(row, workload=False)}: {ratio:.3g}x ({row['device_name']} vs {row['device_name_ref']})"
            cases.append((ratio, label, row["_run"]))
    if not cases:
        return Verdict(claim, "not measured", conditions=describe(claim.conditions),
                       reason=f"no shared case with {claim.metric} measured on both systems ({how})")
    target = claim.figure
    held = [(r >= target) if claim.comparison == "ratio>=" else (r <= target) for r, _, _ in cases]
    ratios = [r for r, _, _ in cases]
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    verdict = "holds" if all(held) else "does not hold" if not any(held) else "inconclusive"
    reason = f"claimed system: {claimed_device} (first root); holds on {sum(held)} of {len(held)} shared case(s)"
    if len(ratios) > 1:
        reason += f", ratios {min(ratios):.3g}-{max(ratios):.3g}"
    where = _where(claim, sorted({r.device_name for r in groups[0]}))
    return Verdict(claim, verdict, geo, geo / claim.figure, NAN, "; ".join(label for _, label, _ in cases[:3]),
                   reason, cases[0][2], None, where, [label for _, label, _ in cases])


def _verify_price(claim: Claim, runs: list[Run], price_per_hour: float | None) -> Verdict:
    """A price is an input: show the US$ per million tokens it implies at the best measured throughput."""
    price = dict(claim.price or {})
    if price_per_hour is not None and "per_hour" in price:
        price["per_hour"] = price_per_hour
    rows = [(r, row) for r in runs for _, row in real_rows(ok_rows(r)).iterrows()
            if not pd.isna(row.get("output_tok_s", NAN))]
    if not rows:
        return Verdict(claim, "not measured", reason="a price claim: needs a throughput run of a real model to price")
    run, row = max(rows, key=lambda x: x[1]["output_tok_s"])
    tok_s = float(row["output_tok_s"])
    if "per_hour" in price:
        usd = usd_per_mtok_rented(tok_s, price["per_hour"])
        how = f"at US${price['per_hour']:g}/hour"
    else:
        usd = usd_per_mtok_owned(tok_s, price["purchase"], price["lifetime_years"], price["utilisation"],
                                 float(row.get("power_w_mean", NAN)) * float(row.get("device_count", 1) or 1),
                                 price["usd_per_kwh"])
        how = (f"US${price['purchase']:,.0f} over {price['lifetime_years']:g} years at "
               f"{price['utilisation']:.0%} use, US${price['usd_per_kwh']:g}/kWh")
        if math.isnan(usd):
            return Verdict(claim, "not measured", conditions=how, run=run.name,
                           reason=f"owning cost needs measured power ({row.get('energy_source', '')})")
    text = f"{row['model']} bs={row['batch_size']} at {tok_s:.1f} tok/s on {row['device_name']}; {how}"
    return Verdict(claim, "not measured", usd, NAN, NAN, text,
                   reason=f"a price, not a measurement: US${usd:.3g} per million output tokens", run=run.name)


def verify(runs: list[Run], price_per_hour: float | None = None, claims: list[Claim] | None = None,
           groups: list[list[Run]] | None = None) -> list[Verdict]:
    """Every claim's verdict. groups: the runs of each root or run given, in order (the first is the
    claimed system for the cross-machine ratio claims)."""
    return [verify_claim(c, runs, price_per_hour, groups) for c in (claims or load_claims())]
