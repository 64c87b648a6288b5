"""Write a run directory incrementally, and read runs back.

Every row is appended and flushed to disk as soon as its case finishes
(hyperfine style), so a crash, Ctrl-C or OOM kill keeps every finished row.
A run directory is created exclusively: an existing run is never overwritten.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import BadInput
from bench.core.noise import NoiseWarning, kinds_text
from bench.core.schema import (
    NUMERIC_COLUMNS,
    RESULT_COLUMN_NAMES,
    RUN_KEYS,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    TELEMETRY_COLUMNS,
)
from bench.core.secrets import redact, redact_all
from bench.telemetry.base import Reading


def make_run_id(workload: str, now: datetime | None = None, host: str | None = None) -> str:
    """<UTC yyyymmddThhmmssZ>-<host>-<workload>, with path-unsafe characters replaced."""
    now = now or datetime.now(timezone.utc)
    host = host or socket.gethostname().split(".")[0]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{host}-{workload}")
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{safe}"


def format_cell(value: Any) -> str:
    """CSV text: NaN/None -> empty (not measured), bools -> true/false, floats with enough digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) or math.isinf(value) else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


class _CsvAppender:
    """Appends dict rows to one CSV file with a fixed header, flushed and synced per call."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path, self.columns = path, columns
        self._fh = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(columns)
        self._sync()

    def append(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._writer.writerow([format_cell(row.get(c)) for c in self.columns])
        self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def new_run_dir(root: Path, name: str) -> Path:
    """Create root/<time>-<host>-<name> exclusively (a suffix when it exists): a run is never overwritten."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create output directory {root}: {exc.strerror or exc}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise BadInput(f"output directory {root} is not writable")
    base = make_run_id(name)
    for attempt in range(1, 1000):
        run_id = base if attempt == 1 else f"{base}-{attempt}"
        try:
            (root / run_id).mkdir()  # exclusive: never reuse an existing run directory
            return root / run_id
        except FileExistsError:
            continue
        except OSError as exc:
            raise BadInput(f"cannot write to output directory {root}: {exc.strerror or exc}") from None
    raise BadInput(f"too many runs named {base} in {root}")


class RunWriter:
    """Creates results/<run_id>/ and writes results.csv, samples.csv, telemetry.csv and run.json."""

    def __init__(self, root: Path, workload: str, columns: tuple[str, ...] = RESULT_COLUMN_NAMES) -> None:
        path = new_run_dir(root, workload)
        run_id = path.name
        self.run_id = run_id
        self.path = root / run_id
        self.results = _CsvAppender(self.path / "results.csv", columns)
        self.samples = _CsvAppender(self.path / "samples.csv", SAMPLE_COLUMNS)
        self.telemetry = _CsvAppender(self.path / "telemetry.csv", TELEMETRY_COLUMNS)
        self.meta: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "run_id": run_id}

    def write_meta(self, **fields: Any) -> None:
        """Merge fields into run.json and rewrite it atomically; every key must be one RUN_KEYS defines."""
        unknown = sorted(set(fields) - set(RUN_KEYS))
        if unknown:
            raise ValueError(f"run.json keys not defined in bench.core.schema.RUN_KEYS: {', '.join(unknown)}")
        self.meta.update(redact_all(fields))
        tmp = self.path / "run.json.tmp"
        tmp.write_text(json.dumps(_clean_json(self.meta), indent=2, default=str) + "\n")
        os.replace(tmp, self.path / "run.json")

    def append_case(self, row: dict[str, Any], samples: list[dict[str, Any]],
                    telemetry: list[tuple[Reading, str]], t0: float, warnings: Sequence[NoiseWarning] = ()) -> None:
        """Write one case's row, its repetitions and the telemetry taken meanwhile (t relative to t0); the case's
        warnings go into the `warnings` column (their kinds) and, as text, into `detail`."""
        self.samples.append(samples)
        self.telemetry.append([_telemetry_row(r, case, t0) for r, case in telemetry])
        row["warnings"] = kinds_text(list(warnings))
        detail = "; ".join(d for d in [str(row.get("detail", "") or ""), *map(str, warnings)] if d)
        row["detail"] = redact(detail)  # engine errors may quote a URL with credentials
        lost = sorted(k for k, v in row.items() if k not in self.results.columns and format_cell(v) != "")
        if lost:  # a scenario filled a column it did not declare: a bug, never a silent loss
            raise ValueError(f"row has values for undeclared column(s) {', '.join(lost)}; declare them in the "
                             "scenario's declared_columns() (and bench.core.schema)")
        self.results.append([row])  # last: a row in results.csv means the case is complete

    def cases_written(self) -> int:
        """Rows in results.csv as it is on disk: a Ctrl-C between writing a row and counting it cannot
        make run.json disagree with the file."""
        with (self.path / "results.csv").open(newline="", encoding="utf-8") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)

    def close(self) -> None:
        for f in (self.results, self.samples, self.telemetry):
            f.close()


def _telemetry_row(r: Reading, case: str, t0: float) -> dict[str, Any]:
    return {
        "t": round(r.t - t0, 4), "device": r.device, "power_w": r.power_w, "energy_j": r.energy_j,
        "mem_used_gb": r.mem_used_gb, "util": r.util, "sm_clock_mhz": r.sm_clock_mhz,
        "mem_clock_mhz": r.mem_clock_mhz, "temp_c": r.temp_c, "throttle": ";".join(r.throttle), "case": case,
    }


def _clean_json(value: Any) -> Any:
    """NaN -> None recursively, since JSON has no NaN."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def clean_for_json(value: Any) -> Any:
    """Public: make a structure JSON-safe (NaN -> null)."""
    return _clean_json(value)


def results_csv_path(run: str | Path) -> Path:
    """A run directory or its results.csv -> the results.csv path (BadInput if neither)."""
    path = Path(run)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise BadInput(f"{run}: not a run directory or results.csv")
    return path


def read_results(run: str | Path) -> pd.DataFrame:
    """results.csv as a DataFrame, checked: not empty, contract columns present, schema not newer."""
    path = results_csv_path(run)
    _check_complete_lines(path)
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise BadInput(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("schema_version", "status", "workload", "model") if c not in df.columns]
    if missing:
        raise BadInput(f"{path}: missing column(s) {', '.join(missing)}: not a claimbench results.csv")
    if df.empty:
        raise BadInput(f"{path}: no result rows")
    _numbers_only(df, path, NUMERIC_COLUMNS)
    versions = pd.to_numeric(df["schema_version"], errors="coerce")
    if versions.isna().any():
        raise BadInput(f"{path}: schema_version is not a number in every row (truncated file?)")
    if (versions > SCHEMA_VERSION).any():
        raise BadInput(f"{path}: schema version {int(versions.max())} is newer than this claimbench "
                       f"understands ({SCHEMA_VERSION}); upgrade claimbench")
    return df


def _numbers_only(df: pd.DataFrame, path: Path, columns: Any) -> None:
    """Numeric columns hold finite numbers or nothing: anything else is a corrupt file, never a measurement.
    Converts those columns in place."""
    for col in [c for c in columns if c in df.columns]:
        if df[col].dtype.kind in "fiu":  # parsed as numbers already: only an infinity can be wrong
            if df[col].dtype.kind == "f" and np.isinf(df[col].to_numpy()).any():
                first = int(np.flatnonzero(np.isinf(df[col].to_numpy()))[0])
                raise BadInput(f"{path}: column {col}, row {first + 1}: {df[col].iloc[first]!r} is not a finite "
                               "number")
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        if values.dtype == bool:
            values = values.astype(float)
        bad = (df[col].notna() & values.isna()) | values.isin([float("inf"), float("-inf")])
        if bad.any():
            first = bad[bad].index[0]
            raise BadInput(f"{path}: column {col}, row {first + 1}: {df[col][first]!r} is not a finite number")
        df[col] = values


def read_table(path: Path, numeric: Any) -> pd.DataFrame:
    """samples.csv or telemetry.csv, checked like results.csv: readable, numbers where numbers belong.
    An empty file is an empty table (a run that measured nothing yet)."""
    try:
        df = pd.read_csv(path, encoding="utf-8")
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise BadInput(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    _numbers_only(df, path, numeric)
    return df


def read_meta(path: Path) -> dict[str, Any]:
    """run.json as a dict; its nested sections, where present, of the right shape."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise BadInput(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise BadInput(f"{path}: expected a JSON object, got {type(meta).__name__}")
    for key, (kind, _) in RUN_KEYS.items():
        value = meta.get(key)
        wrong = not isinstance(value, kind) or (isinstance(value, bool) and kind is int)
        if value is not None and wrong:
            expected = kind.__name__ if isinstance(kind, type) else kind[0].__name__
            raise BadInput(f"{path}: '{key}' should be a {expected}, got {type(value).__name__}")
    fp = meta.get("fingerprint") or {}
    for key, kind in (("accelerators", list), ("versions", dict), ("device", dict), ("git", dict)):
        if fp.get(key) is not None and not isinstance(fp[key], kind):
            raise BadInput(f"{path}: fingerprint '{key}' should be a {kind.__name__}, got {type(fp[key]).__name__}")
    if any(not isinstance(a, dict) for a in fp.get("accelerators") or []):
        raise BadInput(f"{path}: fingerprint 'accelerators' should hold objects")
    return meta


def _check_complete_lines(path: Path) -> None:
    """Every row has the header's field count and the file ends with a newline (we always write one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc})") from None
    if not text.strip():
        raise BadInput(f"{path}: empty file")
    rows = list(csv.reader(text.splitlines()))
    width = len(rows[0])
    for number, row in enumerate(rows[1:], start=2):
        if row and len(row) != width:
            raise BadInput(f"{path}: line {number} has {len(row)} fields, the header {width}: truncated or corrupt")
    if not text.endswith("\n"):
        raise BadInput(f"{path}: last line is incomplete: truncated file")
