"""A/A false alarms of `bench check` with and without the machine's canary, measured on this machine.

    python tests/benchmarks/canary_rates.py [--pairs 6] [--out DIR]

Runs `bench run --workload throughput --quick` twice per pair, back to back (the same code, so every
regression found is a false alarm), gates the second against the first, and counts the pairs that fail: without
the canary (a machine-drift verdict counted as the regression it would have been) and with it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(root: Path) -> Path:
    before = set(root.iterdir()) if root.exists() else set()
    subprocess.run([sys.executable, "-m", "bench", "run", "--workload", "throughput", "--quick", "--out", str(root)],
                   check=True, capture_output=True)
    (new,) = set(root.iterdir()) - before
    return new


def main() -> None:
    from bench.analysis.gate import check
    from bench.store.runs import load_run

    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    root = a.out or Path(tempfile.mkdtemp())
    without = with_canary = findings_without = findings_with = total = 0
    for i in range(a.pairs):
        base, cand = load_run(one_run(root)), load_run(one_run(root))
        found = check(base, cand, {})
        total += len(found)
        raw = [f for f in found if f.verdict in ("regression", "machine-drift")]
        kept = [f for f in found if f.verdict == "regression"]
        without += bool(raw)
        with_canary += bool(kept)
        findings_without += len(raw)
        findings_with += len(kept)
        machine = found[0].machine_pct if found else float("nan")
        print(f"pair {i + 1}: machine {machine:+.1f}%, {len(raw)} regression(s) without the canary, "
              f"{len(kept)} with it: " + "; ".join(f"{f.case} {f.metric} {f.worse_pct:+.1f}% {f.verdict}"
                                                   for f in raw), flush=True)
    print(f"\n| A/A pairs | failed without the canary | failed with it | findings without / with (of {total}) |")
    print("|---|---|---|---|")
    print(f"| {a.pairs} | {without} | {with_canary} | {findings_without} / {findings_with} |")


if __name__ == "__main__":
    main()
