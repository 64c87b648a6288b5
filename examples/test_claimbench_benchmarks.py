"""claimbench cases tracked with pytest-benchmark (the `claimbench_case` fixture comes with claimbench).

    pytest examples/test_claimbench_benchmarks.py --benchmark-autosave          # record a baseline
    pytest examples/test_claimbench_benchmarks.py --benchmark-compare \\
           --benchmark-compare-fail=mean:10%                                     # fail on a 10% slowdown
"""


def test_tiny_model_decode(claimbench_case):
    metrics = claimbench_case(workload="quick", model="tiny", batch_size=1, input_len=64, output_len=16,
                              rounds=5, warmup_rounds=1)
    assert metrics["decode_tok_s"] > 0
