"""Load run directories for the commands that read results (compare, check, verify, report)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.caseid import param_text
from bench.core.errors import BadInput
from bench.core.params import CASE_PARAMS, RAN
from bench.core.schema import SAMPLE_COLUMNS, TELEMETRY_COLUMNS
from bench.store.results import read_meta, read_results, read_table, results_csv_path


@dataclass
class Run:
    """One run: its name, results table, raw samples (may be empty) and run.json (may be empty)."""

    name: str
    path: Path
    results: pd.DataFrame
    samples: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def device_name(self) -> str:
        names = self.results.get("device_name")
        return str(names.dropna().iloc[0]) if names is not None and names.notna().any() else "unknown"

    def telemetry(self) -> pd.DataFrame:
        """telemetry.csv, checked (empty when the run has none)."""
        path = self.path / "telemetry.csv"
        if not path.is_file():
            return pd.DataFrame()
        return read_table(path, [c for c in TELEMETRY_COLUMNS if c not in ("device", "throttle", "case")])

    def fingerprint(self) -> dict[str, Any]:
        return self.meta.get("fingerprint", {}) or {}

    @property
    def label(self) -> str:
        """A short name for legends: the --label given at run time, else time, host and workload."""
        given = self.meta.get("label")
        if isinstance(given, str) and given.strip():
            return given.strip()
        match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-(.+)", self.name)
        if not match:
            return self.name
        _, month, day, hour, minute, second, rest = match.groups()
        return f"{month}-{day} {hour}:{minute}:{second} {rest}"


def labels(runs: list[Run]) -> dict[str, str]:
    """Each run's label, made unique (two runs given the same --label get #2, #3...)."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for run in runs:
        label = run.label
        seen[label] = seen.get(label, 0) + 1
        out[run.name] = label if seen[label] == 1 else f"{label} #{seen[label]}"
    return out


def legacy_warning_kinds(detail: Any) -> str:
    """The `warnings` column of a row written before it existed: the kinds its detail names
    ("...; warning high-cv: ..."), the one place text is read back into kinds."""
    found = [part[len("warning "):].split(":", 1)[0] for part in str(detail).split("; ") if part.startswith("warning ")]
    return ";".join(dict.fromkeys(found))


def load_run(spec: str | Path) -> Run:
    """A run directory or its results.csv -> Run (BadInput with one clear reason otherwise)."""
    csv_path = results_csv_path(spec)
    results = read_results(csv_path)
    if "warnings" not in results.columns:  # an older run: its kinds are in the detail text
        details = results["detail"] if "detail" in results.columns else pd.Series([""] * len(results))
        results["warnings"] = [legacy_warning_kinds(d) for d in details.fillna("")]
    directory = csv_path.parent
    samples = pd.DataFrame()
    if (directory / "samples.csv").is_file():
        samples = read_table(directory / "samples.csv", [c for c in SAMPLE_COLUMNS if c != "run_id"])
    meta: dict[str, Any] = {}
    if (directory / "run.json").is_file():
        meta = read_meta(directory / "run.json")
    name = directory.name if csv_path.name == "results.csv" else csv_path.stem
    return Run(name, directory, results, samples, meta)


def find_runs(root: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """The run directories under a results root at any depth (a suite's root inside it, results/reference/...),
    each once, oldest first (run ids start with the UTC time); none under `exclude`."""
    import os

    skip = [e.resolve() for e in exclude]
    found = {Path(d).resolve() for d, _dirs, files in os.walk(root) if "results.csv" in files}
    found = {d for d in found if not any(d.is_relative_to(e) for e in skip)}
    return sorted(found, key=lambda p: (p.name, str(p)))


@dataclass
class ReadRuns:
    """The runs read for a command, in groups (one per argument given), and what was skipped and why."""

    groups: list[list[Run]]
    skipped: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # sub-roots not read unless named (results/reference)

    @property
    def runs(self) -> list[Run]:
        return [run for group in self.groups for run in group]

    def said(self) -> str:
        """The first line a reader prints: '12 runs under ./results, 2 machines'."""
        runs = self.runs
        machines = sorted({r.device_name for r in runs})
        where = f" under {', '.join(_short(p) for p in self.roots)}" if self.roots else ""
        names = ", ".join(machines)
        text = f"{len(runs)} run{'s' if len(runs) != 1 else ''}{where}, {len(machines)} machine" \
               f"{'s' if len(machines) != 1 else ''} ({names if len(names) <= 22 else names[:19] + '...'})"
        text += f"; {len(self.skipped)} unreadable" if self.skipped else ""
        for root in self.left_out:
            text += f"; {_short(root, 40)} left out (runs of other machines: name it to read them)"
        return text


def _short(path: str, width: int = 18) -> str:
    """A path as a one-line message names it: relative to here when inside it, else its last characters."""
    import os

    rel = os.path.relpath(path)
    text = rel if not rel.startswith("..") else str(path)
    return text if len(text) <= width else "..." + text[-(width - 3):]


def read_runs(specs: list[str], loader: Any = None, exclude: tuple[Path, ...] = ()) -> ReadRuns:
    """Any mix of run directories, results.csv files and results roots (searched at any depth), one group per
    spec; a run named twice (or a root and a run inside it) is read once, where it first appears. A run that
    cannot be read inside a root is skipped with the reason; one named by itself is bad input. loader: what
    reads one run (default load_run; bench history's lighter reader holds thousands). exclude: sub-roots
    whose runs a root given here does not stand for."""
    loader = loader or load_run
    if not specs:
        raise BadInput("give at least one run directory, results.csv or results root")
    seen: set[Path] = set()
    loaded = ReadRuns([], left_out=[str(e) for e in exclude if e.is_dir()])
    for spec in specs:
        path = Path(spec)
        group: list[Run] = []
        if path.is_dir() and not (path / "results.csv").exists():
            dirs = find_runs(path, exclude)
            if not dirs:
                if find_runs(path):
                    raise BadInput(f"{path} holds only runs of other machines ({', '.join(loaded.left_out)}): name "
                                   "them to read them, or measure first: bench run --workload claims --quick")
                raise BadInput(f"{path}: neither a run directory (no results.csv) nor a results root (no runs in it)")
            loaded.roots.append(str(path))
            for d in dirs:
                if d in seen:
                    continue
                seen.add(d)
                try:
                    group.append(loader(d))
                except BadInput as exc:
                    loaded.skipped.append(f"{d}: {exc}")
        else:
            run = loader(spec)
            if run.path.resolve() in seen:
                continue
            seen.add(run.path.resolve())
            group.append(run)
        if group:
            loaded.groups.append(group)
    if not loaded.runs:
        raise BadInput(f"no readable run in {', '.join(specs)[:200]} ({len(loaded.skipped)} unreadable: "
                       f"{loaded.skipped[0][:200] if loaded.skipped else ''})")
    return loaded


def load_runs(specs: list[str]) -> list[Run]:
    """Several runs, in the order given; a results root stands for every run in it, oldest first."""
    return read_runs(specs).runs


def ok_rows(run: Run) -> pd.DataFrame:
    """The rows of a run that measured something (status ok): what every analysis reads."""
    results = run.results
    if "status" not in results.columns:
        return results.iloc[0:0]
    return results[results["status"] == "ok"]


def with_case_params(run: Run, rows: pd.DataFrame, as_text: bool = True) -> pd.DataFrame:
    """The rows (of this run) with every params.CASE_PARAMS column present, so that cases match across
    runs of any version: a value a row lacks is the one the run's workload (run.json) gave every case,
    else the parameter's default. An older prefix-reuse row without `reuse` reused its prefix when it
    has a ttft_speedup (only the reusing case of a pair has one). as_text: every one as param_text
    (for matching); otherwise only the missing values are filled, in their own type."""
    out = rows.copy()
    for name, (fill, varied) in case_param_fills(run.meta).items():
        if name not in out.columns and name == "reuse" and varied and "ttft_speedup" in out.columns:
            column = list(out["ttft_speedup"].notna())
        else:
            column = list(out[name]) if name in out.columns else [None] * len(out)
        filled = [fill if param_text(v) == "" else v for v in column]
        out[name] = [param_text(v) for v in filled] if as_text else pd.Series(filled, index=out.index, dtype=object)
    return out


def case_param_fills(meta: dict[str, Any]) -> dict[str, tuple[Any, bool]]:
    """Per case parameter: the value a row that lacks it takes (the one the run's workload gave every case,
    else the parameter's default), and whether the workload varied it."""
    params = (meta.get("workload") or {}).get("params") or {}
    fills = {}
    for name, default in CASE_PARAMS.items():
        given = default if name in RAN else params.get(name, default)
        values = given if isinstance(given, list) else [given]
        fills[name] = (values[0] if len(values) == 1 else default, len(values) > 1)
    return fills
