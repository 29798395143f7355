"""LayerNorm forward and its LRP backward as row-wise Triton kernels (one program per row).

Forward over the last dimension H: ``μ = mean(x)``, ``σ² = mean((x − μ)²)``,
``rstd = 1/√(σ² + ε)``, ``y = γ ⊙ (x − μ)·rstd + β``; ``μ`` and ``rstd`` are saved in float32.

Backward (the rule of AttnLRP, Achtibat et al. 2024, and CP-LRP's LayerNorm treatment, Ali et al.
2022): the normalization ``1/σ`` is held constant, so the op is linear in x and relevance follows the
identity rule through the centering; the affine part is an ε-rule with ε = 0 whose bias β absorbs
its share. In the gradient×input form:

    g_x = rstd · (γ ⊙ g_y − mean_H(γ ⊙ g_y))

All math in float32; ``y``/``g_x`` in the input dtype. float64 inputs and rows longer than
:data:`._norm.MAX_ROW` go to the torch reference. The
row addressing, the launches and the backward kernel are the norms' shared ones (:mod:`._norm`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.backends.contract import LayerNormKernels
from lrp_kernels.backends.torch import layer_norm as reference

from . import _norm
from ._common import reduce_sum, use_reference
from ._launch import Kernel
from ._norm import load_row, store_row, times_param
from .configs import ROWWISE


@triton.jit
def _layer_norm_forward_kernel(
    x_ptr,  # *T    [R, H] input rows, last dim contiguous
    w_ptr,  # *Tw   [H] γ (read only when HAS_WEIGHT)
    b_ptr,  # *Tw   [H] β (read only when HAS_BIAS)
    y_ptr,  # *T    [R, H] output, contiguous
    mean_ptr,  # *f32 [R] row means
    rstd_ptr,  # *f32 [R] row 1/σ
    stride_x,  # row stride of x (elements)
    H,  # i32   row length
    eps,  # f32   variance epsilon of the LayerNorm
    HAS_WEIGHT: tl.constexpr,  # bool
    HAS_BIAS: tl.constexpr,  # bool
    BLOCK_H: tl.constexpr,  # power of two ≥ H
):
    row = tl.program_id(0).to(tl.int64)
    x, cols, m = load_row(x_ptr, row, stride_x, H, BLOCK_H)
    mean = reduce_sum(x, 0) / H
    d = tl.where(m, x - mean, 0.0)
    var = reduce_sum(d * d, 0) / H
    rstd = 1.0 / tl.sqrt(var + eps)
    y = times_param(d * rstd, w_ptr, cols, m, HAS_WEIGHT)
    if HAS_BIAS:
        y = y + tl.load(b_ptr + cols, mask=m, other=0.0).to(tl.float32)
    store_row(y_ptr, row, H, cols, m, y)
    tl.store(mean_ptr + row, mean)
    tl.store(rstd_ptr + row, rstd)


FORWARD = Kernel(_layer_norm_forward_kernel, ROWWISE)
#: the σ-constant backward: the norms' shared kernel with CENTER=True
BACKWARD = _norm.BACKWARD


def forward(x: torch.Tensor, weight, bias, eps: float):
    """``(y, mean f32, rstd f32)`` over the last dimension of ``x``."""
    if use_reference(x) or not _norm.fits(x.shape[-1]):
        return reference.forward(x, weight, bias, eps)
    _norm.check_param("LayerNorm", "weight", weight, x.shape[-1])
    _norm.check_param("LayerNorm", "bias", bias, x.shape[-1])
    return _norm.forward(FORWARD, x, (weight, bias), eps, 2, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None)


def backward(grad_y: torch.Tensor, weight, rstd: torch.Tensor) -> torch.Tensor:
    """``rstd · (γ ⊙ g − mean_H(γ ⊙ g))`` with σ held constant."""
    if use_reference(grad_y) or not _norm.fits(grad_y.shape[-1]):
        return reference.backward(grad_y, weight, rstd)
    _norm.check_param("LayerNorm", "weight", weight, grad_y.shape[-1])
    _norm.check_rstd(grad_y, rstd)
    return _norm.backward(grad_y, weight, rstd, center=True)


KERNELS = LayerNormKernels(forward=forward, backward=backward)
