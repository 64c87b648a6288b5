"""A vendor SMI tool played back from fixtures (tests/fixtures/smi/TOOL/), for machines without the card.

Installed on PATH by tests as a tiny shell script named after the tool (`npu-smi`, `mthreads-gmi`, `hy-smi`)
that runs `python3 fake_smi.py TOOL ARGS...`. The output for ARGS is the fixture args_A_B_C.txt; where frames
args_..._.1.txt, .2.txt exist they are played one after another across calls (a counter file in
$FAKE_SMI_STATE), so a sampler sees values change over time. $FAKE_SMI_MODE makes it misbehave like a real
tool can: exit1 | hang | bytes (non-UTF-8) | na (every number N/A) | missing (lines/keys with "Power" dropped)
| reorder (lines reversed) | empty.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "smi"


def main() -> int:
    tool, args = sys.argv[1], sys.argv[2:]
    mode = os.environ.get("FAKE_SMI_MODE", "")
    if mode == "exit1":
        print(f"{tool}: device not found", file=sys.stderr)
        return 1
    if mode == "hang":
        time.sleep(60)
    key = "args_" + "_".join(args)
    folder = FIXTURES / tool
    frames = sorted(folder.glob(f"{key}.[0-9]*.txt"))
    if frames:
        state = Path(os.environ.get("FAKE_SMI_STATE", "/tmp/fake-smi-state")) / f"{tool}-{key}"
        state.parent.mkdir(parents=True, exist_ok=True)
        n = int(state.read_text()) if state.exists() else 0
        state.write_text(str(n + 1))
        path = frames[n % len(frames)]
    else:
        path = folder / f"{key}.txt"
    if not path.is_file():
        print(f"{tool}: unknown arguments {' '.join(args)}", file=sys.stderr)
        return 2
    text = path.read_text()
    if mode == "na":
        text = re.sub(r'(?<=[:"] )"?\d+(\.\d+)?[A-Za-z%]*"?|(?<=: )\d+(\.\d+)?', "N/A", text)
        text = re.sub(r'"(\d+(\.\d+)?)(MiB|W|C|%|MHz)?"', '"N/A"', text)
    elif mode == "missing":
        text = "\n".join(line for line in text.splitlines() if "Power" not in line)
        text = re.sub(r'"[^"]*Power[^"]*": \{?[^,}]*\}?,?', "", text)
    elif mode == "reorder":
        text = "\n".join(reversed(text.splitlines()))
    elif mode == "empty":
        text = ""
    if mode == "bytes":
        sys.stdout.buffer.write(text.encode()[:40] + b"\xff\xfe\xfa garbage \x80\n")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
