"""GELU and its identity rule as element-wise Triton kernels.

Forward: ``h = gelu(u) = u·Φ(u)`` with ``Φ(u) = ½(1 + erf(u/√2))`` (``approximate="none"``) or
``Φ̃(u) = ½(1 + tanh(√(2/π)(u + 0.044715·u³)))`` (``approximate="tanh"``).

Backward, identity rule for an element-wise non-linearity (AttnLRP, Achtibat et al. 2024, §3.2):
the relevance passes through unchanged, ``R_u = R_h``. In the gradient×input form
(``R = x ⊙ g``) that is ``g_u = g_h · gelu(u)/u = g_h · Φ(u)``. The kernel evaluates Φ(u) directly
(no division); for ``|u| < 1e-6`` it uses the limit ½, like the torch reference.

Fused with the ε-rule of the linear ``u = W x + b`` that feeds the GELU (Bach et al. 2015): the
linear's backward first multiplies by ``u/(u + ε·sign u)`` (sign(0) = 1), so both factors are
applied in one pass, ``g_u = g_h · Φ(u) · u/(u + ε·sign u)`` (``gelu_eps_ratio``). With ε = 0 the
stabilizer is 1 and only Φ(u) is applied.

All math in float32; results in the input dtype. float64 inputs go to the torch reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.errors import BackendError
from lrp_kernels.backends.contract import ActivationKernels
from lrp_kernels.backends.torch import activation as reference
from lrp_kernels.backends.torch import linear as linear_reference

from ._common import cast, stabilized_ratio, use_reference
from ._launch import Kernel
from .configs import ELEMENTWISE

# the reference's guard, as a compile-time constant of the kernels
_GELU_GUARD = tl.constexpr(reference.GELU_GUARD)
_APPROXIMATE = {"none": False, "tanh": True}

@triton.jit
def _tanh(x):
    """tanh(x) = sign(x)·(1 − t)/(1 + t) with t = e^{−2|x|} ∈ (0, 1]: no overflow for any x."""
    t = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return tl.where(x < 0, -y, y)


@triton.jit
def gelu_factor(u, APPROX_TANH: tl.constexpr):
    """gelu(u)/u = Φ(u) (or the tanh form) in float32; ½ where |u| < the reference's GELU_GUARD."""
    if APPROX_TANH:
        phi = 0.5 * (1.0 + _tanh(0.7978845608028654 * (u + 0.044715 * u * u * u)))
    else:
        phi = 0.5 * (1.0 + tl.math.erf(u * 0.7071067811865476))
    return tl.where(tl.abs(u) < _GELU_GUARD, 0.5, phi)


@triton.jit
def _gelu_forward_kernel(
    u_ptr,  # *T   [N] pre-activation (contiguous)
    h_ptr,  # *T   [N] output gelu(u)
    N,  # i32/i64  number of elements
    APPROX_TANH: tl.constexpr,  # bool: tanh approximation instead of erf
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
    h = u * gelu_factor(u, APPROX_TANH)
    tl.store(h_ptr + offs, cast(h, h_ptr.dtype.element_ty), mask=m)


@triton.jit
def _gelu_backward_kernel(
    g_ptr,  # *T   [N] gradient at the GELU output h
    u_ptr,  # *T   [N] GELU input u (forward value)
    out_ptr,  # *T [N] modified gradient at u
    N,  # i32/i64  number of elements
    eps,  # f32  ε of the linear that produced u (read only when HAS_EPS)
    HAS_EPS: tl.constexpr,  # bool: multiply by the stabilizer u/(u + ε·sign u)
    APPROX_TANH: tl.constexpr,  # bool: tanh approximation instead of erf
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    g = tl.load(g_ptr + offs, mask=m, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
    f = gelu_factor(u, APPROX_TANH)
    if HAS_EPS:
        f = f * stabilized_ratio(u, eps)
    tl.store(out_ptr + offs, cast(g * f, out_ptr.dtype.element_ty), mask=m)


GELU_FORWARD = Kernel(_gelu_forward_kernel, ELEMENTWISE, buckets=("N",))
GELU_BACKWARD = Kernel(_gelu_backward_kernel, ELEMENTWISE, buckets=("N",))


def elementwise_grid(n: int):
    """One program per ``BLOCK`` elements."""
    return lambda meta: (triton.cdiv(n, meta["BLOCK"]),)


def launch_pairwise(kernel, names: str, x, y, *scalars, **constexprs):
    """``kernel(x, y, out, n, *scalars)`` over the elements of two same-shape tensors (contiguous
    copies where they are not), ``out`` shaped like them; ``names`` of x and y for the error."""
    if x.shape != y.shape:
        raise BackendError(f"{names} must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    x_c, y_c = x.contiguous(), y.contiguous()
    out = torch.empty_like(x_c)
    n = x_c.numel()
    if n:
        kernel[elementwise_grid(n)](x_c, y_c, out, n, *scalars, **constexprs)
    return out


def approximate_flag(approximate: str) -> bool:
    """True for the tanh approximation; BackendError for an unknown name."""
    if approximate not in _APPROXIMATE:
        raise BackendError(f"unknown GELU approximation {approximate!r}; valid: 'none', 'tanh'")
    return _APPROXIMATE[approximate]


def gelu_forward(u: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """``gelu(u)`` in u's dtype."""
    tanh = approximate_flag(approximate)
    if use_reference(u):
        return reference.gelu_forward(u, approximate)
    u_c = u.contiguous()
    h = torch.empty_like(u_c)
    n = u_c.numel()
    if n:
        GELU_FORWARD[elementwise_grid(n)](u_c, h, n, APPROX_TANH=tanh)
    return h


def _backward(grad_h, u, eps, approximate):
    tanh = approximate_flag(approximate)
    return launch_pairwise(GELU_BACKWARD, "grad_h and u", grad_h, u, float(eps), HAS_EPS=eps != 0, APPROX_TANH=tanh)


def gelu_backward(grad_h: torch.Tensor, u: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """Identity rule: ``grad_h · gelu(u)/u`` (½ where |u| < GELU_GUARD), in grad_h's dtype."""
    if use_reference(grad_h) or use_reference(u):
        return reference.gelu_backward(grad_h, u, approximate)
    return _backward(grad_h, u, 0.0, approximate)


def gelu_eps_ratio(grad_h: torch.Tensor, u: torch.Tensor, eps: float, approximate: str = "none") -> torch.Tensor:
    """Identity rule of the GELU times the ε-stabilizer of the linear that produced ``u``, one pass."""
    if use_reference(grad_h) or use_reference(u):
        return linear_reference.gelu_eps_ratio(grad_h, u, eps, approximate)
    return _backward(grad_h, u, eps, approximate)


def forward(x: torch.Tensor, fn: str) -> torch.Tensor:
    """GELU runs here; tanh and ReLU take the torch reference."""
    reference.check_function(fn)
    if fn in ("gelu", "gelu_tanh"):
        return gelu_forward(x, reference.gelu_approximate(fn))
    return reference.forward(x, fn)


def backward(grad_y: torch.Tensor, x: torch.Tensor, fn: str) -> torch.Tensor:
    reference.check_function(fn)
    if fn in ("gelu", "gelu_tanh"):
        return gelu_backward(grad_y, x, reference.gelu_approximate(fn))
    return reference.backward(grad_y, x, fn)


KERNELS = ActivationKernels(forward=forward, backward=backward)
