"""Shared by the row-wise norms (:mod:`.layer_norm`, :mod:`.rms_norm`): one program per row of the
last dimension H, the row's addressing, the weight, the launches, and the one backward kernel.

Both rules hold the normalization (1/σ, 1/rms) constant, so both backwards are
``rstd · (γ ⊙ g_y − c)`` with ``c = mean_H(γ ⊙ g_y)`` for LayerNorm (the centering is linear in x)
and ``c = 0`` for RMSNorm: one kernel, :func:`_norm_backward_kernel`, with the constexpr ``CENTER``.
All math in float32; outputs in the input dtype, contiguous ``[rows, H]``. A row is one block of
``next_pow2(H)`` elements held in registers, for H up to :data:`MAX_ROW` (16,384: Llama-405B's
hidden size; every config compiles without spills there, ``aot``); longer rows go to the torch
reference (:func:`fits`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.errors import BackendError

from ._common import cast, next_pow2, reduce_sum, rows
from ._launch import Kernel
from .configs import ROWWISE


#: the longest row the kernels take in one block (the AOT sweep compiles rows up to it)
MAX_ROW = 16384


def fits(h: int) -> bool:
    """Whether rows of ``h`` elements fit one block of the kernels (else the torch reference runs)."""
    return h <= MAX_ROW


@triton.jit
def load_row(ptr, row, stride, H, BLOCK_H: tl.constexpr):
    """``(values f32, cols, mask)`` of row ``row`` of a matrix with row stride ``stride`` (0 past H)."""
    cols = tl.arange(0, BLOCK_H)
    m = cols < H
    return tl.load(ptr + row * stride + cols, mask=m, other=0.0).to(tl.float32), cols, m


@triton.jit
def times_param(v, p_ptr, cols, m, HAS_PARAM: tl.constexpr):
    """``v ⊙ p`` in float32 for a parameter vector p (γ), or v when there is none."""
    if HAS_PARAM:
        v = v * tl.load(p_ptr + cols, mask=m, other=0.0).to(tl.float32)
    return v


@triton.jit
def store_row(ptr, row, H, cols, m, v):
    """Row ``row`` of a contiguous ``[rows, H]`` output, rounded to its dtype."""
    tl.store(ptr + row * H + cols, cast(v, ptr.dtype.element_ty), mask=m)


@triton.jit
def _norm_backward_kernel(
    g_ptr,  # *T    [R, H] gradient at y, last dim contiguous
    w_ptr,  # *Tw   [H] γ (read only when HAS_WEIGHT)
    rstd_ptr,  # *f32 [R] 1/σ or 1/rms saved by the forward
    out_ptr,  # *T  [R, H] modified gradient at x, contiguous
    stride_g,  # row stride of g (elements)
    H,  # i32   row length
    HAS_WEIGHT: tl.constexpr,  # bool
    CENTER: tl.constexpr,  # bool: subtract the row mean of γ ⊙ g (LayerNorm), or not (RMSNorm)
    BLOCK_H: tl.constexpr,  # power of two ≥ H
):
    row = tl.program_id(0).to(tl.int64)
    g, cols, m = load_row(g_ptr, row, stride_g, H, BLOCK_H)
    g = times_param(g, w_ptr, cols, m, HAS_WEIGHT)
    if CENTER:
        g = tl.where(m, g - reduce_sum(g, 0) / H, 0.0)
    store_row(out_ptr, row, H, cols, m, g * tl.load(rstd_ptr + row))


BACKWARD = Kernel(_norm_backward_kernel, ROWWISE)


def check_param(rule: str, name: str, p, h: int) -> None:
    """BackendError unless ``p`` is None or a vector of length ``h``."""
    if p is not None and (p.dim() != 1 or p.shape[0] != h):
        raise BackendError(f"{rule} {name} must have shape [{h}], got {tuple(p.shape)}")


def check_rstd(grad_y: torch.Tensor, rstd: torch.Tensor) -> None:
    if rstd.shape != grad_y.shape[:-1]:
        raise BackendError(f"rstd must have shape {tuple(grad_y.shape[:-1])}, got {tuple(rstd.shape)}")


def forward(kernel: Kernel, x: torch.Tensor, params: tuple, eps: float, stats: int, **flags):
    """Launch a norm's forward ``kernel(x, *params, y, *stats, stride_x, H, eps, **flags, BLOCK_H)``
    over the rows of x: ``(y, *stats)``, the statistics float32 of shape ``x.shape[:-1]``. A parameter
    that is None is passed as x (never read: its flag is False)."""
    h = x.shape[-1]
    x2 = rows(x)
    r = x2.shape[0]
    y = torch.empty((r, h), dtype=x.dtype, device=x.device)
    outs = [torch.empty(r, dtype=torch.float32, device=x.device) for _ in range(stats)]
    if r and h:
        pointers = [x2 if p is None else p.contiguous() for p in params]
        kernel[(r,)](x2, *pointers, y, *outs, x2.stride(0), h, float(eps), **flags, BLOCK_H=next_pow2(h))
    return (y.reshape(x.shape), *(s.reshape(x.shape[:-1]) for s in outs))


def backward(grad_y: torch.Tensor, weight, rstd: torch.Tensor, center: bool) -> torch.Tensor:
    """``rstd · (γ ⊙ g − mean_H(γ ⊙ g))`` (``center``) or ``rstd · γ ⊙ g``, row by row."""
    h = grad_y.shape[-1]
    g2 = rows(grad_y)
    r = g2.shape[0]
    out = torch.empty((r, h), dtype=grad_y.dtype, device=grad_y.device)
    if r and h:
        w = g2 if weight is None else weight.contiguous()
        BACKWARD[(r,)](g2, w, rstd.reshape(-1).float().contiguous(), out, g2.stride(0), h,
                       HAS_WEIGHT=weight is not None, CENTER=center, BLOCK_H=next_pow2(h))
    return out.reshape(grad_y.shape)
