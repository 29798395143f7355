"""Torch reference of the activation rule (math: ``lrp_kernels/ops/activation.py``).

``forward(x, fn)`` is the ordinary activation; ``backward(grad_y, x, fn)`` the identity rule
``grad_y · fn(x)/x``, guarded where |x| < :data:`GELU_GUARD` (GELU: ½) or :data:`TANH_GUARD`
(tanh: 1); ReLU's factor is its gradient, the indicator x > 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrp_kernels.backends.contract import ACTIVATIONS, ActivationKernels

from ._common import acc

#: |u| below this: gelu(u)/u is taken as its limit ½. The C++/CUDA kernels use the same value
#: (``kGeluGuard`` in csrc/common.h, exported as ``_C.GELU_GUARD``; a test checks they agree).
GELU_GUARD = 1e-6
#: |x| below this: tanh(x)/x is taken as its limit 1.
TANH_GUARD = 1e-6

_APPROXIMATE = {"gelu": "none", "gelu_tanh": "tanh"}


def gelu_approximate(fn: str) -> str:
    """The ``approximate`` argument of ``F.gelu`` for the activation name ``fn``."""
    return _APPROXIMATE[fn]


def gelu_forward(u, approximate="none"):
    return F.gelu(u, approximate=approximate)


def gelu_factor(uf: torch.Tensor, approximate: str) -> torch.Tensor:
    """gelu(u)/u in ``uf``'s dtype, ½ where |u| < :data:`GELU_GUARD`."""
    small = uf.abs() < GELU_GUARD
    safe = torch.where(small, torch.ones_like(uf), uf)
    return torch.where(small, torch.full_like(uf, 0.5), F.gelu(safe, approximate=approximate) / safe)


def gelu_backward(grad_h, u, approximate="none"):
    return (acc(grad_h) * gelu_factor(acc(u), approximate)).to(grad_h.dtype)


def _tanh_factor(x: torch.Tensor) -> torch.Tensor:
    xf = acc(x)
    small = xf.abs() < TANH_GUARD
    safe = torch.where(small, torch.ones_like(xf), xf)
    return torch.where(small, torch.ones_like(xf), torch.tanh(safe) / safe)


def check_function(fn: str) -> None:
    if fn not in ACTIVATIONS:
        raise ValueError(f"unknown activation {fn!r}; valid: {', '.join(ACTIVATIONS)}")


def forward(x: torch.Tensor, fn: str) -> torch.Tensor:
    check_function(fn)
    if fn == "tanh":
        return torch.tanh(x)
    if fn == "relu":
        return torch.relu(x)
    return gelu_forward(x, gelu_approximate(fn))


def backward(grad_y: torch.Tensor, x: torch.Tensor, fn: str) -> torch.Tensor:
    check_function(fn)
    if fn == "tanh":
        return (acc(grad_y) * _tanh_factor(x)).to(grad_y.dtype)
    if fn == "relu":
        return grad_y * (x > 0).to(grad_y.dtype)
    return gelu_backward(grad_y, x, gelu_approximate(fn))


KERNELS = ActivationKernels(forward=forward, backward=backward)
