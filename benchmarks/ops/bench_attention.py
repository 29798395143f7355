"""Attention with the attnlrp / cp_lrp backward (``lrp_kernels/ops/attention.py``) on every backend
that runs here vs the torch reference, at BERT-base shapes (``bert_base.py``; half the batch ¼
padded), and the compiled masked-softmax kernels that the ``cpp``/``cuda`` attention runs between
``torch.matmul`` calls where it does not take the reference's fused kernel.

    python -m pytest benchmarks/ops/bench_attention.py --benchmark-only
"""

from __future__ import annotations

import pytest

from bert_base import BATCH, HEADS, HIDDEN, SEQ, TARGETS, time_case  # benchmarks/ops helper

from lrp_kernels.backends.cpp import attention as cpp_attention
from lrp_kernels.backends.torch import attention as torch_attention

QKV = f"{BATCH}x{HEADS}x{SEQ}x{HIDDEN // HEADS}"
SCORES = f"{BATCH}x{HEADS}x{SEQ}x{SEQ}"
_saved: dict = {}  # (backend, device, mode) -> the saved state of that backend's forward


def _forward(mode):
    return lambda b, t: b.attention.forward(t.q, t.k, t.v, t.mask, t.scale, mode)


def _backward(mode):
    def run(backend, t):
        key = (backend.name, t.q.device.type, mode)
        if key not in _saved:  # made by the untimed warm-up call
            _saved[key] = backend.attention.forward(t.q, t.k, t.v, t.mask, t.scale, mode)[1]
        return backend.attention.backward(t.g_o, t.q, t.k, t.v, t.mask, t.scale, mode, _saved[key])

    return run


CASES = {  # case -> (shape, fn(backend, inputs))
    "forward_attnlrp": (QKV, _forward("attnlrp")),
    "backward_attnlrp": (QKV, _backward("attnlrp")),
    "backward_cp_lrp": (QKV, _backward("cp_lrp")),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CASES))
def test_attention(benchmark, target, case):
    time_case(benchmark, target, "attention", case, *CASES[case])


def _softmax_module(backend):
    return torch_attention if backend.name == "torch" else cpp_attention


SOFTMAX_CASES = {  # the compiled softmax kernels (cpp, cuda) vs the reference's
    "softmax_forward": (SCORES, lambda b, t: _softmax_module(b).softmax_forward(t.scores, t.mask, t.scale)),
    "softmax_backward": (SCORES, lambda b, t: _softmax_module(b).softmax_backward(t.g_p, t.probs, t.scale * 0.25)),
}


@pytest.mark.parametrize("target", [p for p in TARGETS if p.values[0][0] != "triton"])
@pytest.mark.parametrize("case", list(SOFTMAX_CASES))
def test_softmax(benchmark, target, case):
    time_case(benchmark, target, "attention", case, *SOFTMAX_CASES[case])
