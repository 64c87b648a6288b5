"""A vendor SMI tool played back from fixtures (tests/fixtures/smi/FOLDER/), for machines without the card.

Installed on PATH by tests as a tiny shell script named after the tool (`npu-smi`, `mthreads-gmi`, `hy-smi`,
`xpu-smi`...) that runs `python3 fake_smi.py FOLDER ARGS...` (FOLDER tells Intel's xpu-smi from Kunlunxin's,
which share a name). The output for ARGS is the fixture args_A_B_C.txt; where frames args_..._.1.txt, .2.txt
exist they are played one after another across calls (a counter file in $FAKE_SMI_STATE), so a sampler sees
values change over time. A watch/dump command (args_..._.stream.txt) runs until killed, as the real tool does:
its first block (up to a blank line) is printed once, then each later block in turn every $FAKE_SMI_PERIOD
seconds (default 0.2). $FAKE_SMI_MODE makes it misbehave like a real tool can: exit1 | hang | bytes (non-UTF-8)
| na (every number N/A) | missing (lines/keys with "Power" dropped) | reorder (lines reversed) | empty | die (a
watch that stops after two blocks) | hang-child (starts a helper process, as some tools do, then hangs; the
helper's command line holds the tool's --from directory so a test can find it); watch-MODE misbehaves in the
watch only. Each folder's expect.json says what its backend must read from it (`expectations()`).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "smi"


def expectations() -> dict[str, dict]:
    """Each fixture folder's expect.json, by folder: the backend that reads the folder (by its registry name), its
    cards, per card every value each field takes over the frames (null where the tool prints N/A), and the
    fields the backend says it cannot read. Checked by tests/test_vendor_telemetry.py for every folder."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*/expect.json"))}


def streams(folder: str) -> bool:
    """Whether the folder's tool is left running (a watch or dump mode) rather than run once per sample."""
    return any((FIXTURES / folder).glob("*.stream.txt"))


def main() -> int:
    argv = sys.argv[1:]
    marker = argv[1] if argv[:1] == ["--from"] else ""
    if argv[:1] == ["--from"]:  # the test's own bin directory, so a test can find the processes it started
        argv = argv[2:]
    tool, args = argv[0], argv[1:]
    mode = os.environ.get("FAKE_SMI_MODE", "")
    key = "args_" + "_".join(args)
    folder = FIXTURES / tool
    stream = folder / f"{key}.stream.txt"
    if mode.startswith("watch-"):  # only the watch misbehaves; the tool's one-shot commands answer well
        mode = mode.removeprefix("watch-") if stream.is_file() else ""
    if mode == "exit1":
        print(f"{tool}: device not found", file=sys.stderr)
        return 1
    if mode == "hang-child":
        import subprocess

        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "helper-of", marker])
        mode = "hang"
    if mode == "hang":
        time.sleep(60)
    if stream.is_file():
        return play_stream(stream.read_text(), mode)
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
    text = mangle(path.read_text(), mode)
    if mode == "bytes":
        sys.stdout.buffer.write(text.encode()[:40] + b"\xff\xfe\xfa garbage \x80\n")
        return 0
    sys.stdout.write(text)
    return 0


def mangle(text: str, mode: str) -> str:
    """The fixture's text as the misbehaving tool would print it."""
    if mode == "na":
        text = re.sub(r'(?<=[:"] )"?\d+(\.\d+)?[A-Za-z%]*"?|(?<=: )\d+(\.\d+)?', "N/A", text)
        text = re.sub(r'"(\d+(\.\d+)?)(MiB|W|C|%|MHz)?"', '"N/A"', text)
        text = re.sub(r"(?<=[ \t,])\d+(\.\d+)?", "N/A", text)  # tables and CSV: every number, ids too
    elif mode == "missing":
        text = "\n".join(line for line in text.splitlines() if "Power" not in line)
        text = re.sub(r'"[^"]*Power[^"]*": \{?[^,}]*\}?,?', "", text)
    elif mode == "reorder":
        text = "\n".join(reversed(text.splitlines()))
    elif mode == "empty":
        text = ""
    return text


def play_stream(text: str, mode: str) -> int:
    """A watch/dump mode: the header block once, then the frames in turn, flushed, until killed (or 10 min)."""
    blocks = [b for b in text.split("\n\n")]
    header, frames = blocks[0], [b for b in blocks[1:] if b.strip()] or [""]
    period = float(os.environ.get("FAKE_SMI_PERIOD", "0.2"))
    out = sys.stdout.buffer
    out.write((header + "\n").encode())
    out.flush()
    deadline = time.monotonic() + 600
    n = 0
    while time.monotonic() < deadline:
        frame = mangle(frames[n % len(frames)], mode).rstrip("\n") + "\n"
        data = frame.encode()
        if mode == "bytes":
            data = data[:10] + b"\xff\xfe garbage \x80\n"
        out.write(data)
        out.flush()
        n += 1
        if mode == "die" and n >= 2:
            return 0
        time.sleep(period)
    return 0


if __name__ == "__main__":
    sys.exit(main())
