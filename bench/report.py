"""One self-contained HTML report (plots inline as PNG data URIs) from runs. Reads results; never measures."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from bench.runs import Run, ok_rows
from bench.verify import Verdict, verdict_rows, verify


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


def _rows_with(run: Run, *columns: str) -> pd.DataFrame:
    """The run's ok rows where every column is measured (none when an older or sparser file lacks one)."""
    rows = ok_rows(run)
    if any(c not in rows.columns for c in columns):
        return rows.iloc[0:0]
    return rows.dropna(subset=list(columns))


def throughput_vs_batch(runs: list[Run]) -> Callable:
    def draw(ax) -> bool:
        drew = False
        for run in runs:
            df = _rows_with(run, "decode_tok_s", "model", "batch_size", "input_len", "output_len")
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
            for _, r in _rows_with(run, "tpot_ms_p50", "tpot_ms_p99").iterrows():
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
            df = _rows_with(run, "input_len", "ttft_ms_p50", "decode_tok_s")
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


VERDICT_COLOURS = {"holds": "#d4edda", "does not hold": "#f8d7da", "inconclusive": "#fff3cd",
                   "not measured": "#eeeeee"}


def _anchor(run: str, case: Any) -> str:
    return "case-" + "".join(ch if ch.isalnum() else "-" for ch in f"{run}-{case}")


def verdict_table(verdicts: list[Verdict]) -> str:
    """The verdicts as an HTML table, colour-coded, each measured verdict linked to the row behind it."""
    rows = verdict_rows(verdicts)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) if rows else ""
    body = []
    for verdict, row in zip(verdicts, rows):
        cells = []
        for key, value in row.items():
            text = html.escape(str(value))
            if key == "run / case" and verdict.run and verdict.verdict != "not measured":
                case = re.match(r"case (\d+):", verdict.conditions)
                target = _anchor(verdict.run, case.group(1)) if case else "cases"
                text = f'<a href="#{target}">{text}</a>'
            cells.append(f'<td class="{key.replace(" ", "-").replace("/", "").replace("%", "pct")}">{text}</td>')
        colour = VERDICT_COLOURS.get(verdict.verdict, "#ffffff")
        body.append(f'<tr class="verdict" data-verdict="{html.escape(verdict.verdict)}" '
                    f'style="background:{colour}">{"".join(cells)}</tr>')
    return f'<table id="verdicts"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def cases_table(runs: list[Run]) -> str:
    """Every case of every run, one anchor per row so verdicts can link to it."""
    columns = ["workload", "model", "batch_size", "input_len", "output_len", "status", "decode_tok_s",
               "ttft_ms_p50", "tpot_ms_p50", "peak_mem_gb"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["run", "case", *columns])
    body = []
    for run in runs:
        for _, r in run.results.iterrows():
            case = r.get("case", "")
            case_text = "" if pd.isna(case) else str(int(case)) if isinstance(case, int | float) else str(case)
            cells = [f"<td>{html.escape(run.name)}</td>", f"<td>{html.escape(case_text)}</td>"]
            for c in columns:
                v = r.get(c, "")
                text = "" if v is None or (isinstance(v, float) and pd.isna(v)) else \
                    f"{v:.4g}" if isinstance(v, float) else str(v)
                cells.append(f"<td>{html.escape(text)}</td>")
            body.append(f'<tr id="{_anchor(run.name, case_text)}">{"".join(cells)}</tr>')
    return f'<table id="cases"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render(runs: list[Run], price_per_hour: float | None = None, groups: list[list[Run]] | None = None) -> str:
    """The report's HTML text: the verdicts first, then the plots, then every case."""
    sections = []
    for title, drawer in (("Throughput vs batch", throughput_vs_batch), ("Latency percentiles", latency_percentiles),
                          ("Power over time", power_over_time), ("Long-context curve", long_context_curve)):
        uri = _png(drawer(runs))
        body = f'<img class="plot" alt="{title}" src="{uri}">' if uri else \
            '<p class="empty">No data for this plot in these runs.</p>'
        sections.append(f"<h2>{title}</h2>{body}")
    verdicts = verify(runs, price_per_hour, groups=groups)
    counts = {v: sum(1 for x in verdicts if x.verdict == v) for v in VERDICT_COLOURS}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    runs_list = "".join(f"<li><code>{html.escape(r.name)}</code>: {html.escape(r.device_name)}, "
                        f"{len(r.results)} case(s)</li>" for r in runs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>claimbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
#verdicts td.verdict {{ font-weight: bold; white-space: nowrap; }}
img.plot {{ max-width: 100%; border: 1px solid #eee; }}
</style></head>
<body>
<h1>claimbench report</h1>
<h2 id="claims">Do the claims hold here?</h2>
<p>{html.escape(summary)}. A verdict on hardware other than the claim's own checks the claimed figure on this
machine; it does not say the vendor's figure is wrong on theirs (see "where").</p>
{verdict_table(verdicts)}
<h2>Runs</h2>
<ul>{runs_list}</ul>
{''.join(sections)}
<h2>Cases</h2>
{cases_table(runs)}
<script>
// Marks how many plots decoded, so a headless browser test can check them.
window.addEventListener("load", () => {{
  const imgs = [...document.querySelectorAll("img.plot")];
  document.body.dataset.plotsLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
}});
</script>
</body></html>
"""
