"""Torch reference of the LayerNorm rule (math: ``lrp_kernels/ops/layer_norm.py``)."""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import LayerNormKernels

from ._common import acc


def forward(x, weight, bias, eps):
    # aten's own LayerNorm: the output is bit-for-bit F.layer_norm's, and it returns mean and 1/σ.
    y, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)
    if mean.dtype != x.dtype or x.dtype in (torch.float32, torch.float64):
        return y, acc(mean.squeeze(-1)), acc(rstd.squeeze(-1))
    # Half-precision statistics (aten on the CPU rounds them to the input dtype): redo them in float32.
    var, mean = torch.var_mean(x.float(), dim=-1, unbiased=False)
    return y, mean, torch.rsqrt(var + eps)


def backward(grad_y, weight, rstd):
    # LayerNorm's own backward is rstd·(w·g − mean(w·g) − x̂·mean(w·g·x̂)); with σ held constant the
    # x̂ term is absent, which is what aten's fused kernel computes when given x̂ ≡ 0 (input = mean = 0).
    if grad_y.device.type == "cpu" and grad_y.dtype in (torch.float32, torch.float64):
        rstd = rstd.to(grad_y.dtype).unsqueeze(-1)
        zero_mean = torch.zeros_like(rstd)
        grad_x, _, _ = torch.ops.aten.native_layer_norm_backward(
            grad_y, torch.zeros_like(grad_y), grad_y.shape[-1:], zero_mean, rstd, weight, None,
            [True, False, False],
        )
        return grad_x
    g = acc(grad_y)
    g = g * acc(weight) if weight is not None else g.clone()
    g.sub_(g.mean(dim=-1, keepdim=True))
    return g.mul_(rstd.unsqueeze(-1).to(g.dtype)).to(grad_y.dtype)


KERNELS = LayerNormKernels(forward=forward, backward=backward)
