"""What a person sees on the report and the trend page, from two runs to two hundred, laid out by headless
Chromium: the answers on the first screen, no legend over a chart's data, the page within its weight."""

import re
import subprocess

import pytest

from tests.benchmarks.page_weight import make_runs
from tests.helpers import ROOT, headless_chromium, run_bench

MAX_PAGE_BYTES = 2_000_000
FIRST_SCREEN_PX = 900  # a 1280 x 900 window


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """200 copies of one 12-case simulated run, a commit each, a 10% decode step two thirds of the way."""
    return make_runs(tmp_path_factory.mktemp("pages"), 200)


def _laid_out(flags: list[str], page) -> dict[str, int]:
    dom = subprocess.run([*flags, "--window-size=1280,900", "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=180).stdout
    return {k: int(v) for k, v in re.findall(r'data-(plots-loaded|legends-covering|first-table-top)="(-?\d+)"', dom)}


@pytest.mark.parametrize("count", [2, 20, 200])
def test_the_report_answers_first_and_stays_readable(history, tmp_path, count):
    """The key figures table is on the first screen, every chart laid out with its legend beside the data, at
    most MAX_DRAWN runs drawn (the rest said to be in the tables), the page under 2 MB; a screenshot kept."""
    from bench.report.htmlreport import MAX_DRAWN

    page = tmp_path / "report.html"
    proc = run_bench("report", *map(str, history[:count]), "-o", str(page))
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert page.stat().st_size < MAX_PAGE_BYTES
    assert f"{count} runs" in text and 'id="summary-table"' in text
    assert text.index('id="summary-table"') < text.index('<figure class="plot"')
    # Each case of each machine once, the median over every run: 12 rows whatever the number of runs.
    assert text.count("<tr>", text.index('id="summary-table"'), text.index("</table>", text.index(
        'id="summary-table"'))) == 13
    legend = re.search(r'id="throughput-legend".*?</g>\s*</g>', text, re.S)
    assert legend is not None
    if count > MAX_DRAWN:
        assert f"Drawn: {MAX_DRAWN} of {count} runs" in text and "(baseline)" in text and "(newest)" in text
        assert "<details><summary>" in text  # the run list and the cases folded under one line each
    flags = headless_chromium(tmp_path)
    laid = _laid_out(flags, page)
    assert laid["plots-loaded"] == text.count('<figure class="plot"') >= 2
    assert laid["legends-covering"] == 0
    assert 0 <= laid["first-table-top"] < FIRST_SCREEN_PX / 2
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    subprocess.run([*flags, "--window-size=1280,900", "--hide-scrollbars",
                    f"--screenshot={artifacts / f'report-{count}.png'}", page.as_uri()], capture_output=True,
                   timeout=180)


def test_the_trend_page_leads_with_its_regressions(history, tmp_path):
    """50 commits of 12 cases: a row per series, the regressions (the 10% decode step) on top with a sparkline,
    one chart per case with its metrics as small multiples (not one per case and metric), under 2 MB."""
    page = tmp_path / "trend.html"
    proc = run_bench("history", *map(str, history[100:150]), "-o", str(page))  # the step is at run 133
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert page.stat().st_size < MAX_PAGE_BYTES
    rows = re.findall(r'<tr class="series" data-label="([^"]+)"', text)
    assert len(rows) >= 100 and rows[0] == "regression" and "ok" in rows
    assert rows == sorted(rows, key=lambda label: {"regression": 0, "improvement": 1}.get(label, 4))
    assert text.count('<svg class="spark"') == len(rows)
    assert text.count('<figure class="plot"') == 12  # one per case, its gated metrics side by side
    flags = headless_chromium(tmp_path)
    laid = _laid_out(flags, page)
    assert laid["plots-loaded"] == 12 and laid["legends-covering"] == 0
    assert 0 <= laid["first-table-top"] < FIRST_SCREEN_PX / 2
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    subprocess.run([*flags, "--window-size=1280,900", "--hide-scrollbars", f"--screenshot={artifacts / 'trend-50.png'}",
                    page.as_uri()], capture_output=True, timeout=180)


def test_a_series_with_too_few_points_is_a_row_not_a_chart(history, tmp_path):
    proc = run_bench("history", *map(str, history[:2]), "-o", str(tmp_path / "t.html"))
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "t.html").read_text()
    assert '<figure class="plot"' not in text and "2 point(s): no chart" in text
