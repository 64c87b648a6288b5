"""Every workload parameter, declared once: its type, default, checks, and what it means to the rest of claimbench.

Each declaration says whether the parameter is part of a case's identity (what makes two rows
the same case across runs), whether changing it needs the model loaded again, whether it feeds
the engine's LoadOptions, how a plan (--dry-run) heads it and how a case label names it. Every
list of such keys elsewhere (compare's and check's case keys, verify's cross-machine keys, the
printers' identity and plan columns, the runner's reload key, case labels) is derived from
here, so adding a case parameter is one line. Pure data: importing it imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

from bench.core.fields import CASE, MAX_TOKENS, PARAM, Param
from bench.core.kinds import kinds_params

# The keys every workload kind reads. Order matters for matrix keys: earlier keys vary slowest; it is also
# the order in which a case label names them. A kind's own keys (bench/core/kinds.py) come between the shape
# of a case and how it is run.
_SHAPE: dict[str, Param] = {
    "model": Param(str, "tiny", "bundled model name or local HF directory", matrix=True, reload=True,
                   identity=CASE, plan="model", label="{}"),
    "engine": Param(str, "transformers", "inference engine", matrix=True, reload=True, identity=CASE,
                    plan="engine"),
    "dtype": Param(str, "auto", "weight/activation dtype", matrix=True,
                   choices=("auto", "float32", "bfloat16", "float16"), reload=True, identity=CASE, plan="dtype",
                   label="{}"),
    "quant": Param(str, "none", "weight-only quantization of the linear layers (torchao): none | int8 | int4",
                   matrix=True, choices=("none", "int8", "int4"), reload=True, identity=PARAM, load=True,
                   plan="quant", label="{}"),
    "compile": Param(bool, False, "torch.compile the forward pass (implies a static KV cache)", matrix=True,
                     reload=True, identity=PARAM, load=True, plan="compiled", label="compiled"),
    "cache": Param(str, "dynamic", "KV cache implementation of the generate path", matrix=True,
                   choices=("dynamic", "static"), reload=True, identity=PARAM, load=True, plan="cache"),
    "decode": Param(str, "auto", "transformers decode path: auto | generate (transformers' generate) | loop (a plain "
                    "forward loop, static cache) | captured (that loop's step under torch.compile: CUDA graphs on "
                    "a GPU); auto: captured on accelerators, loop on a CPU", matrix=True,
                    choices=("auto", "generate", "loop", "captured"), reload=True, load=True, plan="decode"),
    "threads": Param(int, 0, "CPU threads for torch (0: the cores this process may use, from its affinity mask)",
                     matrix=True, minimum=0, maximum=4096, identity=PARAM, plan="threads", label="threads={}"),
    "batch_size": Param(int, 1, "concurrent sequences", matrix=True, minimum=1, maximum=1 << 20, identity=CASE,
                        plan="bs", label="bs={}"),
    "input_len": Param(int, 32, "prompt tokens per sequence", matrix=True, minimum=1, maximum=MAX_TOKENS,
                       identity=CASE, plan="in", label="in={}"),
    "output_len": Param(int, 32, "generated tokens per sequence (>= 2 for decode metrics)", matrix=True,
                        minimum=1, maximum=MAX_TOKENS, identity=CASE, plan="out", label="out={}"),
    "trial": Param(int, 1, "repeat the whole case; the value only labels the repeat (pairs, A/B/A/B)",
                   matrix=True, minimum=1, maximum=1 << 20, plan="trial"),
}
_HOW: dict[str, Param] = {
    "device": Param(str, "auto", "auto | cpu | cuda | cuda:N | mps | xpu"),
    "warmup": Param(int, 1, "unmeasured repetitions before each case", minimum=0, maximum=10_000),
    "min_reps": Param(int, 3, "measured repetitions at least", minimum=1, maximum=1_000_000),
    "min_seconds": Param(float, 1.0, "measured seconds at least", minimum=0, maximum=1e7),
    "max_reps": Param(int, 50, "measured repetitions at most", minimum=1, maximum=1_000_000),
    "max_seconds": Param(float, 120.0, "stop repeating after this many seconds (once min_reps is met)",
                         minimum=0, maximum=1e7),
    "seed": Param(int, 0, "seed for prompts and random weights", minimum=0, maximum=2**32 - 1, reload=True,
                  load=True),
    "allow_download": Param(bool, False, "a hub id (ORG/NAME) missing from the Hugging Face cache may be downloaded"),
    "trust_remote_code": Param(bool, False, "run a model repository's own Python code (transformers' flag)",
                               reload=True),
    "max_mem_gb": Param(float, 0.0, "memory budget for a case in GB (0: the device's own limit)", minimum=0,
                        maximum=1e9),
    "slo_tpot_ms": Param(float, 0.0, "latency SLO on TPOT per request, ms (0: none)", minimum=0, maximum=1e9),
    "slo_ttft_ms": Param(float, 0.0, "latency SLO on TTFT per request, ms (0: none)", minimum=0, maximum=1e9),
    "slo_itl_ms": Param(float, 0.0, "latency SLO on every inter-token gap of a request, ms (0: none)", minimum=0,
                        maximum=1e9),
    "power_limit_w": Param(float, 0.0, "set the cards' power limit to this many watts for the case, read back and "
                           "put back after the run (0: leave it); a list sweeps; needs --allow-power-limit",
                           minimum=0, maximum=5000, matrix=True),
    "slice_tokens": Param(int, 0, "long generation: decode tok/s per slice of this many tokens (0: off)",
                          minimum=0, maximum=MAX_TOKENS),
    "fit_budget_gb": Param(float, 0.0, "edge: memory of the target device; column fits_budget (0: off)",
                           minimum=0, maximum=1e9),
    "telemetry_hz": Param(float, 10.0, "telemetry sampling rate", minimum=0.1, maximum=10_000),
    "telemetry": Param(bool, True, "sample power/memory/clocks in the background (a list pairs on/off cases)",
                       matrix=True),
    "check": Param(bool, True, "after the timed repetitions, decode once more with the logits kept and compare them "
                   "with a teacher-forced reference (columns check_*; a path beyond the dtype's limit gets a "
                   "wrong-output warning; a list pairs checked and unchecked cases)", matrix=True),
    "canary_seconds": Param(float, 1.0, "seconds of the machine-speed canary (copy bandwidth, matmul) at a run's "
                            "start and end, for bench check/history's machine-drift (0: off)", minimum=0,
                            maximum=600),
    "idle_seconds": Param(float, 2.0, "seconds of idle power measured before the first case", minimum=0,
                          maximum=3600),
}



# Every key a workload may set, but the engines' own options (bench/core/plugins.py's engine_options).
CORE_PARAMS: dict[str, Param] = {**_SHAPE, **kinds_params(), **_HOW}
if len(CORE_PARAMS) != len(_SHAPE) + len(kinds_params()) + len(_HOW):
    raise RuntimeError("a workload kind declares a key every kind reads (bench/core/kinds.py vs params.py)")

# Identity columns a row carries that are not core keys: derived by the runner (device_count from the
# engine's parallelism, the placement and decode path that ran), or one engine's option that alone sets a
# sweep's cases apart (openai's request_rate, concurrency). Without them a tp and a layer-split case, or a load sweep's
# rates, would be one case to compare, check and history.
DERIVED: dict[str, Param] = {
    "placement": Param(str, "one device", "how a model spans its cards: layer-split, tp, pp (empty in a row on one)",
                       identity=PARAM, label="{}"),
    "request_rate": Param(float, 0.0, "openai: Poisson arrivals per second (0: all at once)", identity=PARAM,
                          label="rate={}/s"),
    "concurrency": Param(int, 0, "openai: closed-loop users held (0: none)", identity=PARAM, label="users={}"),
    "device_count": Param(int, 1, "devices a case uses (the product of its engine's parallelism options)",
                          identity=PARAM, label="on {} devices"),
    # The decode path that ran (the decode parameter resolved); rows written before it existed ran generate.
    "decode_path": Param(str, "generate", "transformers decode path that ran: generate | loop | captured",
                         identity=PARAM, label="{}"),
}

# Of those, the ones that say what ran: a row without one ran the default, whatever the workload asked (its
# `placement` option is "auto", the row's placement is what auto resolved to).
RAN: tuple[str, ...] = ("placement", "device_count", "decode_path")

# What makes two rows the same case across runs: the workload, the shape every row names, then the
# parameters that only some rows carry (their defaults fill a row that lacks one).
IDENTITY: dict[str, Param] = {k: p for k, p in {**CORE_PARAMS, **DERIVED}.items() if p.identity}
CASE_KEYS: tuple[str, ...] = ("workload", *(k for k, p in IDENTITY.items() if p.identity == CASE))
CASE_PARAMS: dict[str, Any] = {k: p.default for k, p in IDENTITY.items() if p.identity == PARAM}
# The load options every engine receives (besides the resolved dtype and its own declared options).
LOAD_FIELDS: tuple[str, ...] = tuple(k for k, p in CORE_PARAMS.items() if p.load)
