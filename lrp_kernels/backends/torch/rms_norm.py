"""Torch reference of the RMSNorm rule (math: ``lrp_kernels/ops/rms_norm.py``).

The forward is the one of Llama/EuroBERT's ``RMSNorm``: statistics and normalization in float32,
the normalized value cast back to the input dtype, then scaled by the weight.
"""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import RMSNormKernels

from ._common import acc


def forward(x, weight, eps):
    xf = acc(x)
    rstd = torch.rsqrt(xf.pow(2).mean(dim=-1) + eps)
    y = (xf * rstd.unsqueeze(-1)).to(x.dtype)
    return (y if weight is None else weight * y), rstd


def backward(grad_y, weight, rstd):
    g = acc(grad_y)
    if weight is not None:
        g = g * acc(weight)
    return (g * rstd.unsqueeze(-1).to(g.dtype)).to(grad_y.dtype)


KERNELS = RMSNormKernels(forward=forward, backward=backward)
