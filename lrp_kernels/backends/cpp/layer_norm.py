"""Compiled kernels of the LayerNorm rule (``csrc/layer_norm.{cpp,cu}``; math: ``lrp_kernels/ops/layer_norm.py``)."""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import LayerNormKernels
from lrp_kernels.backends.torch import layer_norm as reference

from ._glue import DTYPE_CODES, fp32_param, launch, norm_backward, rows, supported


def forward(x, weight, bias, eps):
    if not supported(x) or x.shape[-1] == 0:
        return reference.forward(x, weight, bias, eps)
    xm, x_stride = rows(x)
    n_rows, cols = xm.shape
    w = fp32_param(weight, x.device)
    b = fp32_param(bias, x.device)
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    mean = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    rstd = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    launch(
        "layer_norm_forward",
        x.device,
        DTYPE_CODES[x.dtype],
        n_rows,
        cols,
        xm.data_ptr(),
        x_stride,
        0 if w is None else w.data_ptr(),
        0 if b is None else b.data_ptr(),
        float(eps),
        y.data_ptr(),
        cols,
        mean.data_ptr(),
        rstd.data_ptr(),
    )
    return y, mean, rstd


def backward(grad_y, weight, rstd):
    out = norm_backward("layer_norm_backward", grad_y, weight, rstd)
    return reference.backward(grad_y, weight, rstd) if out is None else out


KERNELS = LayerNormKernels(forward=forward, backward=backward)
