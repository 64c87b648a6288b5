"""A few hundred generated bad inputs against the CLI, in-process: exit 0, 1 or 2 only, one line on stderr
for 2, never a traceback, and nothing written outside --out.

Inputs: --set values of every kind (NaN, inf, huge, negative, empty, unicode, lists, garbage), workload
files (random bytes, truncations, wrong types), and run directories whose results.csv, samples.csv,
telemetry.csv and run.json are truncated, non-UTF-8, mistyped or hold non-numbers.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from bench.cli import main
from bench.spec.workload import PARAMS
from tests.helpers import ROOT, run_bench

VALUES = ["nan", "inf", "-inf", "-1", "0", "1e400", "99999999999999999999999", "", " ", "[1,", "[]", "true",
          "1,2,,3", "é☃", "\x00", "abc", "1.5", "-0", "[[1]]", "{a=1}", "'x'", "1;rm -rf /", "../../etc"]


def generated_sets(n: int, rng: random.Random) -> list[list[str]]:
    keys = list(PARAMS)
    return [["--set", f"{rng.choice(keys)}={rng.choice(VALUES)}"] for _ in range(n)]


def generated_workloads(n: int, rng: random.Random, where: Path) -> list[Path]:
    real = (ROOT / "workloads" / "throughput.toml").read_text()
    files = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif kind == 1:
            body = real[: rng.randrange(len(real))].encode()
        elif kind == 2:
            key = rng.choice(list(PARAMS))
            value = rng.choice(["nan", "inf", "-5", '"x"', "[]", "{}", "true", "1e999"])
            body = f"[params]\n{key} = {value}\n".encode()
        else:
            body = rng.choice([b"kind = 5\n", b"name = []\n", b"claims = \"x\"\n", b"[quick]\nbatch_size = \"a\"\n",
                               b"[params]\nmodel = \"no-such-model\"\n", b"\xff\xfe[params]\n"])
        path = where / f"w{i}.toml"
        path.write_bytes(body)
        files.append(path)
    return files


def corrupted_runs(source: Path, n: int, rng: random.Random, where: Path) -> list[Path]:
    runs = []
    for i in range(n):
        run = where / f"run{i}"
        shutil.copytree(source, run)
        target = run / rng.choice(["results.csv", "samples.csv", "telemetry.csv", "run.json"])
        data = target.read_bytes()
        how = i % 6
        if how == 0:
            data = data[: rng.randrange(len(data))]
        elif how == 1:
            data = data.replace(b"o", b"\xff", 3)
        elif how == 2:
            data = rng.choice([b"[]", b'"x"', b"{}", b'{"fingerprint": "str"}', b'{"fingerprint": {"accelerators": 5}}',
                               b""])
        elif how == 3:
            lines = data.split(b"\n")
            if len(lines) > 2:
                cells = lines[1].split(b",")
                cells[rng.randrange(len(cells))] = rng.choice([b"abc", b"inf", b"nan", b"-1e999", b"\xe9", b'"'])
                lines[1] = b",".join(cells)
            data = b"\n".join(lines)
        elif how == 4:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        else:
            data = data + b"\n1,2,3\n"
        target.write_bytes(data)
        runs.append(run)
    return runs


def outcome(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse --help and the like
        code = exc.code if isinstance(exc.code, int) else 2
    return code, capsys.readouterr().err


def test_a_few_hundred_bad_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = random.Random(1234)
    proc = run_bench("run", "--engine", "simulated", "--set", "min_reps=3", "--set", "min_seconds=0",
                     "--set", "idle_seconds=0", "--out", str(tmp_path / "good"))
    assert proc.returncode == 0, proc.stderr
    (good,) = (tmp_path / "good").iterdir()
    out = tmp_path / "out"
    commands: list[list[str]] = []
    commands += [["run", "--dry-run", "--out", str(out), *s] for s in generated_sets(150, rng)]
    commands += [["run", "--dry-run", "--out", str(out), "--workload", str(w)]
                 for w in generated_workloads(60, rng, tmp_path)]
    for run in corrupted_runs(good, 60, rng, tmp_path / "bad"):
        commands += [rng.choice([["compare", str(good), str(run)], ["check", "--baseline", str(good), str(run)],
                                 ["verify", str(run)], ["report", str(run), "-o", str(out / "r.html")]])]
    before = set(tmp_path.rglob("*"))
    for argv in commands:
        code, err = outcome(capsys, argv)
        assert code in (0, 1, 2), (argv, code, err)
        assert "Traceback" not in err, (argv, err)
        if code == 2:
            assert err.count("\n") == 1, (argv, err)
    written = {p for p in set(tmp_path.rglob("*")) - before if out not in p.parents and p != out}
    assert not written, sorted(map(str, written))[:5]
    assert len(commands) >= 250
