"""Claims in seeds/claims.toml -> verdicts from measured runs. Reads results; never measures.

A verdict is `holds`, `does not hold` or `not measured` (with why), and always
shows the measured value, the claimed one, the conditions and the roofline
bound of this hardware for the claim's case, so a reader can see whether the
claim is physically possible here at all.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.cost import usd_per_mtok_owned, usd_per_mtok_rented
from bench.errors import BadInput
from bench.paths import seeds_dir
from bench.runs import Run, case_label, ok_rows

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NAN = float("nan")
COMPARISONS = (">=", "<=", "ratio>=", "ratio<=", "price")


@dataclass(frozen=True)
class Claim:
    """One claim as data."""

    id: str
    source: str
    assertion: str
    figure: float
    unit: str
    metric: str
    comparison: str
    workload: str
    conditions: dict[str, Any]
    tolerance: float = 1.0
    price: dict[str, float] | None = None


@dataclass
class Verdict:
    """What the runs say about one claim."""

    claim: Claim
    verdict: str  # holds | does not hold | not measured
    measured: float = NAN
    ratio: float = NAN
    bound: float = NAN
    conditions: str = ""
    reason: str = ""
    run: str = ""


def load_claims(path: Path | None = None) -> list[Claim]:
    """Read and check seeds/claims.toml."""
    path = path or seeds_dir() / "claims.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: cannot read claims: {exc}") from None
    claims = []
    for raw in data.get("claim", []):
        try:
            claim = Claim(**raw)
        except TypeError as exc:
            raise BadInput(f"{path}: claim {raw.get('id', '?')}: {exc}") from None
        if claim.comparison not in COMPARISONS:
            raise BadInput(f"{path}: claim {claim.id}: comparison must be one of {', '.join(COMPARISONS)}")
        _check_claim(claim, path)
        claims.append(claim)
    return claims


SMOKE_TEST_MODELS = ("tiny",)  # measure the harness, never a claim


def _check_claim(claim: Claim, path: Path) -> None:
    """Every field of the type the verdicts rely on (a claims file is read back like any other input)."""
    where = f"{path}: claim {claim.id!r}"
    for name in ("id", "source", "assertion", "unit", "metric", "workload"):
        if not isinstance(getattr(claim, name), str) or not getattr(claim, name):
            raise BadInput(f"{where}: {name} must be a non-empty string")
    for name in ("figure", "tolerance"):
        value = getattr(claim, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise BadInput(f"{where}: {name} must be a finite positive number, got {value!r}")
    if not isinstance(claim.conditions, dict):
        raise BadInput(f"{where}: conditions must be a table")
    if claim.comparison == "price" and not isinstance(claim.price, dict):
        raise BadInput(f"{where}: a price claim needs a price table")


def _matches(df: pd.DataFrame, conditions: dict[str, Any]) -> pd.Series:
    """Rows meeting every condition: equality (or one of a list), a device regex, or min_COL / max_COL bounds."""
    mask = pd.Series(True, index=df.index)
    for key, want in conditions.items():
        bound = re.fullmatch(r"(min|max)_(.+)", key)
        if bound and bound.group(2) in df.columns:
            values = pd.to_numeric(df[bound.group(2)], errors="coerce")
            mask &= values >= want if bound.group(1) == "min" else values <= want
        elif key == "device":
            mask &= df["device_name"].astype(str).str.contains(str(want), flags=re.IGNORECASE, regex=True)
        elif key in df.columns:
            wanted = want if isinstance(want, list) else [want]
            mask &= df[key].isin(wanted)
        else:
            mask &= False
    return mask


def _describe(conditions: dict[str, Any]) -> str:
    def one(k: str, v: Any) -> str:
        bound = re.fullmatch(r"(min|max)_(.+)", k)
        if bound:
            return f"{bound.group(2)} {'>=' if bound.group(1) == 'min' else '<='} {v}"
        return f"{k}={'|'.join(map(str, v)) if isinstance(v, list) else v}"

    return ", ".join(one(k, v) for k, v in conditions.items())


_ok_rows = ok_rows


def measures(run: Run, claim: Claim) -> bool:
    """Whether the run's workload is one that answers the claim: the claim's own workload,
    or a workload file that lists the claim among its `claims`."""
    workload = run.meta.get("workload") or {}
    names = set(run.results["workload"].dropna().astype(str)) if "workload" in run.results.columns else set()
    return claim.workload in names or claim.workload == workload.get("name") or \
        claim.id in (workload.get("claims") or [])


def candidate_rows(run: Run, claim: Claim) -> pd.DataFrame:
    """The ok rows of a run that may answer the claim: its workload, a real model size, its conditions."""
    rows = _ok_rows(run)
    if not measures(run, claim):
        return rows.iloc[0:0]
    rows = rows[~rows["model"].isin(SMOKE_TEST_MODELS)]
    if "engine" in rows.columns:
        rows = rows[rows["engine"] != "simulated"]  # a timing model, not a measurement
    return rows[_matches(rows, claim.conditions)]


def _why_not(claim: Claim, runs: list[Run]) -> str:
    """Say precisely why no row answers the claim, and what would measure it."""
    measure = f"bench run --workload {claim.workload}"
    if not runs:
        return f"no run given (measure with: {measure})"
    own = [r for r in runs if measures(r, claim)]
    if not own:
        return f"no run of the {claim.workload} workload, the one that answers this claim ({measure})"
    rows = pd.concat([r.results for r in own], ignore_index=True)
    cond = claim.conditions
    if "device" in cond and not rows["device_name"].astype(str).str.contains(cond["device"], case=False).any():
        return f"needs a device matching '{cond['device']}'; runs are on {', '.join(sorted(set(rows['device_name'].astype(str))))}"
    real = rows[~rows["model"].isin(SMOKE_TEST_MODELS)]
    if real.empty:
        return f"only the tiny smoke-test model was run, which never answers a claim ({measure} --model NAME)"
    if "model" in cond:
        wanted = cond["model"] if isinstance(cond["model"], list) else [cond["model"]]
        if not real["model"].isin(wanted).any():
            have = ", ".join(sorted(set(real["model"].astype(str)) - {"none"})) or "no model"
            return f"model {'|'.join(wanted)} not run (runs have {have}); e.g. {measure} --model {wanted[0]}"
    matched = real[_matches(real, cond)]
    if matched.empty:
        return f"no case with {_describe(cond)} ({measure})"
    ok = matched[matched["status"] == "ok"]
    if ok.empty:
        statuses = ", ".join(f"{s}: {d}" for s, d in matched[["status", "detail"]].astype(str).head(2).values)
        return f"matching cases did not run ok ({statuses})"
    if claim.metric not in ok.columns or ok[claim.metric].isna().all():
        source = ok["energy_source"].dropna().astype(str)
        hint = f" ({source.iloc[0]})" if claim.metric.startswith(("energy", "power", "tok_s_per_w")) and len(source) \
            else ""
        return f"{claim.metric} not measured on these runs{hint}"
    return "no measurement"


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


def _special_metric(claim: Claim, runs: list[Run]) -> tuple[float, str, str]:
    """Metrics that are not a results column: (value, run name, conditions text), or NaN with a reason."""
    if claim.metric == "memory_per_card_gb":
        for run in runs:
            gb = _fingerprint_memory(run)
            if not math.isnan(gb):
                return gb, run.name, f"device={run.device_name}"
        return NAN, "", "no accelerator memory in the runs' fingerprints (CPU runs have none)"
    if claim.metric == "ridge_point":
        bw = [(r, v) for r in runs for v in _ok_rows(r).get("bandwidth_gb_s", pd.Series(dtype=float)).dropna()]
        fl = [(r, v) for r in runs for v in _ok_rows(r).get("tflops", pd.Series(dtype=float)).dropna()]
        if not bw or not fl:
            return NAN, "", "needs a membw and a matmul run on the same device (bench run --workload membw; matmul)"
        ridge = max(v for _, v in fl) * 1e12 / (max(v for _, v in bw) * 1e9)
        return ridge, bw[0][0].name, "ridge point = peak FLOP/s / bandwidth; batch-1 decode needs ~1 FLOP/byte"
    raise KeyError(claim.metric)


def verify_claim(claim: Claim, runs: list[Run], price_per_hour: float | None = None) -> Verdict:
    """One claim against all runs."""
    if claim.comparison == "price":
        return _verify_price(claim, runs, price_per_hour)
    if claim.comparison.startswith("ratio"):
        return _verify_ratio(claim, runs)
    if claim.metric in ("memory_per_card_gb", "ridge_point"):
        value, run_name, text = _special_metric(claim, runs)
        if math.isnan(value):
            return Verdict(claim, "not measured", reason=text)
        return _judge(claim, value, NAN, text, run_name)
    best: tuple[float, pd.Series, str] | None = None
    for run in runs:
        rows = candidate_rows(run, claim)
        if claim.metric not in rows.columns:
            continue
        rows = rows[rows[claim.metric].notna()]
        for _, row in rows.iterrows():
            value = float(row[claim.metric])
            better = best is None or (value > best[0] if claim.comparison == ">=" else value < best[0])
            if better:
                best = (value, row, run.name)
    if best is None:
        return Verdict(claim, "not measured", bound=_bound_unmeasured(claim, runs), reason=_why_not(claim, runs))
    value, row, run_name = best
    text = f"{case_label(row, workload=False)} on {row.get('device_name', '')}"
    return _judge(claim, value, _bound_for(claim, row), text, run_name)


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
    from bench.models import resolve_model
    from bench.roofline import decode_bound_tok_s, decode_bytes_per_step

    models = claim.conditions.get("model")
    if claim.metric != "decode_tok_s_per_user" or not models or not runs:
        return NAN
    measured = [v * 1e9 for r in runs for v in _ok_rows(r).get("bandwidth_gb_s", pd.Series(dtype=float)).dropna()]
    ceilings = [(r.meta.get("ceiling") or {}).get("bandwidth_bytes_s") for r in runs]
    ceilings = [c for c in ceilings if c is not None and not math.isnan(c)]
    bandwidth = max(measured) if measured else (ceilings[0] if ceilings else NAN)
    if math.isnan(bandwidth):
        return NAN
    name = models[0] if isinstance(models, list) else models
    try:
        shape = resolve_model(name).shape
    except BadInput:
        return NAN
    return decode_bound_tok_s(decode_bytes_per_step(shape, 2, 1, 0), 1, bandwidth)


def _judge(claim: Claim, value: float, bound: float, conditions: str, run: str) -> Verdict:
    target = claim.figure * claim.tolerance if claim.comparison == ">=" else claim.figure / claim.tolerance
    holds = value >= target if claim.comparison == ">=" else value <= target
    ratio = value / claim.figure if claim.figure else NAN
    return Verdict(claim, "holds" if holds else "does not hold", value, ratio, bound, conditions,
                   reason="" if claim.tolerance == 1.0 else f"tolerance {claim.tolerance:g}", run=run)


def _verify_ratio(claim: Claim, runs: list[Run]) -> Verdict:
    """First run's metric over each other run's, on matching cases (same model, batch, lengths)."""
    if len(runs) < 2:
        return Verdict(claim, "not measured",
                       reason="a comparison between machines: give the claimed system's run first, then a reference run")
    keys = ["model", "batch_size", "input_len", "output_len"]
    first = candidate_rows(runs[0], claim)
    best: tuple[float, str, str] | None = None
    if len({r.device_name for r in runs}) < 2:
        return Verdict(claim, "not measured", reason="a comparison between machines: all runs are on "
                       f"{runs[0].device_name}; give the claimed system's run first, then a reference run")
    for other in runs[1:]:
        if other.device_name == runs[0].device_name:
            continue
        merged = first.merge(candidate_rows(other, claim), on=keys, suffixes=("", "_ref"))
        merged = merged[merged[claim.metric].notna() & merged[f"{claim.metric}_ref"].notna()]
        for _, row in merged.iterrows():
            ratio = float(row[claim.metric]) / float(row[f"{claim.metric}_ref"])
            text = f"{row['model']} bs={row['batch_size']}: {row['device_name']} vs {row['device_name_ref']}"
            if best is None or abs(math.log(ratio)) > abs(math.log(best[0])):
                best = (ratio, text, other.name)
    if best is None:
        return Verdict(claim, "not measured", reason=f"no case with {claim.metric} measured in both runs")
    ratio, text, run = best
    holds = ratio >= claim.figure if claim.comparison == "ratio>=" else ratio <= claim.figure
    return Verdict(claim, "holds" if holds else "does not hold", ratio, ratio / claim.figure, NAN, text, run=run)


def _verify_price(claim: Claim, runs: list[Run], price_per_hour: float | None) -> Verdict:
    """A price is an input: show the US$ per million tokens it implies at the best measured throughput."""
    price = dict(claim.price or {})
    if price_per_hour is not None and "per_hour" in price:
        price["per_hour"] = price_per_hour
    rows = [(r, row) for r in runs for _, row in _ok_rows(r).iterrows()
            if not pd.isna(row.get("output_tok_s", NAN)) and row.get("model") not in SMOKE_TEST_MODELS
            and row.get("engine") != "simulated"]
    if not rows:
        return Verdict(claim, "not measured", reason="a price claim: needs a throughput run to price")
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


def verify(runs: list[Run], price_per_hour: float | None = None, claims: list[Claim] | None = None) -> list[Verdict]:
    """Every claim's verdict."""
    return [verify_claim(c, runs, price_per_hour) for c in (claims or load_claims())]


def verdict_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Plain rows for printing (rich, markdown, html)."""
    def num(v: float) -> str:
        return "" if v is None or math.isnan(v) else f"{v:.4g}"

    return [{
        "claim": v.claim.id,
        "claimed": f"{v.claim.comparison} {v.claim.figure:g} {v.claim.unit}",
        "measured": num(v.measured),
        "ratio": num(v.ratio),
        "roofline bound": num(v.bound),
        "verdict": v.verdict,
        "conditions": v.conditions,
        "why": v.reason,
    } for v in verdicts]
