"""Load run directories for the commands that read results (compare, check, verify, report)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BadInput
from bench.results import read_meta, read_results, read_table, results_csv_path
from bench.schema import CASE_PARAMS, SAMPLE_COLUMNS, TELEMETRY_COLUMNS


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


def load_run(spec: str | Path) -> Run:
    """A run directory or its results.csv -> Run (BadInput with one clear reason otherwise)."""
    csv_path = results_csv_path(spec)
    results = read_results(csv_path)
    directory = csv_path.parent
    samples = pd.DataFrame()
    if (directory / "samples.csv").is_file():
        samples = read_table(directory / "samples.csv", [c for c in SAMPLE_COLUMNS if c != "run_id"])
    meta: dict[str, Any] = {}
    if (directory / "run.json").is_file():
        meta = read_meta(directory / "run.json")
    name = directory.name if csv_path.name == "results.csv" else csv_path.stem
    return Run(name, directory, results, samples, meta)


def run_dirs_in(root: Path) -> list[Path]:
    """The run directories directly inside a results root, oldest first (run ids start with the UTC time)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "results.csv").is_file())


def expand_specs(specs: list[str]) -> list[str]:
    """Each spec as given, except a results root (a directory of run directories), which becomes its runs."""
    out: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir() and not (path / "results.csv").exists():
            runs = run_dirs_in(path)
            if not runs:
                raise BadInput(f"{path}: neither a run directory (no results.csv) nor a results root (no runs in it)")
            out.extend(str(r) for r in runs)
        else:
            out.append(spec)
    return out


def load_runs(specs: list[str]) -> list[Run]:
    """Several runs, in the order given; a results root stands for every run in it, oldest first."""
    if not specs:
        raise BadInput("give at least one run directory, results.csv or results root")
    return [load_run(s) for s in expand_specs(specs)]


def ok_rows(run: Run) -> pd.DataFrame:
    """The rows of a run that measured something (status ok): what every analysis reads."""
    results = run.results
    if "status" not in results.columns:
        return results.iloc[0:0]
    return results[results["status"] == "ok"]


def param_text(value: Any) -> str:
    """A case parameter as text that is the same whoever wrote it: True/'True' -> 'true', 8192.0 -> '8192'."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return str(bool(value)).lower()
    if isinstance(value, int | float) or type(value).__module__ == "numpy":
        number = float(value)  # every digit: a 1048576-token context is not 1048580 (as "%g" would have it)
        return str(int(number)) if number.is_integer() else repr(number)
    text = str(value).strip()
    return text.lower() if text.lower() in ("true", "false") else text


def with_case_params(run: Run, rows: pd.DataFrame, as_text: bool = True) -> pd.DataFrame:
    """The rows (of this run) with every schema.CASE_PARAMS column present, so that cases match across
    runs of any version: a value a row lacks is the one the run's workload (run.json) gave every case,
    else the parameter's default. An older prefix-reuse row without `reuse` reused its prefix when it
    has a ttft_speedup (only the reusing case of a pair has one). as_text: every one as param_text
    (for matching); otherwise only the missing values are filled, in their own type."""
    params = (run.meta.get("workload") or {}).get("params") or {}
    out = rows.copy()
    for name, default in CASE_PARAMS.items():
        given = params.get(name, default)
        values = given if isinstance(given, list) else [given]
        fill = values[0] if len(values) == 1 else default
        if name not in out.columns and name == "reuse" and len(values) > 1 and "ttft_speedup" in out.columns:
            column = list(out["ttft_speedup"].notna())
        else:
            column = list(out[name]) if name in out.columns else [None] * len(out)
        filled = [fill if param_text(v) == "" else v for v in column]
        out[name] = [param_text(v) for v in filled] if as_text else pd.Series(filled, index=out.index, dtype=object)
    return out


def case_label(row: Any, workload: bool = True) -> str:
    """One way to name a case everywhere: [workload] model dtype bs= in= out=, then the parameters
    that set it apart from the default case (int4, compiled, prefix=8192 reused, 256 MiB, n=8192...).
    What a row does not have (a microbenchmark's model and lengths) is left out."""
    parts = []
    model = param_text(row.get("model"))
    if model not in ("", "none"):
        parts.append(model)
    parts.append(param_text(row.get("dtype")))
    for key, short in (("batch_size", "bs"), ("input_len", "in"), ("output_len", "out")):
        value = param_text(row.get(key))
        if value:
            parts.append(f"{short}={value}")
    quant = param_text(row.get("quant"))
    if quant not in ("", "none"):
        parts.append(quant)
    if param_text(row.get("compile")) == "true":
        parts.append("compiled")
    cards = param_text(row.get("device_count"))
    if cards not in ("", "1"):
        parts.append(f"on {cards} devices")
    prefix = param_text(row.get("prefix_len"))
    if prefix not in ("", "0"):
        parts.append(f"prefix={prefix} " + ("reused" if param_text(row.get("reuse")) == "true" else "recomputed"))
    names = row.index if isinstance(row, pd.Series) else list(row)  # a Series iterates over its values

    def measured(metric: str) -> bool:  # a compare table names it "bandwidth_gb_s [0]"; older rows hold it empty
        return any(str(k).startswith(metric) and param_text(row.get(k)) for k in names)

    size, n = param_text(row.get("size_mb")), param_text(row.get("matmul_n"))
    if size and measured("bandwidth_gb_s"):  # a membw row: its buffer size
        parts.append(f"{size} MiB")
    if n and measured("tflops"):  # a matmul row: its matrix size
        parts.append(f"n={n}")
    text = " ".join(p for p in parts if p)
    return f"{row['workload']} {text}" if workload and "workload" in row else text
