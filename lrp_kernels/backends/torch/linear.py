"""Torch reference of the linear ε-rule's element-wise part (math: ``lrp_kernels/ops/linear.py``).

Holds :func:`stabilize`, the one stabilizer convention of the project.
"""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import LinearKernels

from ._common import acc
from .activation import gelu_backward

CHUNK = 1 << 18  # elements per temporary of the in-place stabilizer division


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)`` with sign(0) = 1 — the one stabilizer convention of the project."""
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def divide_by_stabilized_abs(out, x, eps):
    """``out /= |x| + ε`` in place, through a temporary of at most :data:`CHUNK` elements (so the
    backward holds no second full-size buffer; strided inputs take one full-size temporary)."""
    if not (out.is_contiguous() and x.is_contiguous()):
        return out.div_(x.abs().add_(eps))
    flat_out, flat_x = out.view(-1), x.view(-1)
    for start in range(0, flat_out.numel(), CHUNK):
        flat_out[start : start + CHUNK].div_(flat_x[start : start + CHUNK].abs().add_(eps))
    return out


def eps_ratio(grad_z, z, eps):
    if eps == 0:
        return grad_z
    # g·z / (z + ε·sign z) = g·|z| / (|z| + ε), bit for bit in IEEE arithmetic: for z < 0 both the
    # numerator and the denominator only change sign, and z = 0 gives 0/ε = 0 either way — the
    # same value as g·z/stabilize(z, ε). No sign tensor is needed: |z|·g in a fresh buffer,
    # divided in place by |z| + ε.
    zf = acc(z)
    out = zf.abs().mul_(acc(grad_z))
    return divide_by_stabilized_abs(out, zf, eps).to(grad_z.dtype)


def gelu_eps_ratio(grad_h, u, eps, approximate="none"):
    if eps == 0:
        return gelu_backward(grad_h, u, approximate)
    # GELU(u)/u · u/(u + ε·sign u) = |GELU(u)| / (|u| + ε): GELU(u) = u·Φ(u) has the sign of u. The
    # quotient needs no guard at u → 0 (0/ε = 0; for |u| < GELU_GUARD it is Φ(u)·|u|/(|u| + ε),
    # within GELU_GUARD relative of the guarded ½·u/(u + ε·sign u)).
    uf = acc(u)
    factor = divide_by_stabilized_abs(torch.nn.functional.gelu(uf, approximate=approximate).abs_(), uf, eps)
    return factor.mul_(acc(grad_h)).to(grad_h.dtype)


KERNELS = LinearKernels(eps_ratio=eps_ratio, gelu_eps_ratio=gelu_eps_ratio)
