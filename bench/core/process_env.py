"""The process environment set before torch and the hubs are imported: offline model hub, quiet tokenizers,
and torch's GPU allocator in expandable-segments mode."""

from __future__ import annotations

import os


def set_process_defaults() -> None:
    """Defaults a user's own setting always overrides."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_allocator_default()


ALLOC_CONF_VARS = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_HIP_ALLOC_CONF")


def set_allocator_default() -> None:
    """Expandable segments for torch's GPU allocator unless the user chose a configuration.

    Without them a long prompt's KV cache, grown a step at a time, fragments the
    caching allocator: on an H200, llama-3.1-8b at batch 16 ran out of memory with
    35 GiB reserved but unallocated, so the "largest context" measured the allocator,
    not the card. Must run before torch touches the GPU; run.json records the value.
    """
    if not any(os.environ.get(v) for v in ALLOC_CONF_VARS):
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"


def hold_interrupts() -> None:
    """From the first Ctrl-C to the exit, ignore more: the finished rows and run.json are being completed, and
    a second press (often within 0.1 s of the first) used to land in that work or in the interpreter's shutdown
    as an 'Exception ignored ... KeyboardInterrupt' traceback. Only the main thread may set a handler."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
