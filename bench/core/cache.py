"""A small per-user cache of facts that are slow to work out and never change for the same input.

Model shapes (counting parameters needs transformers and a meta-device model: seconds) and the
device ceilings a probe measured (per machine fingerprint) live here, one JSON file per kind.
The cache is an optimisation only: a missing, unreadable or corrupt file is a miss, never an error.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """CLAIMBENCH_CACHE_DIR, else $XDG_CACHE_HOME/claimbench, else ~/.cache/claimbench."""
    explicit = os.environ.get("CLAIMBENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "claimbench"


def _file(kind: str) -> Path:
    return cache_dir() / f"{kind}.json"


def load(kind: str, key: str) -> Any | None:
    """The value stored under `key`, or None."""
    try:
        entries = json.loads(_file(kind).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return entries.get(key) if isinstance(entries, dict) else None


def store(kind: str, key: str, value: Any) -> None:
    """Store `value` under `key` (atomically: a reader never sees half a file). Failures are ignored."""
    path = _file(kind)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}
        if not isinstance(entries, dict):
            entries = {}
        entries[key] = value
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{kind}-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass
