"""The house's stages import only downward (.importlinter's layers contract, checked by .ci/run): the tree as
it is keeps the contract, and a deliberate violation (core reaching up into report) breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytest.importorskip("importlinter")


def _lint(root: Path) -> subprocess.CompletedProcess:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return subprocess.run([lint, "--config", str(root / ".importlinter"), "--no-cache"], capture_output=True,
                          text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)


def test_the_stages_import_only_downward_and_a_violation_fails(tmp_path):
    kept = _lint(ROOT)
    assert kept.returncode == 0, kept.stdout[-2000:]
    assert "1 kept, 0 broken" in kept.stdout
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "bench", copy / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", copy / ".importlinter")
    errors = copy / "bench" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport bench.report.terminal  # noqa: E402,F401 - the violation\n")
    broken = _lint(copy)
    assert broken.returncode == 1, broken.stdout[-2000:]
    assert "bench.core is not allowed to import bench.report" in broken.stdout
