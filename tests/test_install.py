"""A wheel install works from any directory: the bundled workloads, model configs and claims travel in it."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built as a wheel and installed into a fresh venv whose dependencies are this one's."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp / "dist").glob("claimbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bench/_data/seeds/claims.toml" in names and "bench/_data/workloads/quick.toml" in names
    assert "bench/_data/workloads/models/tiny/config.json" in names
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.check_output([str(venv / "bin" / "python"), "-c",
                                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    # Reuse this environment's dependencies (a plain path: its .pth files, the editable claimbench among them,
    # are not read), then install the wheel itself with this pip.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "--no-deps", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    return venv


def bench(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLAIMBENCH_WORKLOADS")}
    return subprocess.run([str(venv / "bin" / "bench"), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_the_installed_wheel_runs_from_any_directory(installed, tmp_path):
    where = subprocess.check_output([str(installed / "bin" / "python"), "-c", "import bench; print(bench.__file__)"],
                                    text=True, cwd=tmp_path)
    assert str(installed) in where  # the wheel's copy, not the checkout
    listed = bench(installed, tmp_path, "list", "workloads")
    assert listed.returncode == 0 and "long-context" in listed.stdout and "claims" in listed.stdout, listed.stderr
    dry = bench(installed, tmp_path, "run", "--dry-run")
    assert dry.returncode == 0 and "tiny" in dry.stdout, dry.stderr
    run = bench(installed, tmp_path, "run", "--set", "min_reps=1", "--set", "min_seconds=0", "--set", "idle_seconds=0",
                "--set", "batch_size=1", "--set", "output_len=4")
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "results").glob("*/results.csv"))) == 1  # ./results of the current directory
    claims = bench(installed, tmp_path, "verify", str(tmp_path / "results"), "--format", "csv")
    assert claims.returncode == 0 and "groq-500-tps" in claims.stdout, claims.stderr
