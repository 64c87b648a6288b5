"""The device's own ceilings, no model: copy bandwidth (membw) and dense matmul FLOP/s (matmul).

Later runs in the same results root take their roofline from these rows.
"""

from __future__ import annotations

import math
from typing import Any

from bench.core.metrics import percentile
from bench.core.schema import NAN, ROW_EXTRAS
from bench.hardware import devices as dev
from bench.hardware.devices import Device
from bench.hardware.microbench import TooSlow, copy_bandwidth, matmul_flops, product_cost
from bench.hardware.roofline import datasheet_peak
from bench.scenarios.base import Scenario
from bench.spec.workload import Case

OVER_PEAK = 1.05  # a median this far above the datasheet is a measurement bug
# The CPU instructions a native 16-bit matmul kernel needs; without them PyTorch runs a slow fallback.
NATIVE_16BIT = {"bfloat16": {"avx512_bf16", "amx_bf16"}, "float16": {"avx512_fp16", "amx_fp16"}}


class _Microbenchmark(Scenario):
    uses_model = False

    def declared_columns(self) -> set[str]:
        return {*ROW_EXTRAS, *self.own_columns()}

    def check(self, case: Case) -> None:
        """No model, no lengths: nothing to check."""

    def measure_device(self, device: Device, case: Case, row: dict[str, Any]) -> list[dict[str, Any]]:
        p = case.params
        row.update({"model": "none", "weights": "", "input_len": NAN, "output_len": NAN, "batch_size": NAN})
        timing = dict(warmup=max(p["warmup"], 1), min_reps=p["min_reps"], min_seconds=p["min_seconds"],
                      max_reps=p["max_reps"], max_seconds=p["max_seconds"])
        try:
            work, times = self.time(device, case, row, timing)
        except TooSlow as slow:
            row["status"], row["detail"] = "skipped", f"{self.label(case)}: {slow}{self.why_slow(device, row)}"
            return []
        best, median = work / min(times), work / percentile(times, 50)
        row["repetitions"], row["measured_seconds"] = len(times), sum(times)
        over = self.report(device, case, row, best, median)
        row["status"] = "ok"
        if over:
            row["status"] = "error"
            row["detail"] = "above the datasheet peak: a measurement bug; " + row["detail"]
        return [{"run_id": row["run_id"], "case": case.index, "repetition": i, "e2e_ms": 1000 * t}
                for i, t in enumerate(times)]

    def time(self, device: Device, case: Case, row: dict[str, Any], timing: dict) -> tuple[float, list[float]]:
        """(work per call, seconds per call), or TooSlow."""
        raise NotImplementedError

    def why_slow(self, device: Device, row: dict[str, Any]) -> str:
        """What a TooSlow case's detail adds: the cause where it is known, and what to change."""
        return "; raise max_seconds"

    def report(self, device: Device, case: Case, row: dict[str, Any], best: float, median: float) -> bool:
        """Fill the measurement's columns; True when the median is above the datasheet peak."""
        raise NotImplementedError


class MembwScenario(_Microbenchmark):
    kind = "membw"
    plan_keys = ("size_mb",)

    def label(self, case: Case) -> str:
        return f"{case['size_mb']} MiB copy"

    def time(self, device: Device, case: Case, row: dict[str, Any], timing: dict) -> tuple[float, list[float]]:
        row["dtype"], row["size_mb"] = "float32", case["size_mb"]
        return copy_bandwidth(device, case["size_mb"], **timing)

    def report(self, device: Device, case: Case, row: dict[str, Any], best: float, median: float) -> bool:
        peak = _known(datasheet_peak(device.name), "bandwidth")
        row["bandwidth_gb_s"] = median / 1e9
        row["bandwidth_best_gb_s"] = best / 1e9
        ref = f"; datasheet {peak.bandwidth / 1e9:.0f} GB/s ({peak.name}): {median / peak.bandwidth:.0%}" if peak else ""
        row["detail"] = f"{2 * case['size_mb']} MiB moved per copy (read + write); best {best / 1e9:.1f} GB/s{ref}"
        return peak is not None and median > peak.bandwidth * OVER_PEAK


class MatmulScenario(_Microbenchmark):
    kind = "matmul"
    plan_keys = ("dtype", "matmul_n")

    def label(self, case: Case) -> str:
        return f"{case['dtype']} {case['matmul_n']}^3 products"

    def time(self, device: Device, case: Case, row: dict[str, Any], timing: dict) -> tuple[float, list[float]]:
        dtype, _ = dev.pick_dtype(case["dtype"], device)
        n, name = case["matmul_n"], dev.dtype_name(dtype)
        row["dtype"], row["matmul_n"] = name, n
        calls = timing["warmup"] + timing["min_reps"]
        cost = product_cost(device, n, dtype, budget=timing["max_seconds"] / calls)
        if cost.seconds * calls > timing["max_seconds"]:
            raise TooSlow(calls, cost.seconds, timing["max_seconds"],
                          f"{cost.flops / 1e9:.1f} GFLOP/s at {cost.probed_n}^3, scaled by n^3")
        return matmul_flops(device, n, dtype, **timing)

    def why_slow(self, device: Device, row: dict[str, Any]) -> str:
        """A CPU without the instructions of a native kernel for the dtype runs PyTorch's fallback."""
        native = NATIVE_16BIT.get(row["dtype"], set())
        if device.type != "cpu" or not native or dev.cpu_flags() & native:
            return "; lower matmul_n or raise max_seconds"
        return (f"; this CPU has none of {', '.join(sorted(native))}, so {row['dtype']} runs a fallback, not a "
                "native kernel; lower matmul_n or raise max_seconds")

    def report(self, device: Device, case: Case, row: dict[str, Any], best: float, median: float) -> bool:
        peak = _known(datasheet_peak(device.name), "flops16")
        row["tflops"] = median / 1e12
        row["tflops_best"] = best / 1e12
        ref = f"; datasheet {peak.flops16 / 1e12:.0f} TFLOP/s 16-bit dense ({peak.name})" if peak else ""
        row["detail"] = f"{case['matmul_n']}^3 products; best {best / 1e12:.2f} TFLOP/s{ref}"
        return peak is not None and row["dtype"] != "float32" and median > peak.flops16 * OVER_PEAK


def _known(peak: Any, figure: str) -> Any:
    """The datasheet entry where it has this figure (a card named without published figures has NaN)."""
    return peak if peak is not None and math.isfinite(getattr(peak, figure)) else None
