"""The linear ε-rule (``lrp_kernels/ops/linear.py``) on every backend that runs here vs the torch
reference, at BERT-base shapes (``bert_base.py``).

    python -m pytest benchmarks/ops/bench_linear.py --benchmark-only

The element-wise rule alone (``eps_ratio``, ``gelu_eps_ratio``), and the whole backward of the
three BERT linears whose backward feeds a GEMM, as the op runs it: the backend's element-wise rule,
then ``torch.matmul``.
"""

from __future__ import annotations

import pytest
import torch

from bert_base import EPS, HIDDEN, INTER, TARGETS, TOKENS, time_case  # benchmarks/ops helper


def backward(backend, g, z, weight, gelu=False):
    kernels = backend.linear
    rule = kernels.gelu_eps_ratio(g, z, EPS, "none") if gelu else kernels.eps_ratio(g, z, EPS)
    return torch.matmul(rule, weight)


CASES = {  # case -> (shape, fn(backend, inputs))
    "eps_ratio": (f"{TOKENS}{HIDDEN}", lambda b, t: b.linear.eps_ratio(t.g_h, t.z_h, EPS)),
    "gelu_eps_ratio": (f"{TOKENS}{INTER}", lambda b, t: b.linear.gelu_eps_ratio(t.g_u, t.u, EPS, "none")),
    "backward_eps_attention_out": (f"{TOKENS}{HIDDEN}·{HIDDEN}x{HIDDEN}",
                                   lambda b, t: backward(b, t.g_h, t.z_h, t.w_proj)),
    "backward_eps_mlp_out": (f"{TOKENS}{HIDDEN}·{HIDDEN}x{INTER}", lambda b, t: backward(b, t.g_h, t.z_h, t.w_out)),
    "backward_gelu_eps_mlp_in": (f"{TOKENS}{INTER}·{INTER}x{HIDDEN}",
                                 lambda b, t: backward(b, t.g_u, t.u, t.w_in, gelu=True)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CASES))
def test_linear(benchmark, target, case):
    time_case(benchmark, target, "linear", case, *CASES[case])
