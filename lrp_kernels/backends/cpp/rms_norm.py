"""Compiled kernels of the RMSNorm rule (``csrc/rms_norm.{cpp,cu}``; math: ``lrp_kernels/ops/rms_norm.py``)."""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import RMSNormKernels
from lrp_kernels.backends.torch import rms_norm as reference

from ._glue import DTYPE_CODES, fp32_param, launch, norm_backward, rows, supported


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
    out = norm_backward("rms_norm_backward", grad_y, weight, rstd)
    return reference.backward(grad_y, weight, rstd) if out is None else out


KERNELS = RMSNormKernels(forward=forward, backward=backward)
