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
from .activation import gelu_factor
from .linear import divide_by_stabilized_abs

_APPROXIMATE = {"gelu": "none", "gelu_tanh": "tanh"}


def check_function(fn: str) -> None:
    if fn not in GATED_ACTIVATIONS:
        raise ValueError(f"unknown gated activation {fn!r}; valid: {', '.join(GATED_ACTIVATIONS)}")


def activate(a: torch.Tensor, fn: str) -> torch.Tensor:
    """act(a) for ``fn`` in :data:`GATED_ACTIVATIONS`."""
    check_function(fn)
    return F.silu(a) if fn == "silu" else F.gelu(a, approximate=_APPROXIMATE[fn])


def activation_factor(af: torch.Tensor, fn: str, eps: float) -> torch.Tensor:
    """act(a)/a · a/(a + ε·sign a): the identity rule of act times the ε-ratio of a."""
    if eps != 0:
        return divide_by_stabilized_abs(activate(af, fn).abs_(), af, eps)
    return torch.sigmoid(af) if fn == "silu" else gelu_factor(af, _APPROXIMATE[fn])


def forward(a, b, fn):
    return activate(a, fn) * b


def backward(grad_u, a, b, fn, eps):
    check_function(fn)
    af, bf = acc(a), acc(b)
    half = acc(grad_u) * 0.5
    out = torch.empty((*a.shape[:-1], 2 * a.shape[-1]), dtype=half.dtype, device=a.device)
    s_a, s_b = out.chunk(2, dim=-1)
    torch.mul(half * bf, activation_factor(af, fn, eps), out=s_a)
    torch.mul(half, activate(af, fn), out=s_b)
    if eps != 0:
        s_b.mul_(divide_by_stabilized_abs(bf.abs(), bf, eps))
    return out.to(grad_u.dtype)


KERNELS = GatedMLPKernels(forward=forward, backward=backward)
