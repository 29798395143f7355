"""LayerNorm with 1/σ held constant (``lrp_kernels/ops/layer_norm.py``) on every backend that runs
here vs the torch reference, at BERT-base shapes (``bert_base.py``).

    python -m pytest benchmarks/ops/bench_layer_norm.py --benchmark-only
"""

from __future__ import annotations

import pytest

from bert_base import HIDDEN, TARGETS, TOKENS, time_case  # benchmarks/ops helper

CASES = {  # case -> (shape, fn(backend, inputs))
    "forward": (f"{TOKENS}{HIDDEN}", lambda b, t: b.layer_norm.forward(t.x, t.w_ln, t.b_ln, 1e-12)),
    "backward": (f"{TOKENS}{HIDDEN}", lambda b, t: b.layer_norm.backward(t.g_h, t.w_ln, t.rstd)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CASES))
def test_layer_norm(benchmark, target, case):
    time_case(benchmark, target, "layer_norm", case, *CASES[case])
