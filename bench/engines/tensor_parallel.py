"""transformers' own tensor-parallel plan: one process per card, every rank running the same decode loop.

A TP model cannot live in the harness's process: each card's shard belongs to a rank of a torch.distributed
group, and every rank must make the same forward calls, in step, for the collectives to meet. So the engine
starts one worker per card (spawned, so a CUDA context in the harness does not leak into them), each builds
its shard with transformers' `DistributedConfig(tp_size=N)` (the model's `base_model_tp_plan`), and then runs
whatever the harness sends it. Rank 0's step times are the measurement (perf_counter is CLOCK_MONOTONIC, one
clock for every process of the machine); each rank reports its own card's peak memory.

On a CPU the ranks share one host (gloo all-reduces between processes): the real plumbing, and how vLLM splits
a CPU over NUMA nodes, but the host's bandwidth is read once, whatever the rank count.

A rank that dies or fails ends the group: the others are stopped (a collective would wait for it forever) and
the call raises, so the case becomes an error row, never a hang.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from bench.core import clock
from bench.core.errors import first_line
from bench.core.noise import own_cores
from bench.engines import output_check
from bench.engines.decode_loop import DecodeLoop, timed_call
from bench.engines.quant import weight_bytes
from bench.hardware import devices as dev
from bench.hardware.devices import Device

LOAD_TIMEOUT_S = 900.0  # building or reading a large model's shards; a rank that takes longer is stuck
POLL_S = 0.2


class RankFailed(RuntimeError):
    """A rank of the group died or raised; the group is stopped."""


@dataclass
class StepTimes:
    """Rank 0's timeline of one call, on the harness clock, and every rank's peak memory."""

    start: float
    times: list[float]
    tokens: torch.Tensor
    peak_bytes: list[float | None]  # per rank (its card's, or on a CPU its process's peak RSS)
    compile_s: float
    frames: int


class TensorParallelGroup:
    """N worker processes holding one tensor-parallel model; `run` drives one decode in lockstep on all."""

    def __init__(self, model: Any, cards: list[Device], options: Any, captured: bool,
                 load_timeout_s: float = LOAD_TIMEOUT_S) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.cards = cards
        self.dtype = options.dtype
        self._store = Path(tempfile.mkdtemp(prefix="claimbench-tp-")) / "store"
        threads = max(1, own_cores() // len(cards)) if cards[0].type == "cpu" else 0
        self._conns: list[Connection] = []
        self.procs: list[Any] = []
        for rank, card in enumerate(cards):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_rank_main, name=f"claimbench-tp-rank{rank}", daemon=True,
                               args=(rank, len(cards), str(self._store), model, card, options, captured, threads,
                                     child))
            proc.start()
            child.close()
            self._conns.append(parent)
            self.procs.append(proc)
        try:
            ready = self._gather(load_timeout_s, "loading")
        except BaseException:
            self.close()
            raise
        self.shard_bytes = [float(r["shard_bytes"]) for r in ready]
        self.fallback = next((r["fallback"] for r in ready if r.get("fallback")), "")
        self.attention = ready[0]["attention"]

    def run(self, ids: torch.Tensor, output_len: int) -> StepTimes:
        """One batch decoded for exactly output_len tokens on every rank; rank 0's times on the harness clock."""
        for conn in self._conns:
            conn.send(("run", ids.cpu(), output_len))
        replies = self._gather(None, "decoding")
        first = replies[0]
        shift = clock.now() - time.perf_counter()  # the workers stamp perf_counter; the harness adds its offset
        self.fallback = self.fallback or next((r["fallback"] for r in replies if r.get("fallback")), "")
        return StepTimes(first["start"] + shift, [t + shift for t in first["times"]], first["tokens"],
                         [r["peak_bytes"] for r in replies], first["compile_s"], first["frames"])

    def check(self, ids: torch.Tensor, output_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The output check on every rank (output_check.py): rank 0's per-position KL divergence and top-1
        agreement of the decode loop against the teacher-forced forward over the same shards."""
        for conn in self._conns:
            conn.send(("check", ids.cpu(), output_len))
        first = self._gather(None, "checking the output")[0]
        return first["kld"], first["agree"]

    def _gather(self, timeout_s: float | None, doing: str) -> list[dict[str, Any]]:
        """Every rank's reply; RankFailed (the group stopped) when one died, raised or ran out of time."""
        replies: dict[int, dict[str, Any]] = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while len(replies) < len(self._conns):
            for rank, conn in enumerate(self._conns):
                if rank in replies:
                    continue
                if conn.poll(POLL_S / len(self._conns)):
                    try:
                        kind, body = conn.recv()
                    except (EOFError, OSError):
                        kind, body = "error", {"message": "its pipe closed"}
                    if kind == "error":
                        raise self._failed(f"rank {rank} ({self.cards[rank]}) failed while {doing}: "
                                           f"{body['message']}", doing)
                    replies[rank] = body
                elif not self.procs[rank].is_alive():
                    raise self._failed("", doing)
            if deadline is not None and time.monotonic() > deadline:
                self.close()
                raise RankFailed(f"tensor-parallel ranks took over {timeout_s:.0f} s {doing}; stopped")
        return [replies[r] for r in range(len(self._conns))]

    def _failed(self, said: str, doing: str) -> RankFailed:
        """The group stopped, and why: a rank that died is the cause (its peers only see a broken connection),
        else what a rank said."""
        time.sleep(POLL_S)  # a peer's error can arrive before its cause is reaped
        dead = [(rank, proc.exitcode) for rank, proc in enumerate(self.procs) if not proc.is_alive()]
        self.close()
        if dead:
            rank, code = dead[0]
            then = f"; then {said}" if said else ""
            how = f"exit code {code}" + (": SIGKILL, from the kernel's OOM killer or a person" if code == -9 else "")
            return RankFailed(f"tensor-parallel rank {rank} ({self.cards[rank]}) died while {doing} ({how}){then}; "
                              "the other ranks were stopped")
        return RankFailed(f"tensor-parallel {said}; the other ranks were stopped")

    def close(self) -> None:
        """Stop every rank (politely, then by force) and remove the rendezvous file."""
        for conn in self._conns:
            with contextlib.suppress(OSError, ValueError):  # a rank already gone
                conn.send(("close", None, 0))
        deadline = time.monotonic() + 10.0
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        for conn in self._conns:
            conn.close()
        self._conns, self.procs = [], []
        for path in (self._store, self._store.parent):
            with contextlib.suppress(OSError):
                path.unlink() if path.is_file() else path.rmdir()


def _load_shard(model: Any, card: Device, world: int, options: Any) -> Any:
    """This rank's shard, by transformers' tensor-parallel plan: from a checkpoint's files, or for a bundled
    config every weight 'missing' from an empty state dict, so transformers initialises each shard in place."""
    from transformers import AutoModelForCausalLM
    from transformers.distributed import DistributedConfig

    kwargs = {"distributed_config": DistributedConfig(tp_size=world), "dtype": options.dtype,
              "trust_remote_code": model.trust_remote_code}
    if model.weights == "pretrained":
        return AutoModelForCausalLM.from_pretrained(model.path, local_files_only=True, **kwargs)
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(model.config)]
    return cls.from_pretrained(None, config=model.config, state_dict={}, **kwargs)


@torch.inference_mode()
def _check_output(hf: Any, loop: Any, ids: torch.Tensor, output_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's part of the output check: the loop once more with its logits, then the reference forward."""
    vocab = hf.get_output_embeddings().weight.shape[0] if hf.get_output_embeddings() is not None else 1
    rows = output_check.rows_to_check(ids.shape[0], output_len, vocab, 4)
    tokens, logits = loop.run_with_logits(ids, output_len, rows)
    return output_check.compare(logits, tokens, ids, lambda i, t: output_check.teacher_forced(hf, i, t))


def _rank_main(rank: int, world: int, store: str, model: Any, card: Device, options: Any, captured: bool,
               threads: int, conn: Connection) -> None:
    """A worker: join the group, build this rank's shard, then run the harness's calls until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the harness's to handle: it stops the ranks
    # transformers binds each rank to card LOCAL_RANK: the card's own index, so any list of cards works.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(card.torch_device.index or 0))
    try:
        import logging
        from datetime import timedelta

        import torch.distributed as dist
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        warnings.filterwarnings("ignore", message="DTensor random operators")  # random weights: any init will do
        logging.getLogger("torch.distributed").setLevel(logging.ERROR)
        if threads:
            torch.set_num_threads(threads)
        if card.type != "cpu":
            torch.accelerator.set_device_index(card.torch_device.index or 0)
        # A file rendezvous: no port to pick (or to lose to another program between picking and binding).
        dist.init_process_group(init_method=f"file://{store}", rank=rank, world_size=world,
                                timeout=timedelta(minutes=10))
        torch.manual_seed(options.seed)
        hf = _load_shard(model, card, world, options)
        hf.eval()
        loop = DecodeLoop(hf, card, captured=captured)
        conn.send(("ready", {"shard_bytes": float(weight_bytes(hf)), "fallback": loop.fallback,
                             "attention": getattr(hf.config, "_attn_implementation", None)}))
    except Exception as exc:  # noqa: BLE001 - said to the harness, which stops the group
        conn.send(("error", {"message": first_line(exc)[:300]}))
        return
    while True:
        try:
            kind, ids, output_len = conn.recv()
        except (EOFError, OSError):  # the harness is gone: nothing left to serve
            break
        if kind not in ("run", "check"):
            break
        try:
            if kind == "check":  # every rank makes the same calls (the collectives meet); rank 0's figures return
                dist.barrier()
                kld, agree = _check_output(hf, loop, ids.to(card.torch_device), output_len)
                conn.send(("ok", {"kld": kld, "agree": agree}))
                continue
            dev.reset_peak_memory(card)
            dev.reset_host_peak_rss()
            # The harness's commands reach the ranks one pipe after another: meet first, so rank 0's window
            # (its prefill above all) does not include waiting for the last rank to hear of the call.
            dist.barrier()
            (start, times), seconds, frames = timed_call(partial(loop.run, ids.to(card.torch_device), output_len))
            peak = dev.peak_memory_bytes(card) if card.type != "cpu" else dev.host_peak_rss_bytes()
            conn.send(("ok", {"start": start, "times": times, "tokens": loop.last_tokens if rank == 0 else None,
                              "peak_bytes": peak, "compile_s": seconds if frames else 0.0, "frames": frames,
                              "fallback": loop.fallback}))
        except Exception as exc:  # noqa: BLE001
            conn.send(("error", {"message": first_line(exc)[:300]}))
            break
    with contextlib.suppress(Exception):  # a group a failed rank left half-open: the process ends anyway
        dist.destroy_process_group()
