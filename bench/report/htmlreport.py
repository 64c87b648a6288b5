"""One self-contained HTML report (plots inline as SVG, text kept as text) from runs. Reads results; never measures."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from bench.analysis.pareto import pareto_points
from bench.analysis.stats import confidence_interval
from bench.analysis.verify import Verdict, verify
from bench.analysis.whatif import paper_rows
from bench.core.caseid import case_label
from bench.core.errors import BadInput
from bench.core.noise import doubts, kinds, summary
from bench.core.params import CASE_PARAMS
from bench.core.schema import COLUMNS
from bench.report.textformat import verdict_rows
from bench.store.runs import Run, labels, ok_rows, with_case_params


def svg_figure(slug: str, draw: Callable) -> str | None:
    """Run draw(ax) on a new figure; return it as inline SVG (text kept as text, so a browser and a test
    can read every label), or None if it drew nothing. The legend and axis labels get ids slug-legend,
    slug-xlabel and slug-ylabel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # A fixed hash salt and no date: the same runs give the same report, byte for byte (diffable when committed).
    with plt.rc_context({"svg.fonttype": "none", "font.size": 11, "axes.titlesize": 13, "legend.fontsize": 10,
                         "svg.hashsalt": f"claimbench-{slug}"}):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        drew = draw(ax)
        if not drew:
            plt.close(fig)
            return None
        ax.grid(alpha=0.3)
        handles, names = ax.get_legend_handles_labels()
        for other in fig.axes[1:]:  # a twin axis (long-context decode speed) shares the legend
            h, n = other.get_legend_handles_labels()
            handles, names = handles + h, names + n
        if handles:  # beside the frame, never over the data; a long legend widens the figure instead
            fig.set_size_inches(max(fig.get_size_inches()[0], 12), fig.get_size_inches()[1])
            ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
                      fontsize=9).set_gid(f"{slug}-legend")
        for i, axis in enumerate(fig.axes):
            suffix = "" if i == 0 else f"{i + 1}"
            axis.xaxis.label.set_gid(f"{slug}-xlabel{suffix}")
            axis.yaxis.label.set_gid(f"{slug}-ylabel{suffix}")
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _rows_with(run: Run, *columns: str) -> pd.DataFrame:
    """The run's ok rows where every column is measured (none when an older or sparser file lacks one)."""
    rows = ok_rows(run)
    if any(c not in rows.columns for c in columns):
        return rows.iloc[0:0]
    return rows.dropna(subset=list(columns))


def throughput_vs_batch(runs: list[Run], names: dict[str, str]) -> Callable:
    def draw(ax) -> bool:
        drew = False
        for run in runs:
            df = with_case_params(run, _rows_with(run, "decode_tok_s", "model", "batch_size", "input_len",
                                                  "output_len"))
            # One line per case apart from its batch size: int4 weights or a compiled model is another line.
            for _, g in df.groupby(["model", "input_len", "output_len", *CASE_PARAMS], sort=False):
                g = g.sort_values("batch_size")
                line = g.iloc[0].copy()
                line["batch_size"] = None  # the x axis: case_label leaves it out
                # Error bars: the 95% interval of each case's repetitions (none where a case has one figure).
                spread = [s if (s := _interval_half(run, r)) == s else 0.0 for _, r in g.iterrows()]
                # Never below zero: a throughput is not negative, however wide its interval from few repetitions.
                lower = [min(s, v) for s, v in zip(spread, g["decode_tok_s"])]
                ax.errorbar(g["batch_size"], g["decode_tok_s"], yerr=[lower, spread],
                            marker="o", capsize=3, label=f"{names[run.name]}: {case_label(line, workload=False)}")
                drew = True
        _batch_axis(ax, [b for run in runs for b in _rows_with(run, "decode_tok_s", "batch_size")["batch_size"]])
        ax.set_xlabel("batch size (requests)")
        ax.set_ylabel("decode throughput (tok/s)")
        ax.set_title("Decode throughput vs batch size")
        return drew
    return draw


def _interval_half(run: Run, row: pd.Series) -> float:
    """Half the width of the 95% interval of a case's decode tok/s repetitions (NaN without them)."""
    interval = confidence_interval(run, row, "decode_tok_s")
    return (interval[1] - interval[0]) / 2 if interval else float("nan")


def _batch_axis(ax: Any, batches: list[Any]) -> None:
    """A log-2 batch axis labelled with the batch sizes themselves (1, 8, 32), never 2^0, 2^3."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log", base=2)
    values = sorted({int(b) for b in batches if b == b})
    if values:
        ax.xaxis.set_major_locator(FixedLocator(values))
        ax.set_xticks(values, [str(v) for v in values])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())


def latency_percentiles(runs: list[Run], names: dict[str, str]) -> Callable:
    def draw(ax) -> bool:
        labels, p50, p99 = [], [], []
        for run in runs:
            for _, r in _rows_with(run, "tpot_ms_p50", "tpot_ms_p99").iterrows():
                case = f" #{int(r['case'])}" if pd.notna(r.get("case")) else ""
                labels.append(f"{names[run.name]}{case}: {r['model']} bs {int(r['batch_size'])}")
                p50.append(r["tpot_ms_p50"])
                p99.append(r["tpot_ms_p99"])
        if not labels:
            return False
        y = range(len(labels))
        ax.barh([i - 0.2 for i in y], p50, 0.4, label="TPOT p50")
        ax.barh([i + 0.2 for i in y], p99, 0.4, label="TPOT p99")
        ax.set_yticks(list(y), labels, fontsize=9)
        ax.invert_yaxis()
        ax.figure.set_size_inches(9, max(3.0, 0.45 * len(labels) + 1.5))
        ax.set_xlabel("time per output token (ms)")
        ax.set_ylabel("run: model and batch (case)")
        ax.set_title("Per-token latency, p50 and p99")
        return True
    return draw


def _over_time(column: str, ylabel: str, title: str) -> Callable[[list[Run], dict[str, str]], Callable]:
    """A plot of one telemetry.csv column against time, one line per run and device."""
    def plot(runs: list[Run], names: dict[str, str]) -> Callable:
        def draw(ax) -> bool:
            drew = False
            for run in runs:
                try:
                    tel = run.telemetry()
                except BadInput:  # an unreadable telemetry.csv: that run has no line here, the rest go on
                    continue
                if tel.empty or "device" not in tel.columns or column not in tel.columns:
                    continue
                for device, g in tel.groupby("device"):
                    if g[column].notna().any():
                        ax.plot(g["t"], g[column], label=f"{names[run.name]}: {device}")
                        drew = True
            ax.set_xlabel("time since the run started (s)")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            return drew
        return draw
    return plot


power_over_time = _over_time("power_w", "power (W)", "Device power over time")
_device_memory = _over_time("mem_used_gb", "memory used (GB)", "Device memory over time")


def memory_over_time(runs: list[Run], names: dict[str, str]) -> Callable:
    """Device memory over time on an accelerator; on a CPU this run's own process (each case's peak RSS over
    the time the case ran), with the whole host's RAM in use only as a labelled, dashed context line."""
    cpu_runs = [r for r in runs if _is_cpu(r)]
    device_draw = _device_memory([r for r in runs if not _is_cpu(r)], names)

    def draw(ax) -> bool:
        drew = device_draw(ax)
        for run in cpu_runs:
            try:
                tel = run.telemetry()
            except BadInput:
                continue
            if tel.empty or "case" not in tel.columns:
                continue
            rows = ok_rows(run)
            xs, ys = [], []
            for _, r in rows.iterrows():
                if pd.isna(r.get("host_peak_rss_gb")) or pd.isna(r.get("case")):
                    continue
                times = tel.loc[tel["case"].astype(str) == str(int(r["case"])), "t"]
                if len(times):
                    xs += [float(times.min()), float(times.max())]
                    ys += [float(r["host_peak_rss_gb"])] * 2
            if xs:
                ax.plot(xs, ys, marker=".", label=f"{names[run.name]}: this process, peak RSS per case")
                drew = True
            host = tel[tel["mem_used_gb"].notna()] if "mem_used_gb" in tel.columns else tel.iloc[0:0]
            if not host.empty:
                ax.plot(host["t"], host["mem_used_gb"], linestyle=":", alpha=0.5,
                        label=f"{names[run.name]}: whole host RAM in use (all programs)")
                drew = True
        ax.set_xlabel("time since the run started (s)")
        ax.set_ylabel("memory (GB)")
        ax.set_title("Memory over time (on a CPU: this process's peak RSS per case)")
        return drew
    return draw


def _is_cpu(run: Run) -> bool:
    devices = run.results.get("device")
    return devices is not None and devices.astype(str).str.startswith("cpu").all()


def long_context_curve(runs: list[Run], names: dict[str, str]) -> Callable:
    def draw(ax) -> bool:
        drew = False
        ax2 = None
        for run in runs:
            df = _rows_with(run, "input_len", "ttft_ms_p50", "decode_tok_s")
            df = df[df["workload"].astype(str).str.contains("long-context")].sort_values("input_len")
            if df.empty:
                continue
            line = ax.plot(df["input_len"], df["ttft_ms_p50"], marker="o", label=f"{names[run.name]}: TTFT")[0]
            ax2 = ax2 or ax.twinx()
            ax2.plot(df["input_len"], df["decode_tok_s"], marker="s", linestyle="--", color=line.get_color(),
                     label=f"{names[run.name]}: decode (dashed)")
            drew = True
        if ax2 is not None:
            ax2.set_ylabel("decode throughput (tok/s)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("input length (tokens)")
        ax.set_ylabel("time to first token, p50 (ms)")
        ax.set_title("Long context: TTFT and decode speed as the context grows")
        return drew
    return draw


def pareto_curve(runs: list[Run], names: dict[str, str]) -> Callable:
    """Output tok/s per device against tok/s per user, one line per run through its loads (Pareto-optimal
    points filled): two servers compared at equal interactivity."""
    def draw(ax) -> bool:
        drew = False
        for run in runs:
            points = pareto_points(run.results)
            if len(points) < 2:
                continue
            line = ax.plot(points["per_user"], points["per_device"], marker="o", markerfacecolor="none",
                           label=names[run.name])[0]
            best = points[points["optimal"]]
            ax.plot(best["per_user"], best["per_device"], "o", color=line.get_color())
            drew = True
        ax.set_xlabel("per-user throughput (tok/s: 1000 / TPOT p50)")
        ax.set_ylabel("throughput per device (output tok/s)")
        ax.set_title("Throughput per device vs per user (filled: Pareto-optimal)")
        return drew
    return draw


def soak_curve(runs: list[Run], names: dict[str, str]) -> Callable:
    """A soak's slices over time: decode tok/s (solid) and board power (dashed, right axis) per case."""
    import re as regex

    def draw(ax) -> bool:
        drew, ax2 = False, None
        for run in runs:
            rows = ok_rows(run)
            if "soak_slices" not in rows.columns:
                continue
            for _, r in rows.dropna(subset=["soak_slices"]).iterrows():
                cells = [regex.match(r"(\d+)s:([\d.]*)tok/s,([\d.]*)W", c) for c in str(r["soak_slices"]).split(";")]
                points = [(float(m[1]), float(m[2]) if m[2] else float("nan"), float(m[3]) if m[3] else float("nan"))
                          for m in cells if m]
                if not points:
                    continue
                t, rate, watts = zip(*points)
                line = ax.plot(t, rate, marker="o", label=f"{names[run.name]}: {case_label(r, workload=False)}")[0]
                if any(w == w for w in watts):
                    ax2 = ax2 or ax.twinx()
                    ax2.plot(t, watts, linestyle="--", color=line.get_color(), label=f"{names[run.name]}: power")
                drew = True
        if ax2 is not None:
            ax2.set_ylabel("board power (W)")
        ax.set_xlabel("time since the hold started (s)")
        ax.set_ylabel("decode throughput (tok/s)")
        ax.set_title("Soak: decode speed (and power, dashed) over the hold")
        return drew
    return draw


PLOTS = (("throughput", "Throughput vs batch", throughput_vs_batch),
         ("pareto", "Per-user vs per-device throughput", pareto_curve),
         ("latency", "Latency percentiles", latency_percentiles),
         ("power", "Power over time", power_over_time),
         ("memory", "Memory over time", memory_over_time),
         ("long-context", "Long-context curve", long_context_curve),
         ("soak", "Sustained, not peak", soak_curve))


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


CASE_COLUMNS = ["workload", "model", "quant", "compile", "batch_size", "input_len", "output_len", "status",
                "decode_tok_s", "decode_tok_s_cv", "ttft_ms_p50", "tpot_ms_p50", "peak_mem_gb", "warnings"]


def _heading(column: str) -> str:
    """A column's name with its unit from the schema: 'decode_tok_s (tok/s)'."""
    unit = COLUMNS[column].unit if column in COLUMNS else ""
    return f"{column} ({unit})" if unit else column


def cases_table(runs: list[Run]) -> str:
    """Every case of every run, one anchor per row so verdicts can link to it; a case whose figures a warning
    doubts is marked "!" after its status, as in the terminal, and its warnings are named."""
    columns = CASE_COLUMNS
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["run", "case", *map(_heading, columns)])
    body = []
    for run in runs:
        for _, r in run.results.iterrows():
            case = r.get("case", "")
            case_text = "" if pd.isna(case) else str(int(case)) if isinstance(case, int | float) else str(case)
            cells = [f"<td>{html.escape(run.name)}</td>", f"<td>{html.escape(case_text)}</td>"]
            for c in columns:
                v = r.get(c, "")
                text = "" if v is None or (isinstance(v, float) and pd.isna(v)) else \
                    f"{v:.1%}" if c == "decode_tok_s_cv" and isinstance(v, float) else \
                    f"{v:.4g}" if isinstance(v, float) else str(v)
                if c == "status" and doubts(r.get("warnings")):
                    text += " !"
                if c == "warnings":
                    text = ", ".join(kinds(v))
                cells.append(f'<td class="{c}">{html.escape(text)}</td>')
            body.append(f'<tr id="{_anchor(run.name, case_text)}">{"".join(cells)}</tr>')
    return f'<table id="cases"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def warnings_summary(runs: list[Run]) -> str:
    """The noise warnings of every run, each line once with how many runs said it and what to do (as the terminal
    says them at the end of a run): noise is said, not hidden, and 200 runs saying one thing say it once."""
    said: dict[str, list[str]] = {}
    for run in runs:
        rows = run.results.to_dict("records")
        for advisory, heading in ((False, "warning"), (True, "note")):
            for line in summary(rows, advisory=advisory):
                said.setdefault(f"<b>{heading}</b> {html.escape(line)}", []).append(run.name)
    if not said:
        return ""
    items = [f"<li>{line} ({html.escape(names[0]) if len(names) == 1 else f'{len(names)} runs'})</li>"
             for line, names in said.items()]
    return f'<h2 id="warnings">Warnings</h2><p>Cases marked ! in the tables below.</p><ul>{"".join(items)}</ul>'


# What a headless browser test reads back after layout: how many plots were laid out, how many legends cover an
# axes' data area, and how far down the page the first answer table starts (px).
LAYOUT_PROBE = """<script>
window.addEventListener("load", () => {
  const plots = [...document.querySelectorAll("figure.plot svg")];
  document.body.dataset.plotsLoaded = plots.filter(p => p.getBoundingClientRect().width > 0).length;
  let covering = 0;
  for (const svg of plots) {
    const areas = [...svg.querySelectorAll('g[id^="axes_"] > g[id^="patch_"]:first-child')]
      .map(g => g.getBoundingClientRect());
    for (const legend of svg.querySelectorAll('[id$="-legend"]')) {
      const l = legend.getBoundingClientRect();
      if (areas.some(a => Math.min(l.right, a.right) - Math.max(l.left, a.left) > 1 &&
                          Math.min(l.bottom, a.bottom) - Math.max(l.top, a.top) > 1)) covering += 1;
    }
  }
  document.body.dataset.legendsCovering = covering;
  const answer = document.querySelector("table");
  document.body.dataset.firstTableTop = answer ? Math.round(answer.getBoundingClientRect().top) : -1;
});
</script>"""
MAX_DRAWN = 6  # runs a chart draws before a reader can no longer tell its lines apart
SUMMARY = (("decode_tok_s", "decode tok/s", "{:.1f}"), ("decode_tok_s_per_user", "tok/s per user", "{:.1f}"),
           ("ttft_ms_p50", "TTFT p50 ms", "{:.1f}"), ("ttft_ms_p99", "TTFT p99 ms", "{:.1f}"),
           ("tpot_ms_p50", "TPOT p50 ms", "{:.2f}"), ("tpot_ms_p99", "TPOT p99 ms", "{:.2f}"),
           ("energy_j_per_token", "J/token", "{:.3g}"), ("mbu", "MBU", "{:.0%}"))


def drawn_runs(runs: list[Run]) -> tuple[list[Run], dict[str, str]]:
    """The runs a chart draws, with the role each plays: all of them up to MAX_DRAWN, else the first (the
    baseline), the newest, the fastest (highest decode tok/s) and the newest others up to MAX_DRAWN."""
    if len(runs) <= MAX_DRAWN:
        return runs, {}
    def fastest(run: Run) -> float:
        rates = pd.to_numeric(ok_rows(run).get("decode_tok_s", pd.Series(dtype=float)), errors="coerce")
        return float(rates.max()) if rates.notna().any() else float("-inf")

    roles = {runs[0].name: "baseline", runs[-1].name: "newest"}
    roles.setdefault(max(runs, key=fastest).name, "fastest")
    for run in reversed(runs):
        if len(roles) >= MAX_DRAWN:
            break
        roles.setdefault(run.name, "")
    return [r for r in runs if r.name in roles], {k: v for k, v in roles.items() if v}


def summary_table(runs: list[Run]) -> str:
    """Each machine's key figures per workload and case: the median over the runs that measured the case, and
    how many did (a reader's own result, found without reading a chart)."""
    frames = [ok_rows(run).copy().assign(_run=run.name, _machine=run.device_name) for run in runs]  # copy: one block
    rows = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) \
        else pd.DataFrame()
    if rows.empty or "decode_tok_s" not in rows.columns:
        return ""
    rows["_case"] = [case_label(r, workload=False) for r in rows.to_dict("records")]
    present = [(c, head, fmt) for c, head, fmt in SUMMARY if c in rows.columns]
    for c, _, _ in present:
        rows[c] = pd.to_numeric(rows[c], errors="coerce")
    present = [(c, head, fmt) for c, head, fmt in present if rows[c].notna().any()]  # no column empty throughout
    head = "".join(f"<th>{h}</th>" for h in ["machine", "workload", "case", "runs", *(h for _, h, _ in present)])
    body = []
    # In the runs' own case order (batch 1, 2, ... 32), not as text (1, 16, 2).
    order = ["_machine", "workload", "case"] if "case" in rows.columns else ["_machine", "workload"]
    rows = rows.sort_values(order, kind="stable")
    for (machine, workload, case), g in rows.groupby(["_machine", "workload", "_case"], sort=False):
        cells = [html.escape(str(v)) for v in (machine, workload, case, g["_run"].nunique())]
        for c, _, fmt in present:
            value = g[c].median()
            cells.append("" if pd.isna(value) else fmt.format(value))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f'<h2 id="summary">Key figures</h2><p>Per machine, workload and case: the median over the runs that '
            f'measured it.</p><table id="summary-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def runs_list(runs: list[Run], names: dict[str, str]) -> str:
    """Which runs and machines the page holds; a long list folded under its one-line summary."""
    items = "".join(f"<li><b>{html.escape(names[r.name])}</b>: <code>{html.escape(r.name)}</code> on "
                    f"{html.escape(r.device_name)}, {len(r.results)} case(s)</li>" for r in runs)
    machines = sorted({r.device_name for r in runs})
    line = (f"{len(runs)} run{'s' if len(runs) != 1 else ''} on {len(machines)} machine"
            f"{'s' if len(machines) != 1 else ''}: {html.escape(', '.join(machines))}")
    if len(runs) <= MAX_DRAWN:
        return f'<h2 id="runs">Runs</h2><p>{line}.</p><ul>{items}</ul>'
    return f'<h2 id="runs">Runs</h2><details><summary>{line} (the list)</summary><ul>{items}</ul></details>'


MAX_BARS = 16  # bars a categorical chart holds before it is a table instead


def _bars(runs: list[Run]) -> int:
    return sum(len(_rows_with(run, "tpot_ms_p50", "tpot_ms_p99")) for run in runs)


def paper_section(verdicts: list[Verdict], cards: list[Any]) -> str:
    """Each claim beside what the named cards allow on paper, under the measured verdicts (never replacing them)."""
    rows = paper_rows(verdicts, cards)
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    colours = {"impossible on paper": "#f8d7da", "possible": "#d4edda", "unknown": "#eeeeee"}
    body = "".join("<tr>" + "".join(
        f'<td style="background:{colours.get(v, "#fff")}">{html.escape(str(v))}</td>' for v in row.values())
        + "</tr>" for row in rows)
    names = ", ".join(c.name for c in cards)
    return (f'<h2 id="paper">On paper: {html.escape(names)}</h2><p>What the datasheets allow under each claim\'s '
            f'own conditions (bench whatif); the measured verdicts above stand.</p><table id="paper-table">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def render(runs: list[Run], price_per_hour: float | None = None, groups: list[list[Run]] | None = None,
           scope: str = "", what_if: list[Any] | None = None) -> str:
    """The report's HTML text: what it holds, the verdicts and each machine's key figures first, then the plots
    (the few runs that matter drawn, the rest in the tables), then every case. scope: the line the reader
    printed (which runs were read, which roots left out)."""
    names = labels(runs)
    machines = sorted({r.device_name for r in runs})
    sections = []
    for slug, title, drawer in PLOTS:
        # Throughput against batch is a machine's own curve: one chart per machine; the others compare runs.
        per = [[r for r in runs if r.device_name == m] for m in machines] if slug == "throughput" and \
            len(machines) > 1 else [runs]
        bodies = []
        for k, group in enumerate(per):
            drawn, roles = drawn_runs(group)
            shown = {r.name: f"{names[r.name]} ({roles[r.name]})" if r.name in roles else names[r.name]
                     for r in drawn}
            if slug == "latency" and _bars(drawn) > MAX_BARS:
                bodies.append(f'<p class="empty">{_bars(drawn)} cases: too many bars to tell apart; their TPOT p50 '
                              'and p99 are in the key figures above.</p>')
                continue
            svg = svg_figure(slug if k == 0 else f"{slug}-{k + 1}", drawer(drawn, shown))
            left = len(group) - len(drawn)
            caption = f"<figcaption>{html.escape(machines[k]) + ': ' if len(per) > 1 else ''}Drawn: {len(drawn)} " \
                      f"of {len(group)} runs (the baseline, the newest, the fastest and the newest others); the " \
                      f"other {left} are in the tables.</figcaption>" if left else \
                f"<figcaption>{html.escape(machines[k])}</figcaption>" if len(per) > 1 else ""
            if svg:
                bodies.append(f'<figure class="plot" id="plot-{slug}{"" if k == 0 else f"-{k + 1}"}">{svg}'
                              f'{caption}</figure>')
        sections.append(f"<h2>{title}</h2>" + ("".join(bodies) or
                                               '<p class="empty">No data for this plot in these runs.</p>'))
    verdicts = verify(runs, price_per_hour, groups=groups)
    # What was measured first: the grey "not measured" rows follow, so the first screen shows answers.
    verdicts = sorted(verdicts, key=lambda v: v.verdict == "not measured")
    counts = {v: sum(1 for x in verdicts if x.verdict == v) for v in VERDICT_COLOURS}
    summary_line = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    measured_any = any(v.verdict != "not measured" for v in verdicts)
    claims = f"""<h2 id="claims">Do the claims hold here?</h2>
<p>{html.escape(summary_line)}. A verdict on hardware other than the claim's own checks the claimed figure on this
machine; it does not say the vendor's figure is wrong on theirs (see "where").</p>
{verdict_table(verdicts)}""" if measured_any else f"""<h2 id="claims">Claims</h2>
<p class="empty">None of the {len(verdicts)} claims is answered by these runs (a claim needs a real model at its
real size; the tiny smoke-test model and the simulated engine answer none). To measure them:
<code>bench run --workload claims</code> (<code>--quick</code> for a first look); each claim's own command is in
<code>bench list claims</code>.</p>"""
    noise = warnings_summary(runs)
    cases = cases_table(runs)
    n_cases = sum(len(r.results) for r in runs)
    if n_cases > 60:
        cases = f"<details><summary>{n_cases} cases (the table)</summary>{cases}</details>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>claimbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
#verdicts td.verdict {{ font-weight: bold; white-space: nowrap; }}
#summary-table td {{ white-space: nowrap; }}
p.scope {{ color: #444; }}
figure.plot {{ margin: 0; }} figure.plot svg {{ max-width: 100%; height: auto; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 13px; }}
</style></head>
<body>
<h1>claimbench report</h1>
<p class="scope">{html.escape(scope or "")}</p>
{claims if measured_any else ""}
{paper_section(verdicts, what_if) if what_if else ""}
{summary_table(runs)}
{runs_list(runs, names)}
{noise}
{''.join(sections)}
<h2>Cases</h2>
{cases}
{"" if measured_any else claims}
{LAYOUT_PROBE}
</body></html>
"""
