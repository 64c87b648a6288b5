"""The one place where result columns, their units and the schema version are defined.

Every writer and reader of run directories imports from here, so a column is named
(and given a unit) exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1
NAN = float("nan")  # an unmeasured figure: an empty cell, never 0


@dataclass(frozen=True)
class Column:
    """A results.csv column: its name, unit and meaning; for a metric, which way is better, how it is shown,
    whether `bench check` gates it and which samples.csv column holds its value per repetition."""

    name: str
    unit: str
    doc: str
    direction: int = 0  # +1 higher is better, -1 lower is better, 0 neither
    header: str = ""  # terminal table heading (shown after a run when set)
    fmt: str = "{}"  # terminal cell format
    gated: bool = False  # bench check compares it
    sample: str | None = None  # samples.csv column with one value per repetition


# Metrics: direction, terminal heading and format, gated, per-repetition samples.csv column.
METRIC_ATTRS: dict[str, dict] = {
    "ttft_ms_p50": dict(direction=-1, header="TTFT p50 ms", fmt="{:.1f}", gated=True, sample="ttft_ms"),
    "tpot_ms_p50": dict(direction=-1, header="TPOT p50 ms", fmt="{:.2f}", gated=True, sample="tpot_ms"),
    "itl_ms_p99": dict(direction=-1, header="ITL p99 ms", fmt="{:.2f}", gated=True, sample="itl_ms_p99"),
    "e2e_ms_p50": dict(direction=-1, gated=True, sample="e2e_ms"),
    "prefill_tok_s": dict(direction=+1, header="prefill tok/s", fmt="{:.0f}", gated=True, sample="prefill_tok_s"),
    "decode_tok_s": dict(direction=+1, header="decode tok/s", fmt="{:.1f}", gated=True, sample="decode_tok_s"),
    "output_tok_s": dict(direction=+1, gated=True, sample="output_tok_s"),
    "decode_tok_s_per_user": dict(direction=+1, gated=True),
    "decode_tok_s_cv": dict(header="CV", fmt="{:.1%}"),
    "peak_mem_gb": dict(direction=-1, header="peak GB", fmt="{:.2f}", gated=True, sample="peak_mem_gb"),
    "power_w_mean": dict(direction=-1, header="W", fmt="{:.0f}", gated=True, sample="power_w"),
    "energy_j_per_token": dict(direction=-1, header="J/tok", fmt="{:.3g}", gated=True, sample="energy_j_per_token"),
    "tok_s_per_w": dict(direction=+1, gated=True),
    "mbu": dict(direction=+1, header="MBU", fmt="{:.1%}"),
    "mfu": dict(direction=+1, header="MFU", fmt="{:.1%}"),
    "goodput_frac": dict(direction=+1, header="goodput", fmt="{:.0%}"),
    "max_batch_meeting_slo": dict(direction=+1, header="max bs in SLO", fmt="{:.0f}"),
    "max_load_meeting_slo": dict(direction=+1, header="max load in SLO", fmt="{:g}"),
    "predicted_max_context": dict(header="pred. max ctx", fmt="{:.0f}"),
    "measured_max_context": dict(direction=+1, header="meas. max ctx", fmt="{:.0f}"),
    "ttft_speedup": dict(direction=+1, header="TTFT speedup", fmt="{:.1f}x"),
    "decode_slowdown": dict(header="last/first slice", fmt="{:.2f}"),
    "fits_budget": dict(header="fits"),
    "bandwidth_gb_s": dict(direction=+1, header="GB/s", fmt="{:.1f}", gated=True),
    "tflops": dict(direction=+1, header="TFLOP/s", fmt="{:.2f}", gated=True),
}

# The terminal table after a run: these columns, in this order, where any row has a value.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "case", "model", "dtype", "quant", "compile", "batch_size", "input_len", "output_len", "status", "ttft_ms_p50",
    "tpot_ms_p50", "itl_ms_p99", "prefill_tok_s", "decode_tok_s", "decode_tok_s_cv", "peak_mem_gb", "power_w_mean",
    "energy_j_per_token", "mbu", "mfu", "goodput_frac", "max_batch_meeting_slo", "predicted_max_context",
    "measured_max_context", "ttft_speedup", "decode_slowdown", "fits_budget", "bandwidth_gb_s", "tflops", "tags",
)
# The default terminal table (80 columns): the key figures; --wide shows SUMMARY_COLUMNS.
COMPACT_COLUMNS: tuple[str, ...] = (
    "case", "model", "dtype", "quant", "compile", "batch_size", "input_len", "output_len", "status", "ttft_ms_p50",
    "tpot_ms_p50", "decode_tok_s", "decode_tok_s_cv", "mbu", "measured_max_context", "ttft_speedup",
    "fits_budget", "bandwidth_gb_s", "tflops", "tags",
)
IDENTITY_HEADERS = {"case": "#", "compile": "compiled", "batch_size": "bs", "input_len": "in", "output_len": "out"}


def _cols(*specs: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*s, **METRIC_ATTRS.get(s[0], {})) for s in specs)


# The results.csv contract (README, "What `bench run` does"), in its order; extra columns follow.
RESULT_COLUMNS: tuple[Column, ...] = _cols(
    ("schema_version", "", "results.csv schema version"),
    ("run_id", "", "run directory name"),
    ("workload", "", "workload name"),
    ("case", "", "case index within the run, from 0"),
    ("model", "", "model name or local directory"),
    ("weights", "", "random | pretrained"),
    ("engine", "", "inference engine"),
    ("device", "", "torch device string"),
    ("device_name", "", "device model name"),
    ("device_count", "", "devices used by the case"),
    ("dtype", "", "weight and activation dtype actually used"),
    ("batch_size", "requests", "concurrent sequences"),
    ("input_len", "tokens", "prompt length per sequence"),
    ("output_len", "tokens", "generated tokens per sequence"),
    ("repetitions", "", "measured repetitions (warm-up excluded)"),
    ("status", "", "ok | oom | over_budget | skipped | error"),
    ("detail", "", "why, in words"),
    ("ttft_ms_p50", "ms", "time to first token, median"),
    ("ttft_ms_p99", "ms", "time to first token, 99th percentile"),
    ("tpot_ms_p50", "ms", "time per output token after the first, median"),
    ("tpot_ms_p99", "ms", "time per output token after the first, p99"),
    ("itl_ms_p99", "ms", "inter-token latency pooled over requests, p99"),
    ("e2e_ms_p50", "ms", "request latency, median"),
    ("prefill_tok_s", "tok/s", "batch*input_len/TTFT, median over repetitions"),
    ("decode_tok_s", "tok/s", "batch*(output_len-1)/(E2E-TTFT), median over repetitions"),
    ("decode_tok_s_per_user", "tok/s", "1000/TPOT p50"),
    ("output_tok_s", "tok/s", "batch*output_len/E2E, median over repetitions"),
    ("decode_tok_s_cv", "", "coefficient of variation of decode_tok_s over repetitions"),
    ("peak_mem_gb", "GB", "peak device memory allocated by the case (host RSS on CPU); summed over its cards"),
    ("host_peak_rss_gb", "GB", "peak resident memory of this process"),
    ("power_w_mean", "W", "mean board power per card during the measured windows"),
    ("power_w_max", "W", "peak board power per card"),
    ("energy_j", "J", "energy over all measured windows, all cards"),
    ("energy_j_per_token", "J/token", "decode-window energy / decode tokens"),
    ("tok_s_per_w", "tok/s/W", "decode tokens/s per watt of decode power"),
    ("energy_source", "", "nvml-counter | nvml-power | amdsmi | rapl | none: why"),
    ("throttled", "", "clock-event reasons seen during the case, empty if none"),
    ("roofline_decode_tok_s", "tok/s", "memory-bandwidth bound on decode tok/s"),
    ("mbu", "", "model bandwidth utilisation of decode"),
    ("mfu", "", "model FLOP/s utilisation of prefill"),
    # Extra columns.
    ("vendor", "", "who made the device: nvidia | amd | huawei | iluvatar | moorethreads | cambricon | hygon | ..."),
    ("warnings", "", "the case's warning kinds, ';'-separated (high-cv;shared-device); their text is in detail"),
    ("itl_ms_p50", "ms", "inter-token latency, median"),
    ("ttft_ms_mean", "ms", "time to first token, mean"),
    ("e2e_ms_p99", "ms", "request latency, p99"),
    ("compile", "", "torch.compile used"),
    ("decode_path", "", "transformers decode path that ran: generate | loop | captured (the decode parameter resolved)"),
    ("compile_s", "s", "wall time of the warm-up calls that compiled (compilation, graph capture and that call's own "
                       "decode; never timed); empty when nothing compiled"),
    ("threads", "", "the threads parameter (0: the cores this process may use)"),
    ("threads_used", "", "torch CPU threads during the case"),
    ("cache", "", "KV cache implementation"),
    ("quant", "", "weight-only quantization of the linear layers: none | int8 | int4 (torchao)"),
    ("params", "", "model parameters"),
    ("weight_bytes", "B", "bytes of model weights"),
    ("kv_bytes_per_token", "B", "2*layers*kv_heads*head_dim*bytes per element"),
    ("measured_seconds", "s", "wall time of the measured repetitions"),
    ("load_seconds", "s", "model load time (first case of a model)"),
    ("energy_prefill_j", "J", "energy in prefill windows, all cards"),
    ("energy_decode_j", "J", "energy in decode windows, all cards"),
    ("energy_j_per_token_power", "J/token",
     "decode J/token from integrating the sampled power, beside energy_j_per_token (the counter where there is one)"),
    ("energy_j_per_token_idle_sub", "J/token", "decode energy above idle baseline per decode token"),
    ("temp_c_max", "C", "highest device temperature seen"),
    ("per_card", "", "per card: mean/peak power (W), energy (J), peak temperature (C)"),
    ("size_mb", "MiB", "membw: buffer copied device to device"),
    ("matmul_n", "", "matmul: n of the n x n x n products"),
    ("bandwidth_gb_s", "GB/s", "membw: measured device memory bandwidth (bytes read + written)"),
    ("tflops", "TFLOP/s", "matmul: measured dense matrix-multiply throughput"),
    ("bandwidth_best_gb_s", "GB/s", "membw: the fastest repetition; later runs take it as the roofline's bandwidth"),
    ("tflops_best", "TFLOP/s", "matmul: the fastest repetition; later runs take it as the roofline's FLOP/s"),
    ("tpot_ms_p90", "ms", "time per output token, p90"),
    ("itl_ms_p90", "ms", "inter-token latency, p90"),
    ("goodput_frac", "", "share of requests meeting every SLO of the workload"),
    ("request_rate", "requests/s", "openai: the Poisson arrival rate the case asked for (empty: all requests at once "
     "or a trace's own times)"),
    ("achieved_rate_rps", "requests/s", "openai with request_rate: the rate the client really sent at (median over "
                                        "repetitions)"),
    ("send_lateness_ms_p99", "ms", "openai with request_rate: p99 of how late each request left against its "
                                   "scheduled arrival (a client that fell behind measures itself)"),
    ("max_batch_meeting_slo", "requests", "largest batch so far (same model) whose p99 TPOT/TTFT meet the SLOs"),
    ("largest_model_fitting", "", "capacity: the largest model so far that loaded and ran on the cards given"),
    ("placement", "", "how a model spans its cards: layer-split (transformers), tp, pp, tp x pp (vllm); empty on one"),
    ("cards", "", "the cards a model over several ran on (cuda:0 cuda:1); empty on one"),
    ("peak_mem_gb_per_card", "", "peak memory of each card of a model over several (cuda:0=1.20 cuda:1=1.18)"),
    ("max_load_meeting_slo", "", "largest load so far (request rate in requests/s where the case has one, else "
                                 "concurrency) whose p99 TPOT/TTFT meet the SLOs; a sweep stops past a load that "
                                 "breaks them by 1.5x or fails"),
    ("predicted_max_context", "tokens", "longest input that fits: (memory - resident) / KV bytes per token"),
    ("predicted_peak_mem_gb", "GB", "long-context: predicted peak memory of the case, beside peak_mem_gb"),
    ("measured_max_context", "tokens", "longest input that ran, bisected between last ok and first OOM"),
    ("prefix_len", "tokens", "prefix-reuse: tokens of the shared prefix (computed once when reused)"),
    ("reuse", "", "prefix-reuse: the prefix's KV cache reused (True) or recomputed (False)"),
    ("ttft_speedup", "", "prefix-reuse: TTFT recomputing the prefix / TTFT reusing its KV cache"),
    ("decode_tok_s_slices", "tok/s", "long generation: decode tok/s per slice of slice_tokens tokens"),
    ("decode_slowdown", "", "long generation: last slice tok/s / first slice tok/s"),
    ("energy_per_answer_j", "J", "energy per request (prefill + decode)"),
    ("model_mem_gb", "GB", "weights + KV cache of the case"),
    ("fits_budget", "", "model_mem_gb <= fit_budget_gb"),
    ("tags", "", "workload-specific key=value pairs"),
)

RESULT_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in RESULT_COLUMNS)
# The contract: every results.csv has these; a run adds the columns its scenario declares.
CONTRACT_COLUMNS: tuple[str, ...] = RESULT_COLUMN_NAMES[:RESULT_COLUMN_NAMES.index("mfu") + 1]
# Beyond the contract, what every row has (the case's identity) and what every model row has.
ROW_EXTRAS: tuple[str, ...] = ("vendor", "warnings", "compile", "cache", "measured_seconds", "tags")
MODEL_EXTRAS: tuple[str, ...] = (
    "decode_path", "compile_s", "threads", "threads_used", "itl_ms_p50", "ttft_ms_mean", "e2e_ms_p99", "params",
    "quant", "weight_bytes", "kv_bytes_per_token", "load_seconds", "placement", "cards", "peak_mem_gb_per_card",
    "energy_prefill_j", "energy_decode_j", "energy_j_per_token_power", "energy_j_per_token_idle_sub", "temp_c_max",
    "per_card", "tpot_ms_p90", "itl_ms_p90", "energy_per_answer_j", "model_mem_gb",
)


# Figures derived from measured energy: a run whose telemetry cannot read energy leaves them out.
ENERGY_EXTRAS: tuple[str, ...] = ("energy_prefill_j", "energy_decode_j", "energy_j_per_token_power",
                                  "energy_j_per_token_idle_sub", "energy_per_answer_j")


def result_columns(declared: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A run's results.csv header: the contract, then the declared columns, in schema order."""
    wanted = set(CONTRACT_COLUMNS) | set(declared)
    unknown = set(declared) - set(RESULT_COLUMN_NAMES)
    if unknown:
        raise ValueError(f"columns not defined in bench.core.schema: {', '.join(sorted(unknown))}")
    return tuple(n for n in RESULT_COLUMN_NAMES if n in wanted)
COLUMNS: dict[str, Column] = {c.name: c for c in RESULT_COLUMNS}
GATED: dict[str, Column] = {c.name: c for c in RESULT_COLUMNS if c.gated}

# bench check's rank test needs this many repetitions a side to reach its alpha; with fewer it requires
# every candidate repetition to be worse than every baseline one. The measuring loop warns below it.
GATE_MIN_REPS = 5


def header(name: str) -> str:
    """The terminal heading of a column."""
    return COLUMNS[name].header or IDENTITY_HEADERS.get(name, name)

# Columns that hold numbers; everything else is text. Used by readers and writers
# so that an unmeasured figure is written as an empty cell, never 0.
NUMERIC_COLUMNS: frozenset[str] = frozenset(
    c.name
    for c in RESULT_COLUMNS
    if (c.unit and c.name not in {"decode_tok_s_slices"})  # a ;-separated list of numbers is text
    or c.name in {"decode_tok_s_cv", "mbu", "mfu", "case", "device_count", "repetitions", "params", "ttft_speedup",
                  "decode_slowdown", "goodput_frac", "tok_s_per_w", "matmul_n", "threads", "threads_used",
                  "max_load_meeting_slo"}
)

# One row per measured repetition.
SAMPLE_COLUMNS: tuple[str, ...] = (
    "run_id",
    "case",
    "repetition",
    "batch_size",
    "input_len",
    "output_len",
    "ttft_ms",
    "e2e_ms",
    "tpot_ms",
    "prefill_tok_s",
    "decode_tok_s",
    "output_tok_s",
    "itl_ms_p50",
    "itl_ms_p99",
    "itl_ms_max",
    "energy_prefill_j",
    "energy_decode_j",
    "energy_j_per_token",
    "power_w",
    "peak_mem_gb",
)

# The sampled time series, one row per device per tick.
TELEMETRY_COLUMNS: tuple[str, ...] = (
    "t",
    "device",
    "power_w",
    "energy_j",
    "mem_used_gb",
    "util",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temp_c",
    "throttle",
    "case",
)

# run.json: every top-level key, the JSON type it holds, and what it means. RunWriter refuses a key
# that is not here; read_meta checks the types of those present (older files may lack any of them).
RUN_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "schema_version": (int, "results schema version the run was written with"),
    "run_id": (str, "the run directory's name"),
    "label": (str, "a short label the user gave the run (--label), shown in reports"),
    "command": (list, "argv of the bench command"),
    "workload": (dict, "the workload's resolved keys"),
    "cases": (int, "cases planned"),
    "fingerprint": (dict, "host, software versions, git state, accelerators"),
    "telemetry_probe": (list, "telemetry backends tried, with why each was or was not used"),
    "ceiling": (dict, "bandwidth_bytes_s, flops and their source, for the roofline columns"),
    "start": (str, "UTC start time, ISO 8601"),
    "end": ((str, type(None)), "UTC end time, ISO 8601 (null while running)"),
    "complete": (bool, "every planned case finished"),
    "interrupted": (bool, "Ctrl-C or SIGTERM ended the run"),
    "ended_by": (str, "completion | interrupted | terminated"),
    "finished_cases": (int, "rows written"),
    "errors_before": (dict, "device error counters (ECC, XID) at start"),
    "errors_after": (dict, "device error counters at the end"),
    "server": ((dict, type(None)), "the server a remote engine talked to (null in-process)"),
    "idle_power_w": (dict, "idle power per device, measured before the first case"),
    "canary": (dict, "the machine's speed at the run's start and end (bench.hardware.canary: copy GB/s, bf16 matmul TFLOP/s, "
                     "seconds), for bench check/history's machine-drift"),
    "cluster": (dict, "a run whose telemetry came from a Ray cluster (--ray): per node its id, host, backend, cards, "
                      "energy method and clock offset onto the driver's (offset_s, uncertainty_s); nodes whose "
                      "telemetry actor died, with when"),
    "fleet": (dict, "a run taken on one node of a fleet (bench run --ray --each-node): the node's name and id"),
}
