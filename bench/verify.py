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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.cost import usd_per_mtok_owned, usd_per_mtok_rented
from bench.errors import BadInput
from bench.noise import doubts
from bench.paths import seeds_dir
from bench.render import num
from bench.runs import Run, case_label, ok_rows, with_case_params
from bench.schema import CASE_PARAMS, COLUMNS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NAN = float("nan")
COMPARISONS = (">=", "<=", "ratio>=", "ratio<=", "price")
CONFIDENCE = 0.95
SMOKE_TEST_MODELS = ("tiny",)  # measure the harness, never a claim
# Metrics derived from one sampled column in proportion (same repetitions, scaled by a constant of the case).
PROPORTIONAL_TO = {"decode_tok_s_per_user": "decode_tok_s", "mbu": "decode_tok_s", "mfu": "prefill_tok_s"}


@dataclass(frozen=True)
class Claim:
    """One claim as data: what it says, the figure, and the conditions a measurement must meet to count."""

    id: str
    source: str
    assertion: str
    figure: float
    unit: str
    metric: str
    comparison: str
    workloads: list[str]
    conditions: dict[str, Any]
    tolerance: float = 1.0
    price: dict[str, float] | None = None
    scope: str = ""  # the hardware and model the article speaks of
    hardware: str = ""  # regex of the claimed hardware class ("" for a claim about any hardware)
    measure: str = ""  # the command that measures it (default: the first workload)

    def command(self) -> str:
        """What to run to measure this claim."""
        if self.measure:
            return self.measure
        models = self.conditions.get("model")
        model = (models[0] if isinstance(models, list) else models) if models else ""
        return f"bench run --workload {self.workloads[0]}" + (f" --model {model}" if model else "")


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


def load_claims(path: Path | None = None) -> list[Claim]:
    """Read and check seeds/claims.toml."""
    path = path or seeds_dir() / "claims.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: cannot read claims: {exc}") from None
    claims = []
    for raw in data.get("claim", []):
        raw = dict(raw)
        if "workload" in raw:  # one workload, the older spelling
            one = raw.pop("workload")
            raw.setdefault("workloads", [one])
        try:
            claim = Claim(**raw)
        except TypeError as exc:
            raise BadInput(f"{path}: claim {raw.get('id', '?')}: {exc}") from None
        if claim.comparison not in COMPARISONS:
            raise BadInput(f"{path}: claim {claim.id}: comparison must be one of {', '.join(COMPARISONS)}")
        _check_claim(claim, path)
        claims.append(claim)
    return claims


def _check_claim(claim: Claim, path: Path) -> None:
    """Every field of the type the verdicts rely on (a claims file is read back like any other input)."""
    where = f"{path}: claim {claim.id!r}"
    for name in ("id", "source", "assertion", "unit", "metric"):
        if not isinstance(getattr(claim, name), str) or not getattr(claim, name):
            raise BadInput(f"{where}: {name} must be a non-empty string")
    for name in ("scope", "hardware", "measure"):
        if not isinstance(getattr(claim, name), str):
            raise BadInput(f"{where}: {name} must be a string")
    if not isinstance(claim.workloads, list) or not claim.workloads or \
            not all(isinstance(w, str) and w for w in claim.workloads):
        raise BadInput(f"{where}: workloads must be a non-empty list of workload names")
    for name in ("figure", "tolerance"):
        value = getattr(claim, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise BadInput(f"{where}: {name} must be a finite positive number, got {value!r}")
    if not isinstance(claim.conditions, dict):
        raise BadInput(f"{where}: conditions must be a table")
    if claim.comparison == "price" and not isinstance(claim.price, dict):
        raise BadInput(f"{where}: a price claim needs a price table")


# --- which rows count ----------------------------------------------------------------------


def _matches(df: pd.DataFrame, conditions: dict[str, Any]) -> pd.Series:
    """Rows meeting every condition: equality (or one of a list), a device regex, or min_COL / max_COL bounds."""
    mask = pd.Series(True, index=df.index)
    for key, want in conditions.items():
        bound = re.fullmatch(r"(min|max)_(.+)", key)
        if bound:
            if bound.group(2) not in df.columns:
                mask &= False
                continue
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


def describe(conditions: dict[str, Any]) -> str:
    """Conditions in words: batch_size=1, output_len >= 1024, params >= 4e+08."""
    def one(k: str, v: Any) -> str:
        bound = re.fullmatch(r"(min|max)_(.+)", k)
        if bound:
            return f"{bound.group(2)} {'>=' if bound.group(1) == 'min' else '<='} {v:g}"
        return f"{k}={'|'.join(map(str, v)) if isinstance(v, list) else v}"

    return ", ".join(one(k, v) for k, v in conditions.items())


def measures(run: Run, claim: Claim) -> bool:
    """Whether the run's workload is one that answers the claim: one of the claim's workloads,
    or a workload file that lists the claim among its `claims`."""
    workload = run.meta.get("workload") or {}
    names = set(run.results["workload"].dropna().astype(str)) if "workload" in run.results.columns else set()
    names.add(str(workload.get("name", "")))
    return bool(names & set(claim.workloads)) or claim.id in (workload.get("claims") or [])


def _real(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of a real model on a real engine (the tiny model and the timing model never answer a claim)."""
    if "model" in rows.columns:
        rows = rows[~rows["model"].isin(SMOKE_TEST_MODELS)]
    if "engine" in rows.columns:
        rows = rows[rows["engine"] != "simulated"]
    return rows


def candidate_rows(run: Run, claim: Claim) -> pd.DataFrame:
    """The ok rows of a run that may answer the claim: its workload, a real model, its conditions."""
    rows = ok_rows(run)
    if not measures(run, claim):
        return rows.iloc[0:0]
    rows = with_case_params(run, _real(rows), as_text=False)  # an older run's prefix_len, from its run.json
    if claim.metric in ("mbu", "mfu") and "detail" in rows.columns:  # a ceiling measured low inflates both
        rows = rows[~rows["detail"].astype(str).str.contains("warning ceiling-low", regex=False)]
    return rows[_matches(rows, claim.conditions)]


def _why_not(claim: Claim, runs: list[Run]) -> str:
    """Say precisely why no row answers the claim, and what would measure it."""
    measure = claim.command()
    if not runs:
        return f"no run given (measure with: {measure})"
    own = [r for r in runs if measures(r, claim)]
    if not own:
        return f"no run of the {'/'.join(claim.workloads)} workload, the one that answers this claim ({measure})"
    rows = pd.concat([with_case_params(r, r.results, as_text=False) for r in own], ignore_index=True)
    cond = claim.conditions
    if "device" in cond and not rows["device_name"].astype(str).str.contains(cond["device"], case=False).any():
        return f"needs a device matching '{cond['device']}'; runs are on {', '.join(sorted(set(rows['device_name'].astype(str))))}"
    real = _real(rows)
    if real.empty:
        return f"only the tiny smoke-test model (or the simulated engine) was run, which never answers a claim ({measure})"
    for key, want in cond.items():  # the first condition no row meets, in the order the claim states them
        if not _matches(real, {key: want}).any():
            have = _have(real, key)
            return f"no case with {describe({key: want})} (runs have {have}); measure with: {measure}"
    matched = real[_matches(real, cond)]
    if matched.empty:
        return f"no case meets all of {describe(cond)} at once ({measure})"
    ok = matched[matched["status"] == "ok"]
    if ok.empty:
        statuses = ", ".join(f"{s}: {d}" for s, d in matched[["status", "detail"]].astype(str).head(2).values)
        return f"matching cases did not run ok ({statuses})"
    if claim.metric not in ok.columns or ok[claim.metric].isna().all():
        source = ok["energy_source"].dropna().astype(str) if "energy_source" in ok.columns else pd.Series()
        hint = f" ({source.iloc[0]})" if claim.metric.startswith(("energy", "power", "tok_s_per_w")) and len(source) \
            else ""
        return f"{claim.metric} not measured on these runs{hint}"
    return "no measurement"


def _have(rows: pd.DataFrame, key: str) -> str:
    column = re.sub(r"^(min|max)_", "", key) if key != "device" else "device_name"
    if column not in rows.columns:
        return f"no {column} column"
    values = sorted({str(v) for v in rows[column].dropna()})
    return f"{column} " + ", ".join(values[:6]) + (" ..." if len(values) > 6 else "")


# --- uncertainty ---------------------------------------------------------------------------


def confidence_interval(run: Run, row: pd.Series, metric: str) -> tuple[float, float] | None:
    """95% t-interval of the mean of the row's repetitions for this metric (samples.csv), or None.

    A metric derived in proportion from a sampled one (MBU from decode tok/s) gets that
    column's interval scaled by the row's ratio of the two.
    """
    from scipy import stats

    if metric == "ttft_speedup":
        return _speedup_interval(run, row)
    source = COLUMNS[metric].sample if metric in COLUMNS else None
    scale = 1.0
    if source is None and metric in PROPORTIONAL_TO:
        base = PROPORTIONAL_TO[metric]
        source = COLUMNS[base].sample
        if not row.get(base) or pd.isna(row.get(base)) or pd.isna(row.get(metric)):
            return None
        scale = float(row[metric]) / float(row[base])
    if source is None:
        return None
    values = _case_values(run, row.get("case"), source) * scale
    n = len(values)
    if n < 2:
        return None
    mean, sem = float(values.mean()), float(values.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sem
    return mean - half, mean + half


def _case_values(run: Run, case: Any, column: str) -> pd.Series:
    """One value per repetition of a case (samples.csv); empty when the run has none."""
    samples = run.samples
    if samples.empty or column not in samples.columns or "case" not in samples.columns or pd.isna(case):
        return pd.Series(dtype=float)
    return pd.to_numeric(samples.loc[samples["case"] == case, column], errors="coerce").dropna()


def _speedup_interval(run: Run, row: pd.Series) -> tuple[float, float] | None:
    """TTFT recomputing / TTFT reusing, from both cases' repetitions: the ratio of means with a
    95% interval from the standard error of its logarithm (delta method)."""
    from scipy import stats

    keys = [k for k in ("model", "engine", "dtype", "quant", "compile", "cache", "batch_size", "input_len",
                        "output_len", "prefix_len") if k in run.results.columns]
    same = (run.results[keys] == row[keys]).all(axis=1) & run.results["ttft_speedup"].isna()
    recompute = run.results[same & (run.results["status"] == "ok")]
    if recompute.empty:
        return None
    cold, warm = _case_values(run, recompute.iloc[0]["case"], "ttft_ms"), _case_values(run, row.get("case"), "ttft_ms")
    if len(cold) < 2 or len(warm) < 2 or cold.mean() <= 0 or warm.mean() <= 0:
        return None
    ratio = float(cold.mean() / warm.mean())
    se_log = math.sqrt(cold.var(ddof=1) / len(cold) / cold.mean() ** 2 + warm.var(ddof=1) / len(warm) / warm.mean() ** 2)
    t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, min(len(cold), len(warm)) - 1))
    return ratio * math.exp(-t * se_log), ratio * math.exp(t * se_log)


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


def _special_metric(claim: Claim, runs: list[Run]) -> tuple[float, str, str, str]:
    """Metrics that are not a results column: (value, run name, text, device), or NaN with a reason."""
    if claim.metric == "memory_per_card_gb":
        for run in runs:
            gb = _fingerprint_memory(run)
            if not math.isnan(gb):
                return gb, run.name, f"device={run.device_name}", run.device_name
        return NAN, "", "no accelerator memory in the runs' fingerprints (CPU runs have none)", ""
    if claim.metric == "ridge_point":
        bw = [(r, v) for r in runs for v in ok_rows(r).get("bandwidth_gb_s", pd.Series(dtype=float)).dropna()]
        fl = [(r, v) for r in runs for v in ok_rows(r).get("tflops", pd.Series(dtype=float)).dropna()]
        if not bw or not fl:
            return NAN, "", ("needs a membw and a matmul run on the same device "
                             "(bench run --workload membw; bench run --workload matmul)"), ""
        ridge = max(v for _, v in fl) * 1e12 / (max(v for _, v in bw) * 1e9)
        return ridge, bw[0][0].name, "ridge point = peak FLOP/s / bandwidth; batch-1 decode needs ~1 FLOP/byte", \
            bw[0][0].device_name
    raise KeyError(claim.metric)


def verify_claim(claim: Claim, runs: list[Run], price_per_hour: float | None = None,
                 groups: list[list[Run]] | None = None) -> Verdict:
    """One claim against all runs (groups: the runs of each results root given, for ratio claims)."""
    if claim.comparison == "price":
        return _verify_price(claim, runs, price_per_hour)
    if claim.comparison.startswith("ratio"):
        return _verify_ratio(claim, groups if groups and len(groups) > 1 else _by_device(runs))
    if claim.metric in ("memory_per_card_gb", "ridge_point"):
        value, run_name, text, device = _special_metric(claim, runs)
        if math.isnan(value):
            return Verdict(claim, "not measured", reason=text)
        return _judge(claim, value, NAN, text, run_name, where=_where(claim, [device]))
    best: tuple[float, pd.Series, Run] | None = None
    for run in runs:
        rows = candidate_rows(run, claim)
        if claim.metric not in rows.columns:
            continue
        rows = rows[rows[claim.metric].notna()]
        for _, row in rows.iterrows():
            value = float(row[claim.metric])
            better = best is None or (value > best[0] if claim.comparison == ">=" else value < best[0])
            if better:
                best = (value, row, run)
    if best is None:
        return Verdict(claim, "not measured", bound=_bound_unmeasured(claim, runs), reason=_why_not(claim, runs),
                       conditions=describe(claim.conditions))
    value, row, run = best
    text = f"case {_case_number(row)}: {case_label(row)}"
    verdict = _judge(claim, value, _bound_for(claim, row), text, run.name,
                     confidence_interval(run, row, claim.metric), _where(claim, [str(row.get("device_name", ""))]))
    if verdict.interval is None and verdict.verdict != "inconclusive":
        verdict.reason = "; ".join(r for r in (verdict.reason, "no interval: one figure per case") if r)
    warned = doubts(str(row.get("detail", "")))
    if warned:  # the figure stands, but the reader should know what the run said about it
        verdict.reason = "; ".join(r for r in (verdict.reason, f"its case warned: {', '.join(warned)}") if r)
    return verdict


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
    from bench.models import resolve_model
    from bench.roofline import decode_bound_tok_s, decode_bytes_per_step

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


RATIO_KEYS = ["model", "dtype", "batch_size", "input_len", "output_len", *CASE_PARAMS]  # the same case, any machine


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
    rows = [(r, row) for r in runs for _, row in _real(ok_rows(r)).iterrows()
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


def verdict_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Plain rows for printing (rich, markdown, html)."""
    return [{
        "claim": v.claim.id,
        "claimed": f"{v.claim.comparison} {v.claim.figure:g} {v.claim.unit}",
        "measured": num(v.measured),
        "95% interval": f"{num(v.interval[0], 3)} to {num(v.interval[1], 3)}" if v.interval else "",
        "verdict": v.verdict,
        "roofline bound": num(v.bound),
        "our conditions": describe(v.claim.conditions) if v.verdict != "not measured" or not v.conditions
        else v.conditions,
        "claim's scope": v.claim.scope,
        "where": v.where,
        "run / case": f"{v.run}: {v.conditions}" if v.run and v.verdict != "not measured" else v.run,
        "why": v.reason,
    } for v in verdicts]
