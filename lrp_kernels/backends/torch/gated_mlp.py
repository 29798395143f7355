"""Torch reference of the gated MLP rule (math: ``lrp_kernels/ops/gated_mlp.py``).

``backward`` is the one element-wise pass that feeds the backward GEMM of the two linears that made
a and b: the identity rule of act, the uniform rule of the product and both ε-ratios. GELU(a)/a and
SiLU(a)/a = sigmoid(a) are positive, so act(a)/a · a/(a + ε·sign a) = |act(a)|/(|a| + ε) for ε > 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrp_kernels.backends.contract import GATED_ACTIVATIONS, GatedMLPKernels

from ._common import acc
from .activation import GELU_GUARD

_APPROXIMATE = {"gelu": "none", "gelu_tanh": "tanh"}


def check_function(fn: str) -> None:
    if fn not in GATED_ACTIVATIONS:
        raise ValueError(f"unknown gated activation {fn!r}; valid: {', '.join(GATED_ACTIVATIONS)}")


def activate(a: torch.Tensor, fn: str) -> torch.Tensor:
    """act(a) for ``fn`` in :data:`GATED_ACTIVATIONS`."""
    check_function(fn)
    return F.silu(a) if fn == "silu" else F.gelu(a, approximate=_APPROXIMATE[fn])


def activation_factor(af: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """act(a)/a from a and act(a); where |a| < :data:`GELU_GUARD` its limit ½ (GELU: Φ(0), SiLU: σ(0))."""
    small = af.abs() < GELU_GUARD
    return torch.where(small, 0.5, act / torch.where(small, 1.0, af))


def forward(a, b, fn):
    return activate(a, fn) * b


def backward(grad_u, a, b, fn, eps):
    af, bf = acc(a), acc(b)
    act = activate(af, fn)
    out = torch.empty((*a.shape[:-1], 2 * a.shape[-1]), dtype=act.dtype, device=a.device)
    s_a, s_b = out.chunk(2, dim=-1)
    if eps == 0:
        torch.mul(bf, activation_factor(af, act), out=s_a)
        s_b.copy_(act)
    else:  # act(a)/a · a/(a + ε·sign a) = |act(a)|/(|a| + ε);  b/(b + ε·sign b) = |b|/(|b| + ε)
        torch.mul(bf, act.abs(), out=s_a).div_(af.abs().add_(eps))
        b_abs = bf.abs()
        torch.mul(act, b_abs, out=s_b).div_(b_abs.add_(eps))
    half = acc(grad_u) * 0.5  # the uniform rule: each factor of the product gets half
    s_a.mul_(half)
    s_b.mul_(half)
    return out.to(grad_u.dtype)


KERNELS = GatedMLPKernels(forward=forward, backward=backward)
