"""Where the project's bundled data lives: the checkout's workloads/ and seeds/ folders, or (installed from
a wheel) the same files mapped into the package as bench/_data/."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # bench/ (this module is bench/core/paths.py)
PROJECT_ROOT = PACKAGE.parent
PACKAGE_DATA = PACKAGE / "_data"


def _bundled(folder: str) -> Path:
    """The checkout's folder when bench runs from one (editable install, tests), else the wheel's copy."""
    checkout = PROJECT_ROOT / folder
    return checkout if checkout.is_dir() else PACKAGE_DATA / folder


def workloads_dir() -> Path:
    """Directory of bundled workload TOML files (override with CLAIMBENCH_WORKLOADS)."""
    return Path(os.environ.get("CLAIMBENCH_WORKLOADS", _bundled("workloads")))


def models_dir() -> Path:
    """Directory of bundled model configs, one HF-style folder per model."""
    return workloads_dir() / "models"


def seeds_dir() -> Path:
    """Directory holding claims.toml."""
    return _bundled("seeds")
