"""A real `vllm serve` of the tiny model on 127.0.0.1 for the vLLM stage: bounded start-up, always stopped.

The tiny model has random weights and no tokenizer. Served with `--skip-tokenizer-init` it takes token ids
only (claimbench's openai engine sends those). `word_model_dir` adds a word-level tokenizer in which the text
"w17" is token 17, so tools that send text (`vllm bench serve`, the chat endpoint) and tools that send ids
build prompts of exactly the same length, and decoding then re-encoding a prompt changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "workloads/models/tiny"
VLLM_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "0-1" if (os.cpu_count() or 1) <= 2 else "all", "HF_HUB_OFFLINE": "1"}


class ServerFailed(RuntimeError):
    """vllm serve exited or did not answer within its start-up bound."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def word_model_dir(dest: Path) -> Path:
    """The tiny model's config plus a word-level tokenizer (token i is the word 'w{i}', no special tokens
    added to a prompt), written under dest."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(TINY / "config.json", dest / "config.json")
    vocab_size = json.loads((TINY / "config.json").read_text())["vocab_size"]
    vocab = {f"w{i}": i for i in range(vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(json.dumps({
        # No special tokens declared: an added token would also match inside words ("w1" in "w17").
        "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "add_eos_token": False,
        "model_max_length": 4096}))
    return dest


@contextlib.contextmanager
def vllm_serve(model_dir: Path = TINY, tokenizer: bool = False, prefix_caching: bool = True,
               start_timeout_s: float = 240, log: Path | None = None, load_format: str = "dummy") -> Iterator[str]:
    """Start `vllm serve` (the OpenAI API server) of model_dir with dummy weights (load_format="auto": the
    directory's own); yield its base URL
    (http://127.0.0.1:PORT/v1); stop its whole process group on the way out, whatever happened.
    prefix_caching=False: a prompt sent again (a deterministic generator's, in a later round) is computed
    again rather than found in the cache."""
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", "tiny", "--load-format", load_format, "--dtype", "bfloat16", "--enforce-eager",
           "--gpu-memory-utilization", "0.25", "--host", "127.0.0.1", "--port", str(port)]
    if not tokenizer:
        cmd.append("--skip-tokenizer-init")
    if not prefix_caching:
        cmd.append("--no-enable-prefix-caching")
    sink = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **VLLM_ENV},
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise ServerFailed(f"vllm serve exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"vllm serve did not answer within {start_timeout_s:g} s")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        if log:
            sink.close()
