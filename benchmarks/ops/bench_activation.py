"""GELU under the identity rule (``lrp_kernels/ops/activation.py``) on every backend that runs here
vs the torch reference, at BERT-base shapes (``bert_base.py``): the intermediate activation.

    python -m pytest benchmarks/ops/bench_activation.py --benchmark-only

(In a BERT layer the GELU's backward is fused into the linear that produced it: see
``bench_linear.py``'s ``gelu_eps_ratio``.)
"""

from __future__ import annotations

import pytest

from bert_base import INTER, TARGETS, TOKENS, time_case  # benchmarks/ops helper

CASES = {  # case -> (shape, fn(backend, inputs))
    "gelu_forward": (f"{TOKENS}{INTER}", lambda b, t: b.activation.forward(t.u, "gelu")),
    "gelu_backward": (f"{TOKENS}{INTER}", lambda b, t: b.activation.backward(t.g_u, t.u, "gelu")),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CASES))
def test_activation(benchmark, target, case):
    time_case(benchmark, target, "activation", case, *CASES[case])
