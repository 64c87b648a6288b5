"""Which rows of which runs may answer a claim, and in words why none does."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from bench.analysis.claims import Claim, describe
from bench.core.noise import kinds
from bench.spec.models import resolve_model
from bench.store.runs import Run, ok_rows, with_case_params

SMOKE_TEST_MODELS = ("tiny",)  # measure the harness, never a claim


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


def measures(run: Run, claim: Claim) -> bool:
    """Whether the run's workload is one that answers the claim: one of the claim's workloads,
    or a workload file that lists the claim among its `claims`."""
    workload = run.meta.get("workload") or {}
    names = set(run.results["workload"].dropna().astype(str)) if "workload" in run.results.columns else set()
    names.add(str(workload.get("name", "")))
    return bool(names & set(claim.workloads)) or claim.id in (workload.get("claims") or [])


def real_rows(rows: pd.DataFrame) -> pd.DataFrame:
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
    rows = with_case_params(run, real_rows(rows), as_text=False)  # an older run's prefix_len, from its run.json
    if claim.metric in ("mbu", "mfu") and "warnings" in rows.columns:  # a ceiling measured low inflates both
        rows = rows[[("ceiling-low" not in kinds(w)) for w in rows["warnings"]]]
    return rows[_matches(rows, claim.conditions)]


def why_not(claim: Claim, runs: list[Run]) -> str:
    """Say precisely why no row answers the claim, and what would measure it (and, where the runs show that
    the command could not answer it on their machine, why not)."""
    measure = claim.command()
    caveat = not_answerable_here(claim, measure, runs)
    if caveat:
        measure = f"{measure}, on another machine: {caveat}"
    if not runs:
        return f"no run given (measure with: {measure})"
    own = [r for r in runs if measures(r, claim)]
    if not own:
        return f"no run of the {'/'.join(claim.workloads)} workload, the one that answers this claim ({measure})"
    rows = pd.concat([with_case_params(r, r.results, as_text=False) for r in own], ignore_index=True)
    cond = claim.conditions
    if "device" in cond and not rows["device_name"].astype(str).str.contains(cond["device"], case=False).any():
        return f"needs a device matching '{cond['device']}'; runs are on {', '.join(sorted(set(rows['device_name'].astype(str))))}"
    real = real_rows(rows)
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
    values = sorted({str(v) for v in rows[column].dropna()} - {"", "nan"})
    if not values:
        return f"no {column} value"
    return f"{column} " + ", ".join(values[:6]) + (" ..." if len(values) > 6 else "")


POWER_METRICS = ("power", "energy", "tok_s_per_w")


def not_answerable_here(claim: Claim, measure: str, runs: list[Run]) -> str:
    """Why the measure command would not answer the claim on the machine the runs were taken on ('' when it
    could, or when the runs do not say): no power sensor for a power claim, too little memory for its model."""
    if not runs:
        return ""
    if claim.metric.startswith(POWER_METRICS) or "power" in claim.workloads:
        sources = [str(v) for r in runs if "energy_source" in r.results.columns
                   for v in r.results["energy_source"].dropna()]
        if sources and all(s.startswith("none") for s in sources):
            reason = sources[0].removeprefix("none: ")[:120]
            return f"this one has {reason}" if reason.startswith("no ") else f"this one reads no power ({reason})"
    model = re.search(r"--model (\S+)", measure)
    memory = [float(((r.meta.get("fingerprint") or {}).get("device") or {}).get("memory_total_gb") or 0)
              for r in runs]
    if model and max(memory, default=0) > 0:
        try:

            need = resolve_model(model.group(1)).shape.params * 2 / 1e9  # 16-bit weights alone
        except Exception:  # noqa: BLE001 - a model we cannot size: no caveat rather than a wrong one
            return ""
        if need > max(memory):
            return (f"{model.group(1)}'s 16-bit weights alone are {need:.0f} GB and this one has "
                    f"{max(memory):.0f} GB")
    return ""
