"""One self-contained HTML report (plots inline as PNG data URIs) from runs. Reads results; never measures."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable

import pandas as pd

from bench.runs import Run, ok_rows
from bench.verify import verdict_rows, verify


def _png(draw: Callable) -> str | None:
    """Run draw(ax) on a new figure; return a data URI, or None if it drew nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    drew = draw(ax)
    if not drew:
        plt.close(fig)
        return None
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_ok = ok_rows


def throughput_vs_batch(runs: list[Run]) -> Callable:
    def draw(ax) -> bool:
        drew = False
        for run in runs:
            df = _ok(run).dropna(subset=["decode_tok_s"]) if "decode_tok_s" in run.results else pd.DataFrame()
            for (model, n_in, n_out), g in df.groupby(["model", "input_len", "output_len"]):
                g = g.sort_values("batch_size")
                if len(g) < 1:
                    continue
                ax.plot(g["batch_size"], g["decode_tok_s"], marker="o",
                        label=f"{run.device_name}: {model} {int(n_in)}/{int(n_out)}")
                drew = True
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("decode tok/s")
        ax.set_title("Throughput vs batch")
        return drew
    return draw


def latency_percentiles(runs: list[Run]) -> Callable:
    def draw(ax) -> bool:
        labels, p50, p99 = [], [], []
        for run in runs:
            for _, r in _ok(run).dropna(subset=["tpot_ms_p50"]).iterrows():
                labels.append(f"{r['model']} bs{int(r['batch_size'])}\n{run.device_name[:18]}")
                p50.append(r["tpot_ms_p50"])
                p99.append(r["tpot_ms_p99"])
        if not labels:
            return False
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], p50, 0.4, label="TPOT p50")
        ax.bar([i + 0.2 for i in x], p99, 0.4, label="TPOT p99")
        ax.set_xticks(list(x), labels, fontsize=6, rotation=30, ha="right")
        ax.set_ylabel("ms")
        ax.set_title("Latency percentiles")
        return True
    return draw


def power_over_time(runs: list[Run]) -> Callable:
    def draw(ax) -> bool:
        drew = False
        for run in runs:
            tel = run.telemetry()
            if tel.empty or "device" not in tel.columns:
                continue
            column = "power_w" if tel.get("power_w") is not None and tel["power_w"].notna().any() else "mem_used_gb"
            for device, g in tel.groupby("device"):
                if g[column].notna().any():
                    ax.plot(g["t"], g[column], label=f"{run.device_name} {device} {column}")
                    drew = True
        ax.set_xlabel("s since start")
        ax.set_title("Power over time (memory where no power sensor is readable)")
        return drew
    return draw


def long_context_curve(runs: list[Run]) -> Callable:
    def draw(ax) -> bool:
        drew = False
        ax2 = None
        for run in runs:
            df = _ok(run)
            df = df[df["workload"].astype(str).str.contains("long-context")].sort_values("input_len")
            if df.empty:
                continue
            line = ax.plot(df["input_len"], df["ttft_ms_p50"], marker="o", label=f"{run.name} TTFT ms")[0]
            ax2 = ax2 or ax.twinx()
            ax2.plot(df["input_len"], df["decode_tok_s"], marker="s", linestyle="--", color=line.get_color(),
                     label=f"{run.name} decode tok/s")
            drew = True
        if ax2 is not None:
            ax2.set_ylabel("decode tok/s (dashed)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("input tokens")
        ax.set_ylabel("TTFT ms")
        ax.set_title("Long context: TTFT and decode speed as the context grows")
        return drew
    return draw


def render(runs: list[Run], price_per_hour: float | None = None) -> str:
    """The report's HTML text."""
    sections = []
    for title, drawer in (("Throughput vs batch", throughput_vs_batch), ("Latency percentiles", latency_percentiles),
                          ("Power over time", power_over_time), ("Long-context curve", long_context_curve)):
        uri = _png(drawer(runs))
        body = f'<img class="plot" alt="{title}" src="{uri}">' if uri else \
            '<p class="empty">No data for this plot in these runs.</p>'
        sections.append(f"<h2>{title}</h2>{body}")
    verdicts = pd.DataFrame(verdict_rows(verify(runs, price_per_hour)))
    runs_list = "".join(f"<li><code>{html.escape(r.name)}</code>: {html.escape(r.device_name)}, "
                        f"{len(r.results)} case(s)</li>" for r in runs)
    status = pd.concat([r.results[["workload", "model", "batch_size", "input_len", "output_len", "status",
                                   "decode_tok_s", "ttft_ms_p50", "tpot_ms_p50"]].assign(run=r.name)
                        for r in runs])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>claimbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 12px; }} td, th {{ border: 1px solid #ccc; padding: 3px 6px; }}
img.plot {{ max-width: 100%; border: 1px solid #eee; }}
</style></head>
<body>
<h1>claimbench report</h1>
<ul>{runs_list}</ul>
{''.join(sections)}
<h2>Claims</h2>
{verdicts.to_html(index=False, escape=True)}
<h2>Cases</h2>
{status.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}")}
<script>
// Marks how many plots decoded, so a headless browser test can check them.
window.addEventListener("load", () => {{
  const imgs = [...document.querySelectorAll("img.plot")];
  document.body.dataset.plotsLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
}});
</script>
</body></html>
"""
