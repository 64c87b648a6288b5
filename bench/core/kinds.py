"""Every workload kind in one table: the scenario that runs it, the workload keys only it reads and the
results.csv columns only it writes (beyond every model kind's, in bench/core/schema.py).

Adding a workload kind is its scenario module (bench/scenarios/), its workload file (workloads/) and its
entry here. The entry is plain data, so the readers of runs (compare, check, history) know a kind's keys and
columns without importing its scenario, and with it torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.core.fields import MAX_TOKENS, PARAM, Column, Param


@dataclass(frozen=True)
class Kind:
    """One workload kind: its scenario ("module:Class", imported when a run asks for the kind), the workload
    keys only it reads and the results.csv columns only it writes."""

    scenario: str
    params: dict[str, Param] = field(default_factory=dict)
    columns: tuple[Column, ...] = ()


# A workload file's `kind` -> its declarations. A kind's keys follow the keys every kind reads in a case's
# matrix and labels; its columns follow every kind's in results.csv.
KINDS: dict[str, Kind] = {
    "generate": Kind(
        "bench.scenarios.generate:GenerateScenario",
    ),
    "capacity": Kind(
        "bench.scenarios.capacity:CapacityScenario",
        columns=(
            Column('largest_model_fitting', '',
                   'capacity: the largest model so far that loaded and ran on the cards given'),
        ),
    ),
    "long-context": Kind(
        "bench.scenarios.long_context:LongContextScenario",
        params={
            "max_context": Param(int, 0, "long-context: longest input to try (0: the model's maximum)", minimum=0,
                                 maximum=MAX_TOKENS),
            "min_context": Param(int, 1024, "long-context: first input length of the doubling sweep", minimum=1,
                                 maximum=MAX_TOKENS),
        },
        columns=(
            Column('predicted_max_context', 'tokens',
                   'longest input that fits: (memory - resident) / KV bytes per token',
                   header='pred. max ctx', fmt='{:.0f}', table='wide'),
            Column('predicted_peak_mem_gb', 'GB',
                   'long-context: predicted peak memory of the case, beside peak_mem_gb'),
            Column('measured_max_context', 'tokens',
                   'longest input that ran, bisected between last ok and first OOM',
                   direction=+1, header='meas. max ctx', fmt='{:.0f}', table='compact'),
        ),
    ),
    "prefix-reuse": Kind(
        "bench.scenarios.prefix_reuse:PrefixReuseScenario",
        params={
            "prefix_len": Param(int, 0, "prefix-reuse: shared prefix tokens (input_len is prefix + suffix)",
                                matrix=True, minimum=0, maximum=MAX_TOKENS, identity=PARAM, plan="prefix",
                                label="prefix={}"),
            "reuse": Param(bool, False, "prefix-reuse: reuse the prefix's KV cache instead of recomputing it",
                           matrix=True, identity=PARAM, plan="reuse", label="reused|recomputed",
                           label_if="prefix_len"),
        },
        columns=(
            Column('prefix_len', 'tokens', 'prefix-reuse: tokens of the shared prefix (computed once when reused)'),
            Column('reuse', '', "prefix-reuse: the prefix's KV cache reused (True) or recomputed (False)"),
            Column('ttft_speedup', '',
                   'prefix-reuse: TTFT recomputing the prefix / TTFT reusing its KV cache',
                   direction=+1, header='TTFT speedup', fmt='{:.1f}x', table='compact', numeric=True),
        ),
    ),
    "soak": Kind(
        "bench.scenarios.soak:SoakScenario",
        params={
            "hold_seconds": Param(float, 600.0, "soak: seconds the decode load is held (repetitions until then)",
                                  minimum=1, maximum=86_400),
            "soak_slices": Param(int, 12, "soak: time slices the hold is cut into (the last third gives the "
                                 "sustained figure)", minimum=3, maximum=1000),
        },
        columns=(
            Column('soak_peak_tok_s', 'tok/s', 'soak: decode tok/s of the fastest time slice'),
            Column('soak_sustained_tok_s', 'tok/s',
                   'soak: decode tok/s sustained, the median of the last third of the slices',
                   direction=+1, header='sustained tok/s', fmt='{:.1f}', table='wide'),
            Column('soak_sustained_ratio', '', 'soak: sustained over peak decode tok/s', numeric=True),
            Column('soak_settle_s', 's',
                   'soak: seconds until the throughput stayed within 2% of the sustained figure'),
            Column('soak_sustained_power_w', 'W',
                   "soak: the cards' board power over the last third of the hold (median of its slices): what a "
                   'power claim about a card under steady load is answered by', energy=True),
            Column('soak_energy_j_per_token_first', 'J/token', 'soak: decode energy per token in the first slice'),
            Column('soak_energy_j_per_token_last', 'J/token', 'soak: decode energy per token in the last slice'),
            Column('soak_slices', '',
                   "soak: each slice's start, decode tok/s, power, lowest clock, highest temperature and "
                   'throttle reasons', numeric=False),
        ),
    ),
    "membw": Kind(
        "bench.scenarios.micro:MembwScenario",
        params={
            "size_mb": Param(int, 1024, "membw: buffer size in MiB (copied device to device)", minimum=1,
                             maximum=1 << 24, identity=PARAM, plan="MiB copied", label="{} MiB",
                             label_if="bandwidth_gb_s"),
        },
        columns=(
            Column('size_mb', 'MiB', 'membw: buffer copied device to device'),
            Column('bandwidth_gb_s', 'GB/s',
                   'membw: measured device memory bandwidth (bytes read + written)',
                   direction=+1, header='GB/s', fmt='{:.1f}', gated=True, table='compact'),
            Column('bandwidth_best_gb_s', 'GB/s',
                   "membw: the fastest repetition; later runs take it as the roofline's bandwidth"),
        ),
    ),
    "matmul": Kind(
        "bench.scenarios.micro:MatmulScenario",
        params={
            "matmul_n": Param(int, 2048, "matmul: square matrix size", minimum=16, maximum=1 << 20, identity=PARAM,
                              plan="n", label="n={}", label_if="tflops"),
        },
        columns=(
            Column('matmul_n', '', 'matmul: n of the n x n x n products', numeric=True),
            Column('tflops', 'TFLOP/s',
                   'matmul: measured dense matrix-multiply throughput',
                   direction=+1, header='TFLOP/s', fmt='{:.2f}', gated=True, table='compact'),
            Column('tflops_best', 'TFLOP/s',
                   "matmul: the fastest repetition; later runs take it as the roofline's FLOP/s"),
        ),
    ),
}


def kinds_params() -> dict[str, Param]:
    """Every kind's own workload keys, in the table's order; a key two kinds share must mean the same to both."""
    keys: dict[str, Param] = {}
    for name, kind in KINDS.items():
        for key, param in kind.params.items():
            if keys.setdefault(key, param) != param:
                raise RuntimeError(f"workload key {key!r} of kind {name!r} is declared by another kind differently")
    return keys


def kinds_columns() -> tuple[Column, ...]:
    """Every kind's own results.csv columns, in the table's order; a column two kinds share is declared alike."""
    columns: dict[str, Column] = {}
    for name, kind in KINDS.items():
        for column in kind.columns:
            if columns.setdefault(column.name, column) != column:
                raise RuntimeError(f"column {column.name!r} of kind {name!r} is declared by another kind differently")
    return tuple(columns.values())
