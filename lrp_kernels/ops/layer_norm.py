r"""LayerNorm under the identity rule on its normalization (σ held constant).

Math (Ali et al. 2022, CP-LRP; Achtibat et al. 2024, AttnLRP — both treat 1/σ as a constant):

    y = γ ⊙ (x − μ)/σ + β,          μ = mean_H(x),  σ = sqrt(var_H(x) + eps)

With σ constant, y is an affine map of x: y = M x + β with M = diag(γ)(I − 11ᵀ/H)/σ. The ε = 0 rule on
that map gives, in the gradient×input form,

    g_x = Mᵀ g_y = (γ⊙g_y − mean_H(γ⊙g_y)) / σ

and Σ R_x = Σ (y − β) ⊙ g_y: conservative with β = 0 (β absorbs its share). The forward is the
ordinary LayerNorm; it saves only 1/σ per row.
"""

from __future__ import annotations

import torch

from lrp_kernels.backend import host_function


class LRPLayerNormFunction(torch.autograd.Function):
    """Forward: LayerNorm (saves mean and 1/σ); backward: the identity rule on 1/σ."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, impl):
        y, _mean, rstd = host_function(impl, "layer_norm_forward")(x, weight, bias, eps)
        ctx.impl = impl
        ctx.save_for_backward(weight, rstd)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        weight, rstd = ctx.saved_tensors
        grad_x = host_function(ctx.impl, "layer_norm_backward")(grad_y, weight, rstd)
        return grad_x, None, None, None, None


def lrp_layer_norm(x, weight, bias, eps=1e-12, impl=None):
    """LayerNorm over the last dimension whose backward treats σ as a constant."""
    if impl is None:
        from lrp_kernels.ops import _torch_backend as impl
    return LRPLayerNormFunction.apply(x, weight, bias, float(eps), impl)
