"""LayerNorm forward and its LRP backward as row-wise Triton kernels (one program per row).

Forward over the last dimension H: ``μ = mean(x)``, ``σ² = mean((x − μ)²)``,
``rstd = 1/√(σ² + ε)``, ``y = γ ⊙ (x − μ)·rstd + β``; ``μ`` and ``rstd`` are saved in float32.

Backward (the rule of AttnLRP, Achtibat et al. 2024, and CP-LRP's LayerNorm treatment, Ali et al.
2022): the normalization ``1/σ`` is held constant, so the op is linear in x and relevance follows the
identity rule through the centering; the affine part is an ε-rule with ε = 0 whose bias β absorbs
its share. In the gradient×input form:

    g_x = rstd · (γ ⊙ g_y − mean_H(γ ⊙ g_y))

All math in float32; ``y``/``g_x`` in the input dtype. float64 inputs go to the torch reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.errors import BackendError
from lrp_kernels.backends.contract import LayerNormKernels
from lrp_kernels.backends.torch import layer_norm as reference

from ._common import cast, next_pow2, reduce_sum, rows, use_reference
from ._launch import Kernel
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
    cols = tl.arange(0, BLOCK_H)
    m = cols < H
    x = tl.load(x_ptr + row * stride_x + cols, mask=m, other=0.0).to(tl.float32)
    mean = reduce_sum(x, 0) / H
    d = tl.where(m, x - mean, 0.0)
    var = reduce_sum(d * d, 0) / H
    rstd = 1.0 / tl.sqrt(var + eps)
    y = d * rstd
    if HAS_WEIGHT:
        y = y * tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
    if HAS_BIAS:
        y = y + tl.load(b_ptr + cols, mask=m, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * H + cols, cast(y, y_ptr.dtype.element_ty), mask=m)
    tl.store(mean_ptr + row, mean)
    tl.store(rstd_ptr + row, rstd)


@triton.jit
def _layer_norm_backward_kernel(
    g_ptr,  # *T    [R, H] gradient at y, last dim contiguous
    w_ptr,  # *Tw   [H] γ (read only when HAS_WEIGHT)
    rstd_ptr,  # *f32 [R] 1/σ saved by the forward
    out_ptr,  # *T  [R, H] modified gradient at x, contiguous
    stride_g,  # row stride of g (elements)
    H,  # i32   row length
    HAS_WEIGHT: tl.constexpr,  # bool
    BLOCK_H: tl.constexpr,  # power of two ≥ H
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_H)
    m = cols < H
    g = tl.load(g_ptr + row * stride_g + cols, mask=m, other=0.0).to(tl.float32)
    if HAS_WEIGHT:
        g = g * tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
    g = tl.where(m, g - reduce_sum(g, 0) / H, 0.0)
    rstd = tl.load(rstd_ptr + row)
    tl.store(out_ptr + row * H + cols, cast(g * rstd, out_ptr.dtype.element_ty), mask=m)


FORWARD = Kernel(_layer_norm_forward_kernel, ROWWISE)
BACKWARD = Kernel(_layer_norm_backward_kernel, ROWWISE)


def _check_param(name, p, h):
    if p is not None and (p.dim() != 1 or p.shape[0] != h):
        raise BackendError(f"LayerNorm {name} must have shape [{h}], got {tuple(p.shape)}")


def forward(x: torch.Tensor, weight, bias, eps: float):
    """``(y, mean f32, rstd f32)`` over the last dimension of ``x``."""
    if use_reference(x):
        return reference.forward(x, weight, bias, eps)
    h = x.shape[-1]
    _check_param("weight", weight, h)
    _check_param("bias", bias, h)
    x2 = rows(x)
    r = x2.shape[0]
    y = torch.empty((r, h), dtype=x.dtype, device=x.device)
    mean = torch.empty(r, dtype=torch.float32, device=x.device)
    rstd = torch.empty(r, dtype=torch.float32, device=x.device)
    if r and h:
        w = weight.contiguous() if weight is not None else x2
        b = bias.contiguous() if bias is not None else x2
        FORWARD[(r,)](
            x2, w, b, y, mean, rstd, x2.stride(0), h, float(eps),
            HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, BLOCK_H=next_pow2(h),
        )
    lead = x.shape[:-1]
    return y.reshape(x.shape), mean.reshape(lead), rstd.reshape(lead)


def backward(grad_y: torch.Tensor, weight, rstd: torch.Tensor) -> torch.Tensor:
    """``rstd · (γ ⊙ g − mean_H(γ ⊙ g))`` with σ held constant."""
    if use_reference(grad_y):
        return reference.backward(grad_y, weight, rstd)
    h = grad_y.shape[-1]
    _check_param("weight", weight, h)
    if rstd.shape != grad_y.shape[:-1]:
        raise BackendError(f"rstd must have shape {tuple(grad_y.shape[:-1])}, got {tuple(rstd.shape)}")
    g2 = rows(grad_y)
    r = g2.shape[0]
    out = torch.empty((r, h), dtype=grad_y.dtype, device=grad_y.device)
    if r and h:
        w = weight.contiguous() if weight is not None else g2
        BACKWARD[(r,)](
            g2, w, rstd.reshape(-1).float().contiguous(), out, g2.stride(0), h,
            HAS_WEIGHT=weight is not None, BLOCK_H=next_pow2(h),
        )
    return out.reshape(grad_y.shape)


KERNELS = LayerNormKernels(forward=forward, backward=backward)
