"""The gated MLP rule (``lrp_kernels/ops/gated_mlp.py``) on every backend that runs here vs the torch
reference (``bert_base.py``): EuroBERT-210m's SwiGLU (a, b two [.., 3072] projections) and
ModernBERT-base's GeGLU (a, b the halves of one [.., 2304] projection: row stride 2304).

    python -m pytest benchmarks/ops/bench_gated_mlp.py --benchmark-only

The forward act(a)·b, and the backward's one element-wise pass (identity × uniform split × ε-ratio)
that writes the [.., 2I] input of the backward GEMM (the GEMM itself is torch.matmul on every backend).
"""

from __future__ import annotations

import pytest

from bert_base import EPS, INTER, MODERN_INTER, TARGETS, TOKENS, time_case  # benchmarks/ops helper


def _halves(t):
    return t.wi.chunk(2, dim=-1)


CASES = {  # case -> (shape, fn(backend, inputs))
    "swiglu_forward": (f"{TOKENS}{INTER}", lambda b, t: b.gated_mlp.forward(t.u, t.up, "silu")),
    "swiglu_backward": (f"{TOKENS}{INTER}", lambda b, t: b.gated_mlp.backward(t.g_u, t.u, t.up, "silu", EPS)),
    "geglu_forward": (f"{TOKENS}{MODERN_INTER}/{2 * MODERN_INTER}", lambda b, t: b.gated_mlp.forward(*_halves(t), "gelu")),
    "geglu_backward": (f"{TOKENS}{MODERN_INTER}/{2 * MODERN_INTER}",
                       lambda b, t: b.gated_mlp.backward(t.g_wi, *_halves(t), "gelu", EPS)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CASES))
def test_gated_mlp(benchmark, target, case):
    time_case(benchmark, target, "gated_mlp", case, *CASES[case])
