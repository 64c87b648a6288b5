"""Where the project's bundled data lives."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def workloads_dir() -> Path:
    """Directory of bundled workload TOML files (override with CLAIMBENCH_WORKLOADS)."""
    return Path(os.environ.get("CLAIMBENCH_WORKLOADS", PROJECT_ROOT / "workloads"))


def models_dir() -> Path:
    """Directory of bundled model configs, one HF-style folder per model."""
    return workloads_dir() / "models"


def seeds_dir() -> Path:
    """Directory holding claims.toml."""
    return PROJECT_ROOT / "seeds"
