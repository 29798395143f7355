r"""Element-wise activations (GELU, tanh, ReLU) under the identity rule.

Math (Achtibat et al. 2024, AttnLRP, identity rule for element-wise non-linearities):

    y = f(x),   R_x = R_y   ⇒   g_x = g_y ⊙ f(x)/x

guarded at x ≈ 0 by the limit of f(x)/x (½ for GELU, 1 for tanh). For ReLU the factor f(x)/x is
the indicator x > 0, i.e. the rule *is* the plain gradient. Relevance passes unchanged:
Σ R_x = Σ R_y exactly.

A GELU right after a linear layer is fused into that layer's backward (:mod:`lrp_kernels.ops.linear`);
this op serves a pooler's tanh, a head's ReLU and activations that stand alone.

Kernels (:class:`~lrp_kernels.backends.contract.ActivationKernels`): ``backends/{torch,cpp,triton}/activation.py``,
``csrc/activation.{cpp,cu}``; tests ``tests/ops/test_activation.py``; benchmark ``benchmarks/ops/bench_activation.py``.
"""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import ACTIVATIONS, Backend

from ._backend import or_reference

FUNCTIONS = ACTIVATIONS


class LRPActivationFunction(torch.autograd.Function):
    """Forward: f(x); backward: g_y ⊙ f(x)/x (identity rule)."""

    @staticmethod
    def forward(ctx, x, fn, backend: Backend):
        ctx.fn, ctx.kernels = fn, backend.activation
        ctx.save_for_backward(x)
        return backend.activation.forward(x, fn)

    @staticmethod
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        return ctx.kernels.backward(grad_y, x, ctx.fn), None, None


def lrp_activation(x, fn, backend: Backend | None = None):
    """``fn(x)`` for ``fn`` in :data:`FUNCTIONS`, with the identity rule as its backward."""
    if fn not in FUNCTIONS:
        raise ValueError(f"unknown activation {fn!r}; valid: {', '.join(FUNCTIONS)}")
    return LRPActivationFunction.apply(x, fn, or_reference(backend))
