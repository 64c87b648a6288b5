"""Put runs side by side (`bench compare`): cases matched on their identity, ratios to the first run.
Reads results; never measures. The regression gate (`bench check`) is bench.analysis.gate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis.cost import usd_per_mtok_rented
from bench.core.caseid import param_text
from bench.core.errors import BadInput
from bench.core.params import CASE_KEYS as SHAPE_KEYS
from bench.core.params import CASE_PARAMS
from bench.core.schema import COLUMNS, GATED
from bench.store.runs import Run, ok_rows, with_case_params

CASE_KEYS = [*SHAPE_KEYS, *CASE_PARAMS]

# metric -> (direction: +1 higher is better / -1 lower is better, samples.csv column or None), from the schema.
# Beside them, what the output check says of each case's quality (never gated on its own: a failed check fails
# bench check through its wrong-output warning): two machines, engines or quantizations side by side.
QUALITY = ("check_kld_mean", "check_top1", "perplexity")
METRICS: dict[str, tuple[int, str | None]] = {name: (c.direction, c.sample) for name, c in GATED.items()} | \
    {name: (COLUMNS[name].direction, None) for name in QUALITY}
FINGERPRINT_KEYS = ["device", "driver", "cuda", "torch", "transformers", "vllm", "python", "cpu", "host"]


def fingerprint_summary(run: Run) -> dict[str, str]:
    """The fingerprint fields that decide whether two runs are comparable."""
    fp = run.fingerprint()
    versions = fp.get("versions", {}) or {}
    accel = (fp.get("accelerators") or [{}])[0] or {}
    return {
        "device": run.device_name,
        "driver": str(accel.get("driver") or ""),
        "cuda": str(versions.get("cuda_runtime") or accel.get("cuda_driver") or ""),
        "torch": str(versions.get("torch") or ""),
        "transformers": str(versions.get("transformers") or ""),
        "vllm": str(versions.get("vllm") or ""),
        "python": str(fp.get("python") or ""),
        "cpu": str(fp.get("cpu") or ""),
        "host": str(fp.get("host") or ""),
    }


def fingerprint_differences(runs: list[Run]) -> list[tuple[str, list[str]]]:
    """Fields whose values differ between runs, with each run's value."""
    summaries = [fingerprint_summary(r) for r in runs]
    return [(k, [s[k] for s in summaries]) for k in FINGERPRINT_KEYS if len({s[k] for s in summaries}) > 1]


def case_rows(run: Run) -> pd.DataFrame:
    """A run's ok rows with every identity column present (as text), ready to match across runs."""
    df = with_case_params(run, ok_rows(run))
    for key in CASE_KEYS:
        if key not in df.columns:
            df[key] = np.nan
    return df


def compare_table(runs: list[Run], metrics: list[str] | None = None, price_per_hour: float | None = None
                  ) -> pd.DataFrame:
    """One row per case present in the first run and any other; per metric each run's value and ratio to the first."""
    if len(runs) < 2:
        raise BadInput("compare needs at least two runs")
    unknown = [m for m in metrics or [] if m not in METRICS]
    if unknown:
        raise BadInput(f"--metrics: unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRICS)})")
    metrics = metrics or [m for m in METRICS if any(m in r.results.columns and r.results[m].notna().any()
                                                    for r in runs)]
    frames = []
    for i, run in enumerate(runs):
        df = case_rows(run)
        if price_per_hour is not None and "output_tok_s" in df:
            df["usd_per_mtok"] = [usd_per_mtok_rented(t, price_per_hour) for t in df["output_tok_s"]]
        cols = [m for m in [*metrics, "usd_per_mtok"] if m in df.columns]
        df = df[CASE_KEYS + cols].drop_duplicates(CASE_KEYS, keep="last")
        frames.append(df.rename(columns={m: f"{m} [{i}]" for m in cols}))
    table = frames[0]
    for frame in frames[1:]:
        table = table.merge(frame, on=CASE_KEYS, how="left")
    if price_per_hour is not None:
        metrics = [*metrics, "usd_per_mtok"]
    for m in metrics:
        base = f"{m} [0]"
        for i in range(1, len(runs)):
            col = f"{m} [{i}]"
            if base in table and col in table:
                table[f"{m} x{i}/0"] = table[col] / table[base]
    ordered = CASE_KEYS + [c for m in metrics for c in table.columns if c.startswith(f"{m} [") or
                           c.startswith(f"{m} x")]
    table = table[[c for c in ordered if c in table.columns]]
    value_cols = [c for c in table.columns if c not in CASE_KEYS]
    table = table.dropna(how="all", subset=value_cols)
    # A case parameter at its default in every row says nothing; one that varies or is set stays.
    quiet = [k for k, default in CASE_PARAMS.items() if set(table[k]) <= {param_text(default), ""}]
    return table.drop(columns=quiet).reset_index(drop=True)
