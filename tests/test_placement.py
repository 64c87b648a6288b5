"""One model over several cards: which cards, which layers where, and what a bad card list says.

The layer map is computed for a meta-device model (no memory, no cards needed); the cards themselves are a
fake device layer here (this machine has none): `backend_module` and `resolve_device` stand in for a CUDA
torch with four cards. The split itself runs end to end on the CPU with one device through the same path.
"""

import re

import pandas as pd
import pytest
import torch

from bench.core.errors import BadInput
from bench.engines import device_count
from bench.hardware.devices import Device
from bench.hardware.placement import card_count, check_tensor_parallel, layer_split_map, parse_cards
from tests.helpers import FAST, auto_bytes_per_element, run_bench, single_run_dir


def test_cards_are_a_count_or_a_list_and_a_bad_list_is_said():
    assert parse_cards("", 1, 4, "cuda") == [1]
    assert parse_cards("2", 1, 4, "cuda") == [1, 2]
    assert parse_cards("0,3", 0, 4, "cuda") == [0, 3]
    assert card_count("") == 1 and card_count("3") == 3 and card_count("0,2") == 2
    for spec, said in (("4", "4 card(s) from cuda:1 asked, this machine has 4"), ("0,0", "card 0 listed twice"),
                       ("1,7", "no cuda card 7"), ("a,b", "use a count"), ("0", "at least one card")):
        with pytest.raises(BadInput, match=re.escape(said)):
            parse_cards(spec, 1, 4, "cuda")


def test_tensor_parallel_must_divide_the_heads():
    check_tensor_parallel(8, 4, 2)
    check_tensor_parallel(8, 4, 8)  # more cards than key/value heads: vLLM replicates them
    with pytest.raises(BadInput, match="does not divide the model's 8 attention heads"):
        check_tensor_parallel(8, 4, 3)


def test_device_count_counts_the_cards_a_case_names():
    assert device_count({"engine": "transformers", "cards": "0,2"}) == 2
    assert device_count({"engine": "transformers", "cards": ""}) == 1
    assert device_count({"engine": "vllm", "tensor_parallel_size": 2, "pipeline_parallel_size": 2}) == 4


def _meta_model(name: str = "tiny"):
    from transformers import AutoModelForCausalLM

    from bench.spec.models import resolve_model

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(resolve_model(name).config)


def test_a_layer_split_gives_each_card_layers_in_proportion_to_its_free_memory():
    cards = [torch.device("cuda", 0), torch.device("cuda", 1)]
    model = _meta_model()  # 8 layers, the head tied to the embedding
    even = layer_split_map(model, cards, [40e9, 40e9])
    assert [even[f"model.layers.{i}"] for i in range(8)] == [cards[0]] * 4 + [cards[1]] * 4
    assert even["model.embed_tokens"] == cards[0] and even["lm_head"] == cards[0]  # tied: with the embedding
    uneven = layer_split_map(model, cards, [60e9, 20e9])
    assert [uneven[f"model.layers.{i}"] for i in range(8)].count(cards[0]) == 6
    # Every parameter is on exactly one card of the map.
    names = [n for n, _ in model.named_parameters()]
    assert all(sum(n.startswith(k + ".") for k in even) == 1 for n in names)


def test_an_untied_head_goes_on_the_last_card():
    cards = [torch.device("cuda", i) for i in range(3)]
    split = layer_split_map(_meta_model("llama-3.1-8b"), cards, [80e9] * 3)  # 32 layers, untied head
    assert split["lm_head"] == cards[2] and split["model.norm"] == cards[2] and split["model.embed_tokens"] == cards[0]
    assert [split[f"model.layers.{i}"] for i in (0, 10, 11, 21, 22, 31)] == [cards[0]] * 2 + [cards[1]] * 2 + \
        [cards[2]] * 2


class _FakeCuda:
    """Four cards, as torch.cuda would say on a four-GPU machine."""

    @staticmethod
    def device_count() -> int:
        return 4


def test_the_cards_resolve_through_the_device_layer(monkeypatch):
    from bench.hardware import placement as te

    monkeypatch.setattr(te, "backend_module", lambda kind: _FakeCuda)
    monkeypatch.setattr(te, "resolve_device", lambda spec: Device(torch.device(spec), "Fake H100", int(80e9)))
    first = Device(torch.device("cuda", 1), "Fake H100", int(80e9))
    assert [str(c) for c in te.resolve_cards("3", first)] == ["cuda:1", "cuda:2", "cuda:3"]
    assert te.resolve_cards("3", first)[0] is first
    assert [str(c) for c in te.resolve_cards("0,2", first)] == ["cuda:0", "cuda:2"]
    with pytest.raises(BadInput, match="this machine has 4 cuda card"):
        te.resolve_cards("4", first)


def test_a_layer_split_runs_end_to_end_on_one_device(tmp_path):
    """The split path on this machine's one device (the CPU): accelerate's hooks, random weights built on the
    map, the row naming its placement; the same path that spreads a model over several cards."""
    pytest.importorskip("accelerate")  # the `multicard` extra (CI installs it)
    proc = run_bench("run", "--set", "placement=layer-split", "--set", "cards=1", "--set", "batch_size=1", "--set",
                     "output_len=8", *FAST, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = pd.read_csv(single_run_dir(tmp_path) / "results.csv").to_dict("records")
    assert row["status"] == "ok" and row["placement"] == "layer-split" and row["cards"] == "cpu", row["detail"]
    assert row["device_count"] == 1 and row["decode_tok_s"] > 0


@pytest.mark.parametrize("sets, said", [
    (["cards=2"], "the CPU is one device"),
    (["cards=0,0"], "the CPU is one device"),
    (["placement=tp"], "placement=tp needs two or more cards"),
    (["placement=tp", "cards=3"], "does not divide the model's 8 attention heads"),
    (["placement=tp", "cards=0,1"], "on a CPU, placement=tp takes a rank count"),
    (["placement=tp", "cards=2", "quant=int8"], "quantized shards are not run"),
    (["placement=tp", "cards=2", "decode=generate"], "use decode=loop or decode=captured"),
    (["engine=vllm", "tensor_parallel_size=3"], "does not divide the model's 8 attention heads"),
])
def test_bad_card_settings_are_one_line_and_exit_2(tmp_path, sets, said):
    args = [a for s in sets for a in ("--set", s)]
    proc = run_bench("run", "--device", "cpu", *args, "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert said in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_tensor_parallel_ranks_on_a_cpu_are_a_count_no_larger_than_its_cores(monkeypatch):
    from bench.hardware.placement import tensor_parallel_ranks

    cpu = Device(torch.device("cpu"), "a CPU", 1 << 30)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert [str(d) for d in tensor_parallel_ranks("4", cpu)] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    with pytest.raises(BadInput, match="5 tensor-parallel ranks on a CPU with 4 cores"):
        tensor_parallel_ranks("5", cpu)
    with pytest.raises(BadInput, match="needs two or more cards"):
        tensor_parallel_ranks("1", cpu)


def test_verify_gives_the_memory_of_a_card_and_of_the_whole_server():
    """iluvatar-memory is per card; the verdict also says what the machine holds in all (16 x 32 GB)."""
    from types import SimpleNamespace

    from bench.analysis.verify import _memory_per_card

    cards = [{"index": i, "memory_total_gb": 32.0} for i in range(16)]
    run = SimpleNamespace(name="r", device_name="Iluvatar MR-V100",
                          fingerprint=lambda: {"accelerators": cards, "device": {"torch": "cuda:0"}})
    gb, name, text, device = _memory_per_card(None, [run])
    assert gb == 32.0 and name == "r" and "16 card(s), 512 GB of device memory in all" in text


def test_capacity_skips_the_larger_models_once_one_ran_out_of_memory():
    from bench.scenarios.capacity import CapacityScenario
    from bench.spec.workload import load_workload

    scenario = CapacityScenario(load_workload("capacity"))
    cases = scenario.expand()  # the bundled models, smallest first
    first, second, third = cases[0], cases[2], cases[4]
    assert [c["model"] for c in (first, second, third)] == ["llama-3.2-1b", "llama-3.1-8b", "llama-2-70b"]
    row = {"status": "ok", "slo_tpot_ms": 0}
    scenario.not_loaded(first, row)
    assert row["largest_model_fitting"] == ""
    scenario.largest = "llama-3.2-1b"
    scenario.on_oom(second)
    assert scenario.skip_before_load(second) is None  # its other cases still say their own OOM
    status, why = scenario.skip_before_load(third)
    assert status == "skipped" and "llama-3.1-8b" in why
    row = {"status": "skipped"}
    scenario.not_loaded(third, row)
    assert row["largest_model_fitting"] == "llama-3.2-1b"


def test_the_capacity_workload_runs_what_fits_and_does_not_load_what_cannot(tmp_path):
    proc = run_bench("run", "--workload", "capacity", "--quick", "--set", "model=qwen2.5-0.5b,llama-2-70b", *FAST,
                     "--set", "min_reps=1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = pd.read_csv(single_run_dir(tmp_path) / "results.csv")
    assert list(df["status"]) == ["ok", "skipped"], df["detail"].tolist()
    from bench.spec.models import resolve_model

    weights_gb = resolve_model("llama-2-70b").shape.params * auto_bytes_per_element() / 1e9
    assert f"weights alone are {weights_gb:.1f} GB" in df.loc[1, "detail"] and "not loaded" in df.loc[1, "detail"]
    assert list(df["largest_model_fitting"]) == ["qwen2.5-0.5b", "qwen2.5-0.5b"]
    assert "answer largest model that fits cpu: qwen2.5-0.5b" in " ".join(proc.stdout.split())


@pytest.mark.parametrize("flags, dtype", [(set(), torch.float32), ({"amx_bf16"}, torch.bfloat16)])
def test_the_roofline_probe_multiplies_in_the_dtype_a_case_gets(monkeypatch, tmp_path, flags, dtype):
    """A CPU without native bf16 runs cases in fp32; a bf16 probe there measured ~1% of what fp32 matmuls
    reach, and every fp32 prefill then had an MFU above 1."""
    from bench.hardware import ceilings, devices, microbench

    monkeypatch.setenv("CLAIMBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    seen = []
    monkeypatch.setattr(microbench, "copy_bandwidth", lambda *a: (1e9, [1.0]))
    monkeypatch.setattr(microbench, "matmul_flops", lambda dev, n, dt, *a: (seen.append(dt), (2e9, [1.0]))[1])
    ceiling, _ = ceilings.probed_ceiling(devices.resolve_device("cpu"))
    assert seen == [dtype]
    assert ("fp32 matmul" if dtype == torch.float32 else "bf16 matmul") in ceiling.source
