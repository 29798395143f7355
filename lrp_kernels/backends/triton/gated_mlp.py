"""The gated MLP rule (GeGLU / SwiGLU: ``u = act(a) ⊙ b``) as element-wise Triton kernels.

``act(a) = a·f(a)`` with ``f(a) = act(a)/a``: Φ(a) for GELU (erf or tanh form,
:func:`.activation.gelu_factor`) or sigmoid(a) for SiLU; ``f`` is ½ where |a| < the reference's
GELU_GUARD (its limit at 0 for both).

Forward: ``u = T(act(a)) · b``, ``T`` rounding to the input dtype as torch does between the
activation and the product.

Backward, one pass (``lrp_kernels/ops/gated_mlp.py``: identity rule on act, uniform rule on the
product — Achtibat et al. 2024 — and the ε-rule of the two linears that made a and b — Bach et al.
2015): the input ``s = [s_a | s_b]`` of their backward GEMM, ``[..., 2I]``,

    s_a = ½ g · b · f(a) · a/(a + ε·sign a)        s_b = ½ g · act(a) · b/(b + ε·sign b)

with the one stabilizer (sign(0) = 1, :func:`._common.stabilized_ratio`); with ε = 0 the ratios are
not applied. a, b and g may be strided views with a contiguous last dimension (the two halves of one
GEMM output, ModernBERT's ``Wi``): the kernels address them by row and column.

All math in float32; results in the input dtype. The torch reference runs what the kernels do not
cover, like the compiled backend: float64, operands of different dtypes, shapes or devices, empty or
0-d tensors.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.backends.contract import GatedMLPKernels
from lrp_kernels.backends.torch import gated_mlp as reference

from ._common import cast, rows, stabilized_ratio
from ._launch import Kernel
from .activation import _GELU_GUARD, elementwise_grid, gelu_factor
from .configs import ELEMENTWISE

#: activation codes of the kernels' ``FN``: the GELU forms, then SiLU
FN_CODES = {"gelu": 0, "gelu_tanh": 1, "silu": 2}
#: the dtypes the kernels take (float64 and the rest: the torch reference)
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def act_factor(a, FN: tl.constexpr):
    """act(a)/a in float32 for activation code ``FN``: Φ(a) (GELU), sigmoid(a) (SiLU); ½ where
    |a| < GELU_GUARD, the limit at 0 of both (as the reference's ``activation_factor``)."""
    if FN == 2:
        f = tl.where(tl.abs(a) < _GELU_GUARD, 0.5, 1.0 / (1.0 + tl.exp(-a)))
    else:
        f = gelu_factor(a, FN == 1)
    return f


@triton.jit
def block_elements(N, I, BLOCK: tl.constexpr):
    """``(offs, mask, r, c)``: this program's BLOCK flat indices into an ``[R, I]`` matrix (N = R·I
    elements), their mask, and their rows and columns."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    r = offs // I
    return offs, offs < N, r, offs - r * I


@triton.jit
def load_at(ptr, r, c, stride, m):
    """Element (r, c) of a matrix with row stride ``stride`` and contiguous columns, in float32."""
    return tl.load(ptr + r * stride + c, mask=m, other=0.0).to(tl.float32)


@triton.jit
def _gated_mlp_forward_kernel(
    a_ptr,  # *T   [R, I] gate pre-activation, last dim contiguous
    b_ptr,  # *T   [R, I] up projection, last dim contiguous
    u_ptr,  # *T   [R, I] output T(act(a))·b, contiguous
    stride_a,  # row stride of a (elements)
    stride_b,  # row stride of b (elements)
    N,  # i32/i64  R·I elements
    I,  # i32  row length
    FN: tl.constexpr,  # activation code (FN_CODES)
    BLOCK: tl.constexpr,  # elements per program
):
    offs, m, r, c = block_elements(N, I, BLOCK)
    a = load_at(a_ptr, r, c, stride_a, m)
    b = load_at(b_ptr, r, c, stride_b, m)
    act = cast(a * act_factor(a, FN), u_ptr.dtype.element_ty).to(tl.float32)  # torch rounds act(a)
    tl.store(u_ptr + offs, cast(act * b, u_ptr.dtype.element_ty), mask=m)


@triton.jit
def _gated_mlp_backward_kernel(
    g_ptr,  # *T   [R, I] gradient at u, last dim contiguous
    a_ptr,  # *T   [R, I] gate pre-activation (forward value), last dim contiguous
    b_ptr,  # *T   [R, I] up projection (forward value), last dim contiguous
    s_ptr,  # *T   [R, 2I] output [s_a | s_b], contiguous
    stride_g,  # row stride of g (elements)
    stride_a,  # row stride of a (elements)
    stride_b,  # row stride of b (elements)
    N,  # i32/i64  R·I elements
    I,  # i32  row length of a, b, g (half that of s)
    eps,  # f32  ε of the two linears (read only when HAS_EPS)
    HAS_EPS: tl.constexpr,  # bool: multiply by the stabilizers a/(a + ε·sign a), b/(b + ε·sign b)
    FN: tl.constexpr,  # activation code (FN_CODES)
    BLOCK: tl.constexpr,  # elements per program
):
    offs, m, r, c = block_elements(N, I, BLOCK)
    half = 0.5 * load_at(g_ptr, r, c, stride_g, m)  # the uniform rule: each factor gets half
    a = load_at(a_ptr, r, c, stride_a, m)
    b = load_at(b_ptr, r, c, stride_b, m)
    f = act_factor(a, FN)  # the identity rule of act
    s_a = half * b * f
    s_b = half * (a * f)
    if HAS_EPS:
        s_a = s_a * stabilized_ratio(a, eps)
        s_b = s_b * stabilized_ratio(b, eps)
    out = s_ptr + r * (2 * I) + c
    tl.store(out, cast(s_a, s_ptr.dtype.element_ty), mask=m)
    tl.store(out + I, cast(s_b, s_ptr.dtype.element_ty), mask=m)


FORWARD = Kernel(_gated_mlp_forward_kernel, ELEMENTWISE, buckets=("N",))
BACKWARD = Kernel(_gated_mlp_backward_kernel, ELEMENTWISE, buckets=("N",))


def covered(*tensors: torch.Tensor) -> bool:
    """Whether the kernels take these operands: one dtype among float32/float16/bfloat16, one shape
    and one device, at least one dimension and one element (else the torch reference runs)."""
    first = tensors[0]
    if first.dtype not in _DTYPES or first.dim() == 0 or first.numel() == 0:
        return False
    return all(t.dtype == first.dtype and t.shape == first.shape and t.device == first.device for t in tensors[1:])


def forward(a: torch.Tensor, b: torch.Tensor, fn: str) -> torch.Tensor:
    """``T(act(a)) · b`` in a's dtype."""
    reference.check_function(fn)
    if not covered(a, b):
        return reference.forward(a, b, fn)
    a2, b2 = rows(a), rows(b)
    cols = a2.shape[1]
    u = torch.empty(a.shape, dtype=a.dtype, device=a.device)
    n = u.numel()
    FORWARD[elementwise_grid(n)](a2, b2, u, a2.stride(0), b2.stride(0), n, cols, FN=FN_CODES[fn])
    return u


def backward(grad_u: torch.Tensor, a: torch.Tensor, b: torch.Tensor, fn: str, eps: float) -> torch.Tensor:
    """``[s_a | s_b]`` of shape ``[..., 2I]``, contiguous, in the operands' dtype."""
    reference.check_function(fn)
    if not covered(grad_u, a, b):
        return reference.backward(grad_u, a, b, fn, eps)
    g2, a2, b2 = rows(grad_u), rows(a), rows(b)
    cols = a2.shape[1]
    s = torch.empty((*a.shape[:-1], 2 * cols), dtype=a.dtype, device=a.device)
    n = a2.numel()
    BACKWARD[elementwise_grid(n)](g2, a2, b2, s, g2.stride(0), a2.stride(0), b2.stride(0), n, cols, float(eps),
                                  HAS_EPS=eps != 0, FN=FN_CODES[fn])
    return s


KERNELS = GatedMLPKernels(forward=forward, backward=backward)
