"""compare, check, verify and report on runs the real harness made, plus hand-made broken CSVs."""

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest

from bench.analysis.claims import load_claims
from bench.analysis.compare import compare_table
from bench.analysis.cost import owned_cost_per_hour, usd_per_mtok_owned, usd_per_mtok_rented
from bench.store.runs import load_run
from tests.helpers import ROOT, headless_chromium, run_bench


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of the same workload (the simulated engine: this module tests reading runs, not measuring)."""
    out = tmp_path_factory.mktemp("runs")
    args = ["run", "--out", str(out), "--engine", "simulated", "--set", "batch_size=1,2", "--set", "min_reps=8",
            "--set", "min_seconds=0",
            "--set", "idle_seconds=0", "--set", "output_len=16"]
    for _ in range(2):
        proc = run_bench(*args)
        assert proc.returncode == 0, proc.stderr
    return sorted(p for p in out.iterdir() if p.is_dir())


def doctor(run_dir, dest, factor):
    """A copy of a run where every throughput is `factor` times and every latency 1/factor times."""
    shutil.copytree(run_dir, dest)
    for name, cols_up, cols_down in (
        ("results.csv", ["decode_tok_s", "prefill_tok_s", "output_tok_s", "decode_tok_s_per_user"],
         ["ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50", "itl_ms_p99"]),
        ("samples.csv", ["decode_tok_s", "prefill_tok_s", "output_tok_s"], ["ttft_ms", "tpot_ms", "e2e_ms"]),
    ):
        df = pd.read_csv(dest / name)
        for c in cols_up:
            df[c] = df[c] * factor
        for c in cols_down:
            df[c] = df[c] / factor
        df.to_csv(dest / name, index=False)
    return dest


def test_check_passes_identical_and_fails_a_doctored_slower_run(two_runs, tmp_path):
    base = two_runs[0]
    proc = run_bench("check", "--baseline", str(base), str(doctor(base, tmp_path / "same", 1.0)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    slower = doctor(base, tmp_path / "slower", 0.7)
    proc = run_bench("check", "--baseline", str(base), str(slower))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "regression" in proc.stdout and "decode_tok_s" in proc.stdout
    # 30% slower is inside a 40% tolerance: passes.
    proc = run_bench("check", "--baseline", str(base), str(slower), "--tolerance", "50")
    assert proc.returncode == 0, proc.stdout
    faster = doctor(base, tmp_path / "faster", 1.3)
    assert run_bench("check", "--baseline", str(base), str(faster)).returncode == 0


def test_compare_formats_and_plot(two_runs, tmp_path):
    table = compare_table([load_run(p) for p in two_runs])
    assert "decode_tok_s x1/0" in table.columns and len(table) == 2
    assert table["decode_tok_s x1/0"].between(0.3, 3).all()
    for fmt, marker in (("table", "run i over run 0"), ("markdown", "| workload"), ("csv", "workload,"), ("html", "<table")):
        proc = run_bench("compare", *map(str, two_runs), "--format", fmt)
        assert proc.returncode == 0 and marker in proc.stdout, proc.stderr
    plot = tmp_path / "cmp.png"
    proc = run_bench("compare", *map(str, two_runs), "--plot", str(plot), "--price-per-hour", "2.5")
    assert proc.returncode == 0, proc.stderr
    assert plot.stat().st_size > 10_000 and "usd_per_mtok" in proc.stdout


def test_verify_lists_every_claim(two_runs):
    ids = [c.id for c in load_claims()]
    assert len(ids) == 19 and len(set(ids)) == 19
    proc = run_bench("verify", str(two_runs[0]), "--format", "md")
    assert proc.returncode == 0, proc.stderr
    for claim_id in ids:
        assert claim_id in proc.stdout
    assert "not measured" in proc.stdout
    # A quick run on the tiny model answers no claim, and the table says what would.
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| groq-500-tps"))
    assert "no run of the throughput workload" in line
    assert "| holds |" not in proc.stdout and "| does not hold |" not in proc.stdout
    # No RUN reads ./results; where there is none, that is one line and exit 2 (not 19 "not measured" rows).
    empty = two_runs[0].parent.parent / "empty-cwd"
    empty.mkdir(exist_ok=True)
    proc = run_bench("verify", "--format", "md", cwd=empty)
    assert proc.returncode == 2 and "no ./results" in proc.stderr and proc.stdout == ""


def test_cost_model():
    assert usd_per_mtok_rented(1000.0, 3.6) == pytest.approx(1.0)  # 3.6M tok/hour at $3.6
    hourly = owned_cost_per_hour(8760.0, 1.0, 1.0, 1000.0, 0.1)
    assert hourly == pytest.approx(1.0 + 0.1)
    assert usd_per_mtok_owned(1000.0, 8760.0, 1.0, 1.0, 1000.0, 0.1) == pytest.approx(1.1 / 3.6)
    assert pd.isna(usd_per_mtok_owned(1000.0, 8760.0, 1.0, 1.0, float("nan"), 0.1))


class _SvgText(HTMLParser):
    """Text inside each element whose id ends in -legend, -xlabel or -ylabel (matplotlib SVG, text as text)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.texts: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        gid = dict(attrs).get("id") or ""
        self.stack.append(gid if re.search(r"-(legend|xlabel|ylabel)\d*$", gid) else None)

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        owner = next((g for g in reversed(self.stack) if g), None)
        if owner and data.strip():
            self.texts.setdefault(owner, []).append(data.strip())


def test_report_renders_in_headless_chromium(two_runs, tmp_path):
    """Two runs on one machine (the simulated engine: no claim answered): the measured results first and then
    one line about the claims, every plot laid out, legends that tell the runs apart, every axis labelled
    with a unit; a screenshot is kept in test-artifacts/ for a person to look at."""
    out = tmp_path / "report.html"
    proc = run_bench("report", *map(str, two_runs), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    plots = text.count('<figure class="plot"')
    assert plots >= 3
    # Nothing measured: not a wall of grey rows before anything measured, but one line after the cases.
    said = f"None of the {len(load_claims())} claims is answered"
    assert 'id="verdicts"' not in text and text.index('id="cases"') < text.index(said)
    # The same runs give the same report, byte for byte (no date, no random SVG ids): a committed one diffs.
    again = tmp_path / "again.html"
    assert run_bench("report", *map(str, two_runs), "-o", str(again)).returncode == 0
    assert again.read_text() == text
    flags = headless_chromium(tmp_path)
    dom = subprocess.run([*flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert int(dom.stdout.split('data-plots-loaded="')[1].split('"')[0]) == plots
    assert dom.stdout.index('class="plot"') < dom.stdout.index(said)
    parsed = _SvgText()
    parsed.feed(dom.stdout)
    legend = parsed.texts["throughput-legend"]
    assert len(legend) == len(set(legend)) >= 2, legend  # the same machine twice, still two labels
    labels = {k: " ".join(v) for k, v in parsed.texts.items() if not k.endswith("legend")}
    assert labels and all(re.search(r"\(.+\)", v) for v in labels.values()), labels  # a unit on every axis
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "report.png"
    subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={shot}", out.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("schema_version,run_id,workload\n", "missing column"),
        ("schema_version,status,workload,model\n", "no result rows"),
        ("schema_version,status,workload,model\n99,ok,quick,tiny\n", "newer"),
        ("schema_version,status,workload,model\n1,ok,quick,tiny\n1,ok,qu", "truncated"),
    ],
)
def test_bad_run_files_exit_2(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_text(content)
    for cmd in (["compare", str(run), str(run)], ["verify", str(run)], ["check", "--baseline", str(run), str(run)],
                ["report", str(run), "-o", str(tmp_path / "r.html")]):
        proc = run_bench(*cmd)
        assert proc.returncode == 2, (cmd, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr


def test_not_a_run(tmp_path):
    proc = run_bench("compare", str(tmp_path), str(tmp_path))
    assert proc.returncode == 2 and "neither a run directory" in proc.stderr


def test_compare_bad_metric_and_unwritable_plot(two_runs, tmp_path):
    proc = run_bench("compare", *map(str, two_runs), "--metrics", "speed")
    assert proc.returncode == 2 and "unknown metric" in proc.stderr
    proc = run_bench("compare", *map(str, two_runs), "--plot", str(tmp_path / "missing" / "x.png"))
    assert proc.returncode == 2 and "cannot write plot" in proc.stderr and "Traceback" not in proc.stderr


def test_old_full_width_and_new_sparse_results_read_alike(two_runs, tmp_path):
    """Runs written before results.csv went sparse have every column; readers take both kinds side by side."""
    from bench.core.schema import RESULT_COLUMN_NAMES

    new = two_runs[0]
    old = tmp_path / "20200101T000000Z-old-quick"
    shutil.copytree(new, old)
    df = pd.read_csv(old / "results.csv")
    assert len(df.columns) < len(RESULT_COLUMN_NAMES)
    df.reindex(columns=list(RESULT_COLUMN_NAMES)).to_csv(old / "results.csv", index=False)
    for cmd in (["compare", str(old), str(new)], ["compare", str(new), str(old)],
                ["check", "--baseline", str(old), str(new)], ["verify", str(old), str(new)],
                ["report", str(old), str(new), "-o", str(tmp_path / "r.html")]):
        proc = run_bench(*cmd)
        assert proc.returncode == 0, (cmd, proc.stderr)
    assert "decode_tok_s" in run_bench("compare", str(old), str(new)).stdout


def test_figures_for_people_never_use_an_exponent_for_whole_numbers():
    from bench.report.textformat import num

    assert num(131056.0) == "131056" and num(135915.3) == "135915" and num(999.6, 3) == "1000"
    assert num(0.6252) == "0.6252" and num(8.5374) == "8.537" and num(float("nan")) == "" and num(None) == ""


def test_a_case_is_named_by_what_it_has():
    """No 'bs=nan' for a microbenchmark; the parameters that set a case apart are named."""
    from bench.core.caseid import case_label

    membw = pd.Series({"workload": "membw", "model": "none", "dtype": "float32", "batch_size": float("nan"),
                       "size_mb": 256.0, "bandwidth_gb_s [0]": 24.3})
    assert case_label(membw) == "membw float32 256 MiB"
    matmul = {"workload": "matmul", "model": "none", "dtype": "bfloat16", "matmul_n": 8192, "tflops": 666.0}
    assert case_label(matmul, workload=False) == "bfloat16 n=8192"
    edge = {"workload": "edge", "model": "gemma-2-2b", "dtype": "bfloat16", "batch_size": 1.0, "input_len": 64,
            "output_len": 16, "quant": "int4", "compile": "True", "device_count": 2, "prefix_len": 0}
    assert case_label(edge) == "edge gemma-2-2b bfloat16 bs=1 in=64 out=16 int4 compiled on 2 devices"
    # An older full-width row holds every column, empty where not measured: no buffer or matrix size.
    old = {**edge, "quant": "none", "compile": False, "device_count": 1, "size_mb": 1024, "matmul_n": 2048,
           "bandwidth_gb_s": float("nan"), "tflops": float("nan")}
    assert case_label(old) == "edge gemma-2-2b bfloat16 bs=1 in=64 out=16"


def test_pareto_points_per_user_against_per_device():
    """Per-user tok/s against per-device tok/s, sorted by the first; a point another beats on both is not
    Pareto-optimal; a row on two cards counts half its throughput per device; failed rows are no point."""
    from bench.analysis.pareto import pareto_points

    rows = pd.DataFrame({"status": ["ok", "ok", "ok", "ok", "error"], "case": [0, 1, 2, 3, 4],
                         "decode_tok_s_per_user": [100.0, 80.0, 50.0, 40.0, 10.0],
                         "output_tok_s": [100.0, 300.0, 600.0, 500.0, 900.0], "device_count": [1, 1, 1, 2, 1]})
    points = pareto_points(rows)
    assert list(points["per_user"]) == [40.0, 50.0, 80.0, 100.0]
    assert list(points["per_device"]) == [250.0, 600.0, 300.0, 100.0]
    assert list(points["optimal"]) == [False, True, True, True]
    assert pareto_points(rows.drop(columns=["output_tok_s"])).empty


def test_report_and_compare_plot_draw_the_pareto_curve(tmp_path):
    """Two load sweeps (the simulated engine at batch 1, 4 and 16): the report has the Pareto figure, and
    `bench compare --plot` draws it too."""
    from bench.report.htmlreport import render
    from bench.store.runs import load_runs

    for i in range(2):
        proc = run_bench("run", "--engine", "simulated", "--set", "batch_size=1,4,16", "--set", "min_reps=2",
                         "--set", "min_seconds=0", "--set", "idle_seconds=0", "--set", "canary_seconds=0",
                         "--out", str(tmp_path / f"r{i}"))
        assert proc.returncode == 0, proc.stderr
    runs = [str(next((tmp_path / f"r{i}").iterdir())) for i in range(2)]
    page = render(load_runs(runs))
    figure = re.search(r'<figure class="plot" id="plot-pareto">(.*?)</figure>', page, re.S)
    assert figure and "per-user throughput" in figure.group(1)
    plot = tmp_path / "cmp.png"
    proc = run_bench("compare", *runs, "--plot", str(plot))
    assert proc.returncode == 0 and plot.stat().st_size > 10_000, proc.stderr
