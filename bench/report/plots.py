"""Plots of a comparison (`bench compare --plot`): PNG bar charts, one bar per run. Draws; never computes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis.pareto import pareto_points
from bench.core.caseid import case_label
from bench.core.errors import BadInput
from bench.core.schema import COLUMNS
from bench.report.textformat import factor_cases
from bench.store.runs import Run
from bench.store.runs import labels as run_labels


def plot_compare(table: pd.DataFrame, runs: list[Run], path: str) -> None:
    """Bar charts of the main metrics per case, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("decode_tok_s", "ttft_ms_p50", "tpot_ms_p50", "energy_j_per_token")
               if f"{m} [0]" in table.columns and table[f"{m} [0]"].notna().any()]
    curves = {i: pareto_points(run.results) for i, run in enumerate(runs)}
    curves = {i: c for i, c in curves.items() if len(c) >= 2}
    if not metrics and not curves:
        raise BadInput("nothing to plot: the runs share no measured case")
    fig, axes = plt.subplots(len(metrics) + bool(curves), 1, figsize=(10, 3 * (len(metrics) + bool(curves))),
                             squeeze=False)
    cases = pd.DataFrame({"case": [case_label(r, workload=len(set(table["workload"])) > 1)
                                   for _, r in table.iterrows()]})
    short, common = factor_cases(cases)  # each bar says what sets its case apart; the rest is the title
    ticks = list(short["case"]) if "case" in short else [common] * len(table)
    if common:
        fig.suptitle(common, fontsize=9)
    names = run_labels(runs)
    x = np.arange(len(table))
    width = 0.8 / len(runs)
    for ax, metric in zip(axes[:, 0], metrics):
        for i, run in enumerate(runs):
            col = f"{metric} [{i}]"
            if col in table:
                ax.bar(x + i * width, table[col], width, label=f"[{i}] {names[run.name]}")
        ax.set_title(metric)
        ax.set_ylabel(COLUMNS[metric].unit)
        ax.set_xticks(x + width * (len(runs) - 1) / 2, ticks, rotation=30, ha="right", fontsize=7)
        ax.legend(fontsize=7)
    if curves:  # two servers at equal interactivity: per-device throughput along per-user throughput
        ax = axes[-1, 0]
        for i, points in curves.items():
            ax.plot(points["per_user"], points["per_device"], marker="o", label=f"[{i}] {names[runs[i].name]}")
        ax.set_title("output tok/s per device vs tok/s per user")
        ax.set_xlabel("tok/s per user")
        ax.set_ylabel("tok/s per device")
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot write plot {path}: {exc}") from None
    finally:
        plt.close(fig)
