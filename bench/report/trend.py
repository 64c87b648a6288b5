"""The trend page of `bench history`: one small plot per case and metric, its repetitions' spread, change points
marked with their runs, software changes dashed. Formats what bench.analysis.history found; computes nothing."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.analysis.history import Series
from bench.core.schema import GATED

MAX_TICKS = 24  # labels under a trend plot: every point up to this many, then evenly spaced ones





def trend_page(all_series: list[Series], axis: str = "commit (oldest first)") -> str:
    """An HTML page: one small plot per case and metric, its repetitions' spread, change points marked with
    their commits, software changes dashed."""
    import html

    from bench.report.htmlreport import svg_figure

    figures = []
    rank = {"regression": 0, "machine-drift": 1, "suspicious": 2, "improvement": 3}  # what needs a look first
    for i, s in enumerate(sorted(all_series, key=lambda s: rank.get(s.label, 3))):
        if not s.points:
            continue

        def draw(ax: Any, s: Series = s) -> bool:
            x = np.arange(len(s.points))
            y = np.array([p.value for p in s.points])
            lo = np.array([min(p.reps) if p.reps else p.value for p in s.points])
            hi = np.array([max(p.reps) if p.reps else p.value for p in s.points])
            ax.fill_between(x, lo, hi, alpha=0.2, label="repetitions (min to max)")
            ax.plot(x, y, marker="o" if len(x) <= 200 else None, label=f"{s.metric} (median of each run)")
            for c in s.change_points:
                colour = {"regression": "red", "improvement": "green", "machine-drift": "purple"}.get(c.label,
                                                                                                   "orange")
                ax.axvline(c.index - 0.5, color=colour, linestyle="-")
                ax.annotate(f"{c.label} {c.change_pct:+.1f}%\n{c.last_good}..{c.first_bad}", (c.index - 0.5, y.max()),
                            fontsize=8, color=colour)
            for j in s.software_changes():
                ax.axvline(j - 0.5, color="grey", linestyle="--")
            ticks = np.unique(np.linspace(0, len(x) - 1, min(len(x), MAX_TICKS)).round().astype(int))
            ax.set_xticks(ticks, [_tick(s.points[t].commit) for t in ticks], rotation=60, fontsize=7)
            ax.set_xlabel(axis)
            ax.set_ylabel(f"{s.metric} ({GATED[s.metric].unit})")
            ax.set_title(f"{s.case}: {s.metric} on {s.machine}", fontsize=10)
            return True

        svg = svg_figure(f"trend-{i}", draw)
        figures.append(f'<figure class="plot" id="trend-{i}" data-label="{html.escape(s.label)}">{svg}</figure>')
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>claimbench trend</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2em; }} figure.plot svg {{ max-width: 100%; height: auto; }}
</style></head><body><h1>claimbench trend</h1>
<p>{len(all_series)} series; red: regression, green: improvement, orange: suspicious, purple: machine-drift (the
machine's canary moved as much), dashed grey: software changed.</p>
{''.join(figures)}</body></html>"""


def _tick(where: str) -> str:
    """A commit as 7 characters; a run's name as its start (20261204T164039Z-vm-quick -> 12-04 16:40)."""
    if len(where) >= 15 and where[8] == "T" and where[:8].isdigit():
        return f"{where[4:6]}-{where[6:8]} {where[9:11]}:{where[11:13]}"
    return where[:7]
