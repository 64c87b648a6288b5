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
from bench.hardware.microbench import copy_bandwidth, matmul_flops
from bench.hardware.roofline import datasheet_peak
from bench.scenarios.base import Scenario
from bench.spec.workload import Case

OVER_PEAK = 1.05  # a median this far above the datasheet is a measurement bug


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
                      max_reps=p["max_reps"])
        work, times = self.time(device, case, row, timing)
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
        raise NotImplementedError

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
        row["dtype"], row["matmul_n"] = dev.dtype_name(dtype), case["matmul_n"]
        return matmul_flops(device, case["matmul_n"], dtype, **timing)

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
