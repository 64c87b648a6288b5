"""How `bench compare` scales: two runs of N cases each (default 200,000), timed with their peak memory.

    python tests/benchmarks/compare_scale.py [N]

Writes the runs under a temporary directory from a real run's header (the simulated engine's quick run),
then times `bench compare A B` (the terminal table) and `--format csv`, printing wall seconds and the
peak resident memory of each (from the child's rusage). Goal: under a minute and under 2 GB each.
"""

from __future__ import annotations

import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_run(root: Path, name: str, header: list[str], template: dict[str, str], n: int, scale: float) -> Path:
    run = root / name
    run.mkdir(parents=True)
    with (run / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for i in range(n):
            row = dict(template)
            row.update({"case": str(i), "batch_size": str(1 + i % 64), "input_len": str(16 + i // 64),
                        "decode_tok_s": f"{(100 + i % 97) * scale:.3f}", "ttft_ms_p50": f"{5 + i % 13:.2f}"})
            w.writerow(row)
    return run


def timed(args: list[str]) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True)
    seconds = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1e6, proc.returncode


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seed = root / "seed"
        subprocess.run([sys.executable, "-m", "bench", "run", "--engine", "simulated", "--out", str(seed),
                        "--set", "idle_seconds=0", "--set", "min_seconds=0"], check=True, capture_output=True)
        seed_csv = next(seed.glob("*/results.csv"))
        with seed_csv.open(newline="") as f:
            reader = csv.DictReader(f)
            template = next(reader)
            header = list(reader.fieldnames or [])
        a = make_run(root, "20260101T000000Z-a-quick", header, template, n, 1.0)
        b = make_run(root, "20260101T000001Z-b-quick", header, template, n, 0.9)
        for label, extra in (("table", []), ("csv", ["--format", "csv"])):
            seconds, gb, rc = timed(["compare", str(a), str(b), *extra])
            print(f"compare {n} rows, {label}: {seconds:.1f} s, peak RSS {gb:.2f} GB, exit {rc}")


if __name__ == "__main__":
    main()
