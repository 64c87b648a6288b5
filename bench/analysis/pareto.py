"""Throughput per user against throughput per device: the curve that compares two serving systems at equal
interactivity (InferenceX's and `vllm bench sweep plot_pareto`'s). One pure function from a run's rows to its
points; the report and `bench compare --plot` draw them. Reads results; never measures."""

from __future__ import annotations

import pandas as pd


def pareto_points(results: pd.DataFrame) -> pd.DataFrame:
    """Per ok row: tok/s per user (1000 / TPOT p50) and output tok/s per device (the row's output tok/s over its
    device_count cards), sorted by the first; the Pareto-optimal points (no other point better on both) marked.
    Empty where the rows lack either figure."""
    rows = ok_rows_frame(results)
    need = ("decode_tok_s_per_user", "output_tok_s")
    if any(c not in rows.columns for c in need):
        return pd.DataFrame(columns=["per_user", "per_device", "optimal", "case"])
    rows = rows.dropna(subset=list(need))
    cards = pd.to_numeric(rows["device_count"], errors="coerce").fillna(1).clip(lower=1) \
        if "device_count" in rows.columns else 1
    points = pd.DataFrame({"per_user": rows["decode_tok_s_per_user"].astype(float),
                           "per_device": rows["output_tok_s"].astype(float) / cards,
                           "case": rows["case"].values}).sort_values("per_user", ignore_index=True)
    best = points["per_device"][::-1].cummax()[::-1]  # the best per-device figure at this interactivity or more
    points["optimal"] = points["per_device"] >= best
    return points


def ok_rows_frame(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["status"] == "ok"] if "status" in results.columns else results.iloc[0:0]

