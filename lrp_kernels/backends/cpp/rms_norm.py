"""Compiled kernels of the RMSNorm rule (``csrc/rms_norm.{cpp,cu}``; math: ``lrp_kernels/ops/rms_norm.py``)."""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import RMSNormKernels
from lrp_kernels.backends.torch import rms_norm as reference

from ._glue import DTYPE_CODES, fp32_param, launch, rows, supported


def _weight_fits(weight, x) -> bool:
    """Whether ``weight * y`` keeps x's dtype and shape (else the reference's promotion applies)."""
    return weight is None or (
        weight.shape == x.shape[-1:] and torch.promote_types(weight.dtype, x.dtype) == x.dtype
    )


def forward(x, weight, eps):
    if not supported(x) or x.shape[-1] == 0 or not _weight_fits(weight, x):
        return reference.forward(x, weight, eps)
    xm, x_stride = rows(x)
    n_rows, cols = xm.shape
    w = fp32_param(weight, x.device)
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    rstd = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    launch("rms_norm_forward", x.device, DTYPE_CODES[x.dtype], n_rows, cols, xm.data_ptr(), x_stride,
           0 if w is None else w.data_ptr(), float(eps), y.data_ptr(), cols, rstd.data_ptr())
    return y, rstd


def backward(grad_y, weight, rstd):
    if (
        not supported(grad_y)
        or grad_y.shape[-1] == 0
        or rstd.dtype != torch.float32
        or rstd.numel() * grad_y.shape[-1] != grad_y.numel()
        or (weight is not None and weight.shape != grad_y.shape[-1:])
    ):
        return reference.backward(grad_y, weight, rstd)
    gm, g_stride = rows(grad_y)
    n_rows, cols = gm.shape
    w = fp32_param(weight, grad_y.device)
    r = rstd.to(grad_y.device).reshape(-1).contiguous()
    out = torch.empty(grad_y.shape, dtype=grad_y.dtype, device=grad_y.device)
    launch("rms_norm_backward", grad_y.device, DTYPE_CODES[grad_y.dtype], n_rows, cols, gm.data_ptr(),
           g_stride, 0 if w is None else w.data_ptr(), r.data_ptr(), out.data_ptr(), cols)
    return out


KERNELS = RMSNormKernels(forward=forward, backward=backward)
