"""The trend page of `bench history`: first a row per series (case, metric, machine), the regressions at the top,
then the improvements, then the rest, each with a sparkline, its latest value and change and a link to its chart;
then one chart per case and machine with its metrics as small multiples (repetitions' spread, change points
marked with their commits, software changes dashed). A series with fewer than MIN_CHART_POINTS points is a row
only. Formats what bench.analysis.history found; computes nothing."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from bench.analysis.history import Series
from bench.core.schema import GATED
from bench.report.htmlreport import LAYOUT_PROBE, svg_figure

MAX_TICKS = 12  # labels under a small multiple: every point up to this many, then evenly spaced ones
MIN_CHART_POINTS = 3  # fewer points are a table row: a line through one or two says nothing a number does not
# What needs a look first: the order, regressions then improvements, then everything else.
RANK = {"regression": 0, "improvement": 1, "machine-drift": 2, "suspicious": 3}
COLOURS = {"regression": "#c0392b", "improvement": "#1e8449", "machine-drift": "#7d3c98", "suspicious": "#d68910"}
SPARK_W, SPARK_H = 120, 24


def sparkline(values: list[float], colour: str = "#333") -> str:
    """A series as a tiny inline SVG line (the newest point dotted): its shape at a glance, a few hundred bytes."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return ""
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    step = (SPARK_W - 4) / (len(values) - 1)
    points = [(2 + i * step, SPARK_H - 2 - (v - lo) / span * (SPARK_H - 4)) for i, v in enumerate(values)
              if math.isfinite(v)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    x, y = points[-1]
    return (f'<svg class="spark" width="{SPARK_W}" height="{SPARK_H}" viewBox="0 0 {SPARK_W} {SPARK_H}">'
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{path}"/>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"/></svg>')


def _change(s: Series) -> str:
    """The newest change point's size, else the newest point against the first."""
    if s.change_points:  # the newest one that gave the series its label (a later small step may follow it)
        said = [c for c in s.change_points if c.label == s.label] or s.change_points
        return f"{said[-1].change_pct:+.1f}% at {said[-1].first_bad}"
    first, last = s.points[0].value, s.points[-1].value
    return f"{100 * (last - first) / first:+.1f}% since the first" if len(s.points) > 1 and first else ""


def _value(s: Series) -> str:
    column = GATED[s.metric]
    try:
        text = column.fmt.format(s.points[-1].value)
    except (ValueError, TypeError):
        text = f"{s.points[-1].value:.4g}"
    return f"{text} {column.unit}".strip()


def summary_table(ranked: list[Series], chart_of: dict[int, str]) -> str:
    """One row per series in the order a reader needs them."""
    rows = []
    for s in ranked:
        colour = COLOURS.get(s.label, "#333")
        where = chart_of.get(id(s))
        link = f'<a href="#{where}">chart</a>' if where else f"{len(s.points)} point(s): no chart"
        rows.append(f'<tr class="series" data-label="{html.escape(s.label)}"><td style="color:{colour}">'
                    f"<b>{html.escape(s.label)}</b></td><td>{html.escape(s.case)}</td>"
                    f"<td>{html.escape(s.metric)}</td><td>{html.escape(s.machine)}</td>"
                    f"<td>{sparkline([p.value for p in s.points], colour)}</td><td>{html.escape(_value(s))}</td>"
                    f"<td>{html.escape(_change(s))}</td><td>{link}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("label", "case", "metric", "machine", "trend", "latest", "change",
                                             ""))
    return f'<table id="series"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _draw_series(ax: Any, s: Series, axis: str, bottom: bool) -> None:
    x = np.arange(len(s.points))
    y = np.array([p.value for p in s.points])
    lo = np.array([min(p.reps) if p.reps else p.value for p in s.points])
    hi = np.array([max(p.reps) if p.reps else p.value for p in s.points])
    ax.fill_between(x, lo, hi, alpha=0.2, color="#1f77b4")
    ax.plot(x, y, marker="o" if len(x) <= 20 else None, markersize=3, color="#1f77b4")  # markers weigh: 50+ is a line
    for c in s.change_points:
        colour = COLOURS.get(c.label, "orange")
        ax.axvline(c.index - 0.5, color=colour, linestyle="-")
        ax.annotate(f"{c.label} {c.change_pct:+.1f}%\n{c.last_good}..{c.first_bad}", (c.index - 0.5, y.max()),
                    fontsize=7, color=colour)
    for j in s.software_changes():
        ax.axvline(j - 0.5, color="grey", linestyle="--")
    ticks = np.unique(np.linspace(0, len(x) - 1, min(len(x), MAX_TICKS)).round().astype(int))
    ax.set_xticks(ticks, [_tick(s.points[t].commit) for t in ticks] if bottom else [], rotation=60, fontsize=6)
    if bottom:
        ax.set_xlabel(axis, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{s.metric} ({GATED[s.metric].unit})", fontsize=9, color=COLOURS.get(s.label, "black"))


def trend_page(all_series: list[Series], axis: str = "commit (oldest first)", scope: str = "") -> str:
    """The page: which runs it holds, the series table (regressions first), then a chart per case and machine
    with its metrics as small multiples."""
    with_points = [s for s in all_series if s.points]
    ranked = sorted(with_points, key=lambda s: (RANK.get(s.label, 4), s.machine, s.case, s.metric))
    groups: dict[tuple[str, str], list[Series]] = {}
    for s in sorted(with_points, key=lambda s: (s.machine, s.case, list(GATED).index(s.metric))):
        if len(s.points) >= MIN_CHART_POINTS:
            groups.setdefault((s.machine, s.case), []).append(s)
    # Charts in the order of their most urgent series.
    order = sorted(groups, key=lambda k: min(RANK.get(s.label, 4) for s in groups[k]))
    chart_of: dict[int, str] = {}
    figures = []
    for i, key in enumerate(order):
        members = groups[key]
        for s in members:
            chart_of[id(s)] = f"chart-{i}"
        cols = min(3, len(members))
        rows = math.ceil(len(members) / cols)

        def draw(ax: Any, members: list[Series] = members, cols: int = cols, rows: int = rows) -> bool:
            fig = ax.figure
            fig.clear()
            fig.set_size_inches(10, 2.4 * rows + 0.6)
            axes = fig.subplots(rows, cols, squeeze=False)
            for k, s in enumerate(members):
                _draw_series(axes[k // cols][k % cols], s, axis, bottom=k >= len(members) - cols)
            for k in range(len(members), rows * cols):
                axes[k // cols][k % cols].set_visible(False)
            fig.suptitle(f"{members[0].case} on {members[0].machine}", fontsize=10)
            return True

        svg = svg_figure(f"chart-{i}", draw)
        labels = " ".join(sorted({s.label for s in members}))
        figures.append(f'<figure class="plot" id="chart-{i}" data-label="{html.escape(labels)}">{svg}</figure>')
    counts: dict[str, int] = {}
    for s in with_points:
        counts[s.label] = counts.get(s.label, 0) + 1
    said = ", ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: RANK.get(kv[0], 4)))
    machines = sorted({s.machine for s in with_points})
    runs = len({p.run for s in with_points for p in s.points})
    short = len(with_points) - sum(len(g) for g in groups.values())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>claimbench trend</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
th {{ background: #f4f4f4; text-align: left; }} svg.spark {{ vertical-align: middle; }}
figure.plot {{ margin: 1em 0; }} figure.plot svg {{ max-width: 100%; height: auto; }} p.scope {{ color: #444; }}
</style></head><body><h1>claimbench trend</h1>
<p class="scope">{html.escape(scope or f"{runs} run(s)")}; machines: {html.escape(", ".join(machines))};
x axis: {html.escape(axis)}.</p>
<p>{len(with_points)} series: {html.escape(said)}. Regressions first, then improvements, then the rest; each
row's chart is its case's, with every gated metric beside it{f"; {short} series with fewer than {MIN_CHART_POINTS} points are rows only" if short else ""}.
Red: regression, green: improvement, orange: suspicious, purple: machine-drift (the machine's canary moved as
much), dashed grey: software changed; the band is the repetitions' range.</p>
{summary_table(ranked, chart_of)}
{''.join(figures)}{LAYOUT_PROBE}</body></html>"""


def _tick(where: str) -> str:
    """A commit as 7 characters; a run's name as its start (20261204T164039Z-vm-quick -> 12-04 16:40)."""
    if len(where) >= 15 and where[8] == "T" and where[:8].isdigit():
        return f"{where[4:6]}-{where[6:8]} {where[9:11]}:{where[11:13]}"
    return where[:7]
