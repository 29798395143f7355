r"""Element-wise activations (GELU, tanh, ReLU) under the identity rule.

Math (Achtibat et al. 2024, AttnLRP, identity rule for element-wise non-linearities):

    y = f(x),   R_x = R_y   ⇒   g_x = g_y ⊙ f(x)/x

guarded at x ≈ 0 by the limit of f(x)/x (½ for GELU, 1 for tanh). For ReLU the factor is the
indicator x > 0, i.e. the plain gradient. Relevance passes unchanged: Σ R_x = Σ R_y exactly.

Inside BERT the intermediate GELU is fused into its linear layer (:mod:`lrp_kernels.ops.linear`);
this op serves the pooler's tanh and models whose activation stands alone.
"""

from __future__ import annotations

import torch

from lrp_kernels.backend import host_function

TANH_GUARD = 1e-6

FUNCTIONS = ("gelu", "gelu_tanh", "tanh", "relu")


def _tanh_factor(x: torch.Tensor) -> torch.Tensor:
    xf = x if x.dtype == torch.float64 else x.float()
    small = xf.abs() < TANH_GUARD
    safe = torch.where(small, torch.ones_like(xf), xf)
    return torch.where(small, torch.ones_like(xf), torch.tanh(safe) / safe)


class LRPActivationFunction(torch.autograd.Function):
    """Forward: f(x); backward: g_y ⊙ f(x)/x (identity rule)."""

    @staticmethod
    def forward(ctx, x, fn, impl):
        ctx.fn, ctx.impl = fn, impl
        ctx.save_for_backward(x)
        if fn == "tanh":
            return torch.tanh(x)
        if fn == "relu":
            return torch.relu(x)
        return host_function(impl, "gelu_forward")(x, "tanh" if fn == "gelu_tanh" else "none")

    @staticmethod
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        if ctx.fn == "tanh":
            grad_x = (grad_y.to(torch.float64 if x.dtype == torch.float64 else torch.float32) * _tanh_factor(x))
            return grad_x.to(grad_y.dtype), None, None
        if ctx.fn == "relu":
            return grad_y * (x > 0).to(grad_y.dtype), None, None
        approximate = "tanh" if ctx.fn == "gelu_tanh" else "none"
        return host_function(ctx.impl, "gelu_backward")(grad_y, x, approximate), None, None


def lrp_activation(x, fn, impl=None):
    """``fn(x)`` for ``fn`` in :data:`FUNCTIONS`, with the identity rule as its backward."""
    if fn not in FUNCTIONS:
        raise ValueError(f"unknown activation {fn!r}; valid: {', '.join(FUNCTIONS)}")
    if impl is None:
        from lrp_kernels.ops import _torch_backend as impl
    return LRPActivationFunction.apply(x, fn, impl)
