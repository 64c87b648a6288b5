"""The one place where result columns, their units and the schema version are defined.

Every writer and reader of run directories imports from here, so a column is named
(and given a unit) exactly once.
"""

from __future__ import annotations

from bench.core.fields import Column
from bench.core.kinds import kinds_columns

SCHEMA_VERSION = 1
NAN = float("nan")  # an unmeasured figure: an empty cell, never 0


# The results.csv columns in their order: the contract (README, "What `bench run` does") first.
RESULT_COLUMNS: tuple[Column, ...] = (
    Column('schema_version', '', 'results.csv schema version'),
    Column('run_id', '', 'run directory name'),
    Column('workload', '', 'workload name'),
    Column('case', '', 'case index within the run, from 0', table='compact', numeric=True),
    Column('model', '', 'model name or local directory', table='compact'),
    Column('weights', '', 'random | pretrained'),
    Column('engine', '', 'inference engine'),
    Column('device', '', 'torch device string'),
    Column('device_name', '', 'device model name'),
    Column('device_count', '', 'devices used by the case', numeric=True),
    Column('dtype', '', 'weight and activation dtype actually used', table='compact'),
    Column('batch_size', 'requests', 'concurrent sequences', table='compact'),
    Column('input_len', 'tokens', 'prompt length per sequence', table='compact'),
    Column('output_len', 'tokens', 'generated tokens per sequence', table='compact'),
    Column('repetitions', '', 'measured repetitions (warm-up excluded)', numeric=True),
    Column('status', '', 'ok | oom | over_budget | skipped | error', table='compact'),
    Column('detail', '', 'why, in words'),
    Column('ttft_ms_p50', 'ms',
           'time to first token, median',
           direction=-1, header='TTFT p50 ms', fmt='{:.1f}', gated=True, sample='ttft_ms', table='compact'),
    Column('ttft_ms_p99', 'ms', 'time to first token, 99th percentile'),
    Column('tpot_ms_p50', 'ms',
           'time per output token after the first, median',
           direction=-1, header='TPOT p50 ms', fmt='{:.2f}', gated=True, sample='tpot_ms', table='compact'),
    Column('tpot_ms_p99', 'ms', 'time per output token after the first, p99'),
    Column('itl_ms_p99', 'ms',
           'inter-token latency pooled over requests, p99',
           direction=-1, header='ITL p99 ms', fmt='{:.2f}', gated=True, sample='itl_ms_p99', table='wide'),
    Column('e2e_ms_p50', 'ms', 'request latency, median', direction=-1, gated=True, sample='e2e_ms'),
    Column('prefill_tok_s', 'tok/s',
           'batch*input_len/TTFT, median over repetitions',
           direction=+1, header='prefill tok/s', fmt='{:.0f}', gated=True, sample='prefill_tok_s', table='wide'),
    Column('decode_tok_s', 'tok/s',
           'batch*(output_len-1)/(E2E-TTFT), median over repetitions',
           direction=+1, header='decode tok/s', fmt='{:.1f}', gated=True, sample='decode_tok_s', table='compact'),
    Column('decode_tok_s_per_user', 'tok/s', '1000/TPOT p50', direction=+1, gated=True),
    Column('output_tok_s', 'tok/s',
           'batch*output_len/E2E, median over repetitions',
           direction=+1, gated=True, sample='output_tok_s'),
    Column('decode_tok_s_cv', '',
           'coefficient of variation of decode_tok_s over repetitions',
           header='CV', fmt='{:.1%}', table='compact', numeric=True),
    Column('peak_mem_gb', 'GB',
           'peak device memory allocated by the case (host RSS on CPU); summed over its cards',
           direction=-1, header='peak GB', fmt='{:.2f}', gated=True, sample='peak_mem_gb', table='wide'),
    Column('host_peak_rss_gb', 'GB', 'peak resident memory of this process'),
    Column('power_w_mean', 'W',
           'mean board power per card during the measured windows',
           direction=-1, header='W', fmt='{:.0f}', gated=True, sample='power_w', table='wide'),
    Column('power_w_max', 'W', 'peak board power per card'),
    Column('energy_j', 'J', 'energy over all measured windows, all cards'),
    Column('energy_j_per_token', 'J/token',
           'decode-window energy / decode tokens',
           direction=-1, header='J/tok', fmt='{:.3g}', gated=True, sample='energy_j_per_token', table='wide'),
    Column('tok_s_per_w', 'tok/s/W', 'decode tokens/s per watt of decode power', direction=+1, gated=True),
    Column('energy_source', '', 'nvml-counter | nvml-power | amdsmi | rapl | none: why'),
    Column('throttled', '', 'clock-event reasons seen during the case, empty if none'),
    Column('roofline_decode_tok_s', 'tok/s', 'memory-bandwidth bound on decode tok/s'),
    Column('mbu', '',
           'model bandwidth utilisation of decode',
           direction=+1, header='MBU', fmt='{:.1%}', table='compact', numeric=True),
    Column('mfu', '',
           'model FLOP/s utilisation of prefill',
           direction=+1, header='MFU', fmt='{:.1%}', table='wide', numeric=True),
    # Beyond the contract.
    Column('vendor', '',
           'who made the device: nvidia | amd | huawei | iluvatar | moorethreads | cambricon | hygon | ...',
           every='row'),
    Column('warnings', '',
           "the case's warning kinds, ';'-separated (high-cv;shared-device); their text is in detail",
           every='row'),
    Column('itl_ms_p50', 'ms', 'inter-token latency, median', every='model'),
    Column('ttft_ms_mean', 'ms', 'time to first token, mean', every='model'),
    Column('e2e_ms_p99', 'ms', 'request latency, p99', every='model'),
    Column('itl_ms_max', 'ms', 'longest gap between two tokens of one request (the worst stall a reader sees)',
           direction=-1, every='model'),
    Column('compile', '', 'torch.compile used', table='compact', every='row'),
    Column('decode_path', '',
           'transformers decode path that ran: generate | loop | captured (the decode parameter resolved)',
           every='model'),
    Column('compile_s', 's',
           "wall time of the warm-up calls that compiled (compilation, graph capture and that call's own "
           'decode; never timed); empty when nothing compiled',
           every='model'),
    Column('threads', '', 'the threads parameter (0: the cores this process may use)', every='model', numeric=True),
    Column('threads_used', '', 'torch CPU threads during the case', every='model', numeric=True),
    Column('cache', '', 'KV cache implementation', every='row'),
    Column('quant', '',
           'weight-only quantization of the linear layers: none | int8 | int4 (torchao)',
           table='compact', every='model'),
    Column('params', '', 'model parameters', every='model', numeric=True),
    Column('weight_bytes', 'B', 'bytes of model weights', every='model'),
    Column('kv_bytes_per_token', 'B', '2*layers*kv_heads*head_dim*bytes per element', every='model'),
    Column('measured_seconds', 's', 'wall time of the measured repetitions', every='row'),
    Column('load_seconds', 's', 'model load time (first case of a model)', every='model'),
    Column('energy_prefill_j', 'J', 'energy in prefill windows, all cards', every='model', energy=True),
    Column('energy_decode_j', 'J', 'energy in decode windows, all cards', every='model', energy=True),
    Column('energy_j_per_token_power', 'J/token',
           'decode J/token from integrating the sampled power, beside energy_j_per_token (the counter where '
           'there is one)',
           every='model', energy=True),
    Column('energy_j_per_token_idle_sub', 'J/token',
           'decode energy above idle baseline per decode token',
           every='model', energy=True),
    Column('temp_c_max', 'C', 'highest device temperature seen', every='model'),
    Column('per_card', '', 'per card: mean/peak power (W), energy (J), peak temperature (C)', every='model'),
    Column('tpot_ms_p90', 'ms', 'time per output token, p90', every='model'),
    Column('itl_ms_p90', 'ms', 'inter-token latency, p90', every='model'),
    Column('goodput_frac', '',
           'share of requests meeting every SLO of the workload',
           direction=+1, header='goodput', fmt='{:.0%}', table='wide', numeric=True),
    Column('request_rate', 'requests/s',
           "openai: the Poisson arrival rate the case asked for (empty: all requests at once or a trace's own times)"),
    Column('achieved_rate_rps', 'requests/s',
           'openai with request_rate: the rate the client really sent at (median over repetitions)'),
    Column('send_lateness_ms_p99', 'ms',
           'openai with request_rate: p99 of how late each request left against its scheduled arrival (a '
           'client that fell behind measures itself)'),
    Column('concurrency', 'requests', 'openai: closed-loop users the case held (empty: none)'),
    Column('concurrency_achieved', 'requests',
           'openai under a load: requests in flight averaged over time, first send to last token (median over '
           'repetitions)'),
    Column('queue_ms_p99', 'ms',
           'openai with concurrency and request_rate: p99 of how long an arrival waited for a free user'),
    Column('output_tok_s_steady', 'tok/s',
           'openai under a load: output tok/s over the steady-state window (the load at its target in flight, '
           'ramp-up and drain outside), median over repetitions; empty with the reason where none existed',
           direction=+1, header='steady tok/s', fmt='{:.1f}', table='wide'),
    Column('steady_start_s', 's', "the steady window's start, seconds after the repetition's first send"),
    Column('steady_end_s', 's', "the steady window's end, seconds after the repetition's first send"),
    Column('tokens_per_event', 'tokens',
           'openai: output tokens per streamed event (1: one each; more: TPOT counts the time after the first '
           'event over the tokens after it, ITL is empty)'),
    Column('server_running_mean', 'requests', "server's /metrics: requests running, mean over the case"),
    Column('server_running_max', 'requests', "server's /metrics: requests running, max over the case"),
    Column('server_waiting_mean', 'requests', "server's /metrics: requests waiting, mean over the case"),
    Column('server_waiting_max', 'requests', "server's /metrics: requests waiting, max over the case"),
    Column('server_kv_usage_max', 'fraction', "server's /metrics: peak KV-cache usage (0-1)"),
    Column('server_prefix_hit_rate', 'fraction',
           "server's /metrics: prefix-cache hits over queries (tokens) during the case"),
    Column('server_preemptions', 'requests', "server's /metrics: requests preempted during the case"),
    Column('server_spec_accept_rate', 'fraction',
           "server's /metrics: speculative-decoding draft tokens accepted over proposed"),
    Column('server_spec_accepted_len', 'tokens',
           "server's /metrics: tokens per speculative step (1 + accepted drafts per draft)"),
    Column('power_limit_w', 'W', "the power limit in force on the case's cards (the lowest where they differ), "
           "read after the case; the detail says when it is not the card's default", every='model', energy=True),
    Column('max_batch_meeting_slo', 'requests',
           'largest batch so far (same model) whose p99 TPOT/TTFT meet the SLOs',
           direction=+1, header='max bs in SLO', fmt='{:.0f}', table='wide'),
    Column('placement', '',
           'how a model spans its cards: layer-split (transformers), tp, pp, tp x pp (vllm); empty on one',
           every='model'),
    Column('cards', '', 'the cards a model over several ran on (cuda:0 cuda:1); empty on one', every='model'),
    Column('peak_mem_gb_per_card', '',
           'peak memory of each card of a model over several (cuda:0=1.20 cuda:1=1.18)',
           every='model'),
    Column('max_load_meeting_slo', '',
           'largest load so far (request rate in requests/s where the case has one, else users, else batch) whose '
           'p99 TPOT/TTFT meet the SLOs; a sweep stops past a load that breaks them by 1.5x or fails',
           direction=+1, header='max load in SLO', fmt='{:g}', numeric=True),
    Column('decode_tok_s_slices', 'tok/s',
           'long generation: decode tok/s per slice of slice_tokens tokens',
           numeric=False),
    Column('decode_slowdown', '',
           'long generation: last slice tok/s / first slice tok/s',
           header='last/first slice', fmt='{:.2f}', table='wide', numeric=True),
    Column('energy_per_answer_j', 'J', 'energy per request (prefill + decode)', every='model', energy=True),
    Column('model_mem_gb', 'GB', 'weights + KV cache of the case', every='model'),
    Column('fits_budget', '', 'model_mem_gb <= fit_budget_gb', header='fits', table='compact'),
    Column('check_kld_mean', 'nats',
           "output check: KL divergence of the timed path's next-token distributions from a teacher-forced "
           'reference (no KV cache; unquantized weights for a quantized case), mean over the generated positions',
           direction=-1, header='KLD', fmt='{:.1e}', table='wide', every='model'),
    Column('check_kld_p99', 'nats', 'output check: 99th percentile of that KL divergence', every='model'),
    Column('check_top1', '', 'output check: share of generated positions whose top token agrees with the reference',
           direction=+1, header='top-1', fmt='{:.1%}', every='model', numeric=True),
    Column('check_ref', '', "output check: what the reference was, or 'not checked: why'", every='model'),
    Column('check_s', 's', "output check: its wall time (one more decode and the reference's forward; never timed)",
           every='model'),
    Column('perplexity', '',
           "pretrained weights: perplexity on claimbench's fixed text (seeds/perplexity.txt, 1024-token windows), "
           'the model as the case ran it (quantized included); empty for random weights',
           direction=-1, every='model', numeric=True),
    *kinds_columns(),  # what one workload kind adds (bench/core/kinds.py)
    Column('tags', '', 'workload-specific key=value pairs', table='compact', every='row'),
)
COLUMNS: dict[str, Column] = {c.name: c for c in RESULT_COLUMNS}
RESULT_COLUMN_NAMES: tuple[str, ...] = tuple(COLUMNS)
GATED: dict[str, Column] = {c.name: c for c in RESULT_COLUMNS if c.gated}
# The contract: every results.csv has these, the declarations up to mfu; a run adds what its scenario declares.
CONTRACT_COLUMNS: tuple[str, ...] = RESULT_COLUMN_NAMES[:RESULT_COLUMN_NAMES.index("mfu") + 1]
ROW_EXTRAS: tuple[str, ...] = tuple(c.name for c in RESULT_COLUMNS if c.every == "row")
MODEL_EXTRAS: tuple[str, ...] = tuple(c.name for c in RESULT_COLUMNS if c.every == "model")
ENERGY_EXTRAS: tuple[str, ...] = tuple(c.name for c in RESULT_COLUMNS if c.energy)
NUMERIC_COLUMNS: frozenset[str] = frozenset(c.name for c in RESULT_COLUMNS if c.holds_numbers)

# The terminal table after a run: the case's identity first, then the figures a table shows in declaration
# order (where any row has a value), tags last; --wide adds the "wide" ones.
TABLE_LEADS: tuple[str, ...] = ("case", "model", "dtype", "quant", "compile", "batch_size", "input_len",
                                "output_len", "status")
COMPACT_COLUMNS: tuple[str, ...] = (*TABLE_LEADS, *(c.name for c in RESULT_COLUMNS if c.table == "compact" and
                                                    c.name not in TABLE_LEADS + ("tags",)), "tags")
SUMMARY_COLUMNS: tuple[str, ...] = (*TABLE_LEADS, *(c.name for c in RESULT_COLUMNS if c.table and
                                                    c.name not in TABLE_LEADS + ("tags",)), "tags")
IDENTITY_HEADERS = {"case": "#", "compile": "compiled", "batch_size": "bs", "input_len": "in", "output_len": "out"}


def result_columns(declared: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A run's results.csv header: the contract, then the declared columns, in schema order."""
    wanted = set(CONTRACT_COLUMNS) | set(declared)
    unknown = set(declared) - set(RESULT_COLUMN_NAMES)
    if unknown:
        raise ValueError(f"columns not defined in bench.core.schema: {', '.join(sorted(unknown))}")
    return tuple(n for n in RESULT_COLUMN_NAMES if n in wanted)


# bench check's rank test needs this many repetitions a side to reach its alpha; with fewer it requires
# every candidate repetition to be worse than every baseline one. The measuring loop warns below it.
GATE_MIN_REPS = 5


def header(name: str) -> str:
    """The terminal heading of a column."""
    return COLUMNS[name].header or IDENTITY_HEADERS.get(name, name)


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
    "canary": (dict, "the machine's speed at the run's start and end (bench.hardware.canary: copy GB/s, matmul TFLOP/s "
                     "and its dtype, seconds), for bench check/history's machine-drift"),
    "cluster": (dict, "a run whose telemetry came from a Ray cluster (--ray): per node its id, host, backend, cards, "
                      "energy method and clock offset onto the driver's (offset_s, uncertainty_s); nodes whose "
                      "telemetry actor died, with when"),
    "fleet": (dict, "a run taken on one node of a fleet (bench run --ray --each-node): the node's name and id"),
}
