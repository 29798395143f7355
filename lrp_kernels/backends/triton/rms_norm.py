"""RMSNorm forward and its LRP backward as row-wise Triton kernels (one program per row).

Forward over the last dimension H, as Llama/EuroBERT's ``RMSNorm`` and the torch reference:
``rstd = 1/√(mean_H(x²) + ε)`` in float32 (saved), ``y = γ ⊙ T(x·rstd)`` where ``T`` rounds to the
input dtype before the weight multiplies (as the reference does; a no-op for float32).

Backward (the identity rule on the normalization, ``lrp_kernels/ops/rms_norm.py``): 1/rms is held
constant, so the op is the diagonal linear map ``γ/rms`` and, in the gradient×input form,

    g_x = rstd · γ ⊙ g_y

— :mod:`._norm`'s backward kernel without the centering. All math in float32; ``y``/``g_x`` in the
input dtype. The torch reference runs what the kernels do not cover, like the compiled backend:
float64, empty rows or rows longer than :data:`._norm.MAX_ROW`, a γ that is not a length-H vector
or that would promote y to another dtype (a float32 γ on 16-bit x), an rstd that is not float32 or
not one value per row.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.backends.contract import RMSNormKernels
from lrp_kernels.backends.torch import rms_norm as reference

from . import _norm
from ._common import cast, reduce_sum, use_reference
from ._launch import Kernel
from ._norm import load_row, store_row, times_param
from .configs import ROWWISE


@triton.jit
def _rms_norm_forward_kernel(
    x_ptr,  # *T    [R, H] input rows, last dim contiguous
    w_ptr,  # *Tw   [H] γ (read only when HAS_WEIGHT)
    y_ptr,  # *T    [R, H] output, contiguous
    rstd_ptr,  # *f32 [R] row 1/rms
    stride_x,  # row stride of x (elements)
    H,  # i32   row length
    eps,  # f32   epsilon of the RMSNorm
    HAS_WEIGHT: tl.constexpr,  # bool
    BLOCK_H: tl.constexpr,  # power of two ≥ H
):
    row = tl.program_id(0).to(tl.int64)
    x, cols, m = load_row(x_ptr, row, stride_x, H, BLOCK_H)
    rstd = 1.0 / tl.sqrt(reduce_sum(x * x, 0) / H + eps)
    # the normalized value is rounded to the input dtype before γ multiplies, as in the reference
    y = cast(x * rstd, y_ptr.dtype.element_ty).to(tl.float32)
    store_row(y_ptr, row, H, cols, m, times_param(y, w_ptr, cols, m, HAS_WEIGHT))
    tl.store(rstd_ptr + row, rstd)


FORWARD = Kernel(_rms_norm_forward_kernel, ROWWISE)
#: the 1/rms-constant backward: the norms' shared kernel with CENTER=False
BACKWARD = _norm.BACKWARD


def _weight_fits(weight, x) -> bool:
    """γ None, or a length-H vector with which ``γ * y`` keeps x's dtype (else the reference's
    broadcasting or type promotion applies)."""
    return weight is None or (
        weight.shape == x.shape[-1:] and not use_reference(weight)
        and torch.promote_types(weight.dtype, x.dtype) == x.dtype
    )


def forward(x: torch.Tensor, weight, eps: float):
    """``(y, rstd f32)`` over the last dimension of ``x``."""
    if use_reference(x) or x.shape[-1] == 0 or not _norm.fits(x.shape[-1]) or not _weight_fits(weight, x):
        return reference.forward(x, weight, eps)
    return _norm.forward(FORWARD, x, (weight,), eps, 1, HAS_WEIGHT=weight is not None)


def backward(grad_y: torch.Tensor, weight, rstd: torch.Tensor) -> torch.Tensor:
    """``rstd · γ ⊙ g`` with 1/rms held constant."""
    if (
        use_reference(grad_y)
        or grad_y.shape[-1] == 0
        or not _norm.fits(grad_y.shape[-1])
        or rstd.dtype != torch.float32
        or rstd.shape != grad_y.shape[:-1]
        or (weight is not None and (weight.shape != grad_y.shape[-1:] or use_reference(weight)))
    ):
        return reference.backward(grad_y, weight, rstd)
    return _norm.backward(grad_y, weight, rstd, center=False)


KERNELS = RMSNormKernels(forward=forward, backward=backward)
