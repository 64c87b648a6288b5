"""How often `bench check` cries wolf and how often it catches a real slowdown, measured on this machine.

    python tests/benchmarks/gate_rates.py [PAIRS] [WORKLOAD ARGS...]   (default: 10 pairs of throughput --quick)

Runs PAIRS A/A pairs of real runs (same code, same machine: every failure is a false
alarm), then gates doctored copies of each second run, every speed divided by 2 and by
1.25, against its first run (each should fail). Prints the three counts. A script, not a
timed unit test: its figures depend on the machine's noise, which is the point.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SPEEDS = ("decode_tok_s", "prefill_tok_s", "output_tok_s")
TIMES = ("ttft_ms", "tpot_ms", "e2e_ms", "itl_ms_p99", "itl_ms_p50", "itl_ms_max")


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True)


def slowed(run: Path, dest: Path, factor: float) -> Path:
    """A copy of a run `factor` times slower (tests/helpers.py's one way to doctor a run)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repository's root
    from tests.helpers import slowed as speed_scaled

    return speed_scaled(run, dest, 1.0 / factor)


def main() -> int:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    workload = sys.argv[2:] or ["--workload", "throughput", "--quick", "--set", "idle_seconds=0"]
    root = Path(tempfile.mkdtemp(prefix="gate-rates-"))
    false_alarms, caught_2x, caught_25 = 0, 0, 0
    for i in range(pairs):
        out = root / f"pair{i}"
        for _ in range(2):
            proc = bench("run", "--out", str(out), *workload)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
        a, b = sorted(p for p in out.iterdir() if p.is_dir())
        false_alarms += bench("check", "--baseline", str(a), str(b)).returncode == 1
        caught_2x += bench("check", "--baseline", str(a), str(slowed(b, out / "x2", 2.0))).returncode == 1
        caught_25 += bench("check", "--baseline", str(a), str(slowed(b, out / "x125", 1.25))).returncode == 1
        print(f"pair {i + 1}/{pairs}: false alarms {false_alarms}, 2x caught {caught_2x}, 25% caught {caught_25}",
              flush=True)
    print(f"A/A false alarms: {false_alarms}/{pairs}; 2x slowdowns caught: {caught_2x}/{pairs}; "
          f"25% slowdowns caught: {caught_25}/{pairs}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
