"""The real NVIDIA path: NVML, energy, memory and the CLI on a card (`pytest -m gpu`; skipped without one).

On a CPU machine the same code runs against tests/fake_nvml.py (test_telemetry.py);
these tests prove it against a real driver.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from bench.telemetry.sampler import Sampler, summarise_windows

pytestmark = pytest.mark.gpu

GIB = 1 << 30


@pytest.fixture(scope="module")
def nvml():
    pytest.importorskip("pynvml")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from bench.telemetry.nvml import NvmlBackend

    backend = NvmlBackend()
    yield backend
    backend.close()


def _busy(seconds: float) -> None:
    """Dense bf16 products for about `seconds`: a steady load that moves power well above idle."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(20):
            torch.matmul(a, b)
        torch.cuda.synchronize()


def test_fingerprint_is_complete(nvml):
    fp = nvml.fingerprint()
    assert len(fp) == torch.cuda.device_count()
    card = fp[0]
    assert card["uuid"].startswith(("GPU-", "MIG-"))
    missing = [k for k in ("name", "driver", "cuda_driver", "memory_total_gb", "power_limit_w", "sm_clock_max_mhz",
                           "mem_clock_max_mhz", "pcie_gen", "pcie_width", "ecc_mode", "mig_mode")
               if card.get(k) is None]
    assert not missing, f"fingerprint lacks {missing}; NVML said {card['unsupported']}"
    assert card["name"] in torch.cuda.get_device_name(0) or torch.cuda.get_device_name(0) in card["name"]
    assert card["power_limit_w"] > 0 and card["sm_clock_max_mhz"] > 0


def test_every_reading_is_supported(nvml):
    caps = nvml.capabilities()
    assert {k: v for k, v in caps.items() if v} == {}, caps
    r = nvml.read()[0]
    assert r.power_w > 0 and r.energy_j > 0 and r.temp_c > 0 and r.sm_clock_mhz > 0
    assert isinstance(r.throttle, tuple)  # clock-event reasons read (empty means none active)


def test_nvml_memory_used_matches_torch(nvml):
    """NVML's used memory agrees with the driver's view through torch within 5%, and sees an allocation."""
    torch.cuda.synchronize()
    before = nvml.read()[0].mem_used_gb
    block = torch.empty(16 * GIB, dtype=torch.uint8, device="cuda")
    block.fill_(1)
    torch.cuda.synchronize()
    after = nvml.read()[0].mem_used_gb
    free, total = torch.cuda.mem_get_info()
    torch_used = (total - free) / 1e9
    assert after == pytest.approx(torch_used, rel=0.05), (after, torch_used)
    assert after - before == pytest.approx(16 * GIB / 1e9, rel=0.05), (before, after)
    del block
    torch.cuda.empty_cache()


def test_energy_counter_moves_and_power_stays_within_the_limit(nvml):
    limit = nvml.fingerprint()[0]["power_limit_w"]
    sampler = Sampler(nvml, hz=20)
    sampler.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    _busy(4.0)
    t1 = time.perf_counter()
    time.sleep(0.3)
    sampler.stop()
    series = sampler.series(t0, t1)["gpu0"]
    assert series[-1].energy_j > series[0].energy_j
    summary = summarise_windows({"gpu0": series}, [(t0, t1)])["gpu0"]
    assert summary["method"] == "counter"
    assert 0 < summary["power_w_mean"] <= limit, (summary, limit)
    # The limit holds on average; instantaneous readings overshoot it (850 W seen on a 700 W H200).
    assert summary["power_w_max"] <= 1.5 * limit, (summary, limit)
    # The two energy methods over the same 4 s window: counter vs integrated 20 Hz power.
    gap = summary["energy_power_j"] / summary["energy_j"] - 1
    print(f"counter {summary['energy_j']:.1f} J, integrated power {summary['energy_power_j']:.1f} J, "
          f"gap {gap:+.2%}, mean {summary['power_w_mean']:.0f} W of {limit:.0f} W")
    assert abs(gap) < 0.05, summary


def test_real_gpu_run_measures_energy_per_window(tmp_path):
    """The full CLI on a real NVIDIA GPU: counter energy in every ok row, both J/token methods, a fingerprint."""
    import pandas as pd

    from tests.helpers import run_bench, single_run_dir

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    proc = run_bench("run", "--device", "cuda", "--out", str(tmp_path), "--set", "min_seconds=2",
                     "--set", "idle_seconds=1")
    assert proc.returncode == 0, proc.stderr
    run = single_run_dir(tmp_path)
    df = pd.read_csv(run / "results.csv")
    assert (df["status"] == "ok").all(), df["detail"].tolist()
    assert df["energy_source"].isin(["nvml-counter", "nvml-power"]).all()
    assert (df["energy_decode_j"] > 0).all() and (df["power_w_mean"] > 0).all()
    assert df["energy_j_per_token_power"].notna().all()
    assert (df["roofline_decode_tok_s"] > df["decode_tok_s"]).all()
    assert ((df["mbu"] > 0) & (df["mbu"] <= 1)).all()
    assert (df["peak_mem_gb"] > 0).all()
    meta = json.loads((run / "run.json").read_text())
    card = meta["fingerprint"]["accelerators"][0]
    assert card["uuid"] and card["driver"] and card["power_limit_w"]
    assert meta["idle_power_w"]["gpu0"] > 0  # the baseline's window is bracketed by readings
    assert meta["fingerprint"]["allocator_conf"] == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    tel = pd.read_csv(run / "telemetry.csv")
    assert tel["energy_j"].is_monotonic_increasing


@pytest.mark.gpu
def test_quantized_weights_on_the_card(tmp_path):
    """int8 and int4 (tinygemm's packing) on CUDA: rows ok, or skipped with torchao's reason; stored bytes shrink."""
    import pandas as pd

    from tests.helpers import run_bench, single_run_dir

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("torchao")
    proc = run_bench("run", "--device", "cuda", "--model", "qwen2.5-0.5b", "--set", "quant=none,int8,int4",
                     "--set", "batch_size=1", "--set", "min_reps=3", "--set", "min_seconds=0", "--set", "idle_seconds=0",
                     "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv").set_index("quant")
    print(df[["status", "weight_bytes", "decode_tok_s", "mbu", "detail"]].to_string())
    assert df.loc["none", "status"] == "ok"
    for quant in ("int8", "int4"):
        row = df.loc[quant]
        assert row["status"] in ("ok", "skipped"), row["detail"]
        if row["status"] == "ok":
            assert row["weight_bytes"] < df.loc["none", "weight_bytes"]
        else:
            assert "torchao" in row["detail"]


@pytest.mark.parametrize("decode", ["loop", "captured"])
def test_device_event_timestamps_agree_with_the_window(decode):
    """The per-token times come from device events synchronised once at the end; their span must agree with
    the host clock between the loop's own synchronised edges (the start, and the synchronisation after the
    last step) within 1%. (A window drawn around the engine call also holds the cache reset and the copy of
    the tokens to the host: 1.4 ms on an H200, 1.2% of a fast call.)"""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from bench.engines import get_engine
    from bench.engines.base import LoadOptions
    from bench.hardware.devices import resolve_device
    from bench.spec.models import resolve_model
    from bench.spec.prompts import random_prompts

    device = resolve_device("cuda")
    spec = resolve_model("qwen2.5-0.5b")
    engine = get_engine("transformers")
    engine.load(spec, device, LoadOptions(dtype=torch.bfloat16, decode=decode))
    assert engine.decode_path() == decode
    ids = random_prompts(1, 128, spec.shape.vocab, 0, spec.special_token_ids)
    engine.generate(ids, 64)  # warm-up: compilation and capture
    rep = engine.generate(ids, 64)
    start, end = engine.loop.last_window
    (req,) = rep.requests
    assert req.output_len == 64 and all(b > a for a, b in zip(req.token_times, req.token_times[1:]))
    assert req.start == start and req.token_times[-1] <= end
    assert (end - req.token_times[-1]) / (end - start) < 0.01, (req.e2e, end - start)
    engine.close()


def test_captured_decode_on_the_card_decodes_what_the_eager_loop_decodes():
    """The captured path (CUDA graphs) gives the eager loop's tokens, call after call: a graph output kept past
    its replay, or a stale cache pointer, would change them (float32, so the two paths' arithmetic agrees)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from bench.engines import get_engine
    from bench.engines.base import LoadOptions
    from bench.hardware.devices import resolve_device
    from bench.spec.models import resolve_model
    from bench.spec.prompts import random_prompts

    device = resolve_device("cuda")
    spec = resolve_model("tiny")
    ids = random_prompts(4, 32, spec.shape.vocab, 0, spec.special_token_ids)
    tokens = {}
    for decode in ("loop", "captured"):
        engine = get_engine("transformers")
        engine.load(spec, device, LoadOptions(dtype=torch.float32, decode=decode))
        calls = []
        for _ in range(3):
            engine.generate(ids, 24)
            calls.append(engine.loop.last_tokens.clone())
        assert all(torch.equal(c, calls[0]) for c in calls), f"{decode}: calls disagree"
        tokens[decode] = calls[0]
        engine.close()
    assert len(tokens["loop"].unique()) > 1  # a constant sequence could hide an overwritten output
    assert torch.equal(tokens["captured"], tokens["loop"]), (tokens["captured"], tokens["loop"])


def test_a_layer_split_over_every_card_of_this_machine(tmp_path):
    """The tiny model over all the cards here (cards=N; on a one-card machine cards=1 through the same split
    path): an ok row naming its cards, peak memory summed over them, and the stamped decode as fast as a
    plain run's within reason (a split adds copies at the boundaries, never a second card's speed)."""
    import pandas as pd

    from tests.helpers import run_bench, single_run_dir

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("accelerate")
    count = torch.cuda.device_count()
    proc = run_bench("run", "--device", "cuda", "--out", str(tmp_path), "--set", f"cards={count}", "--set",
                     "placement=layer-split", "--set", "batch_size=1", "--set", "idle_seconds=0", "--set",
                     "min_seconds=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = pd.read_csv(single_run_dir(tmp_path) / "results.csv").to_dict("records")
    assert row["status"] == "ok" and row["placement"] == "layer-split", row["detail"]
    assert row["cards"] == " ".join(f"cuda:{i}" for i in range(count)) and row["device_count"] == count
    assert row["peak_mem_gb"] > 0 and row["decode_tok_s"] > 0 and 0 < row["mbu"] <= 1
    if count > 1:
        per_card = dict(item.split("=") for item in row["peak_mem_gb_per_card"].split())
        assert len(per_card) == count and all(float(v) > 0 for v in per_card.values())


def test_tensor_parallel_over_two_cards_decodes_what_one_card_decodes(tmp_path):
    """transformers' tp plan over two NCCL ranks (skipped on a one-card machine): the same greedy tokens as
    one card from the same float32 checkpoint, each rank's card in the row, and the roofline over both cards."""
    from transformers import AutoModelForCausalLM

    from bench.engines import get_engine, load_options
    from bench.hardware.devices import resolve_device
    from bench.spec.models import resolve_model
    from bench.spec.workload import PARAMS

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA cards")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(resolve_model("tiny").config, dtype=torch.float32).save_pretrained(tmp_path)
    spec = resolve_model(str(tmp_path))
    params = {k: p.default for k, p in PARAMS.items()}
    ids = torch.randint(3, 10000, (2, 12), generator=torch.Generator().manual_seed(1))
    tokens = []
    for extra in ({}, {"cards": "2", "placement": "tp"}):
        engine = get_engine("transformers")
        engine.load(spec, resolve_device("cuda:0"),
                    load_options({**params, "engine": "transformers", "decode": "loop", **extra}, torch.float32))
        engine.generate(ids, 8)
        tokens.append(engine.last_tokens if extra else engine.loop.last_tokens)
        if extra:
            info = engine.placement_info()
            assert info["cards"] == ["cuda:0", "cuda:1"] and info["concurrent_cards"] == 2
            assert set(engine.peak_memory_per_card()) == {"cuda:0", "cuda:1"}
        engine.close()
    assert torch.equal(tokens[0].cpu(), tokens[1].cpu())
