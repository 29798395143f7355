"""Shared plumbing of the Triton kernels: interpreter detection, shared device functions, shape helpers.

The kernels are decorated when their module is imported, and Triton decides at that moment whether
a ``@triton.jit`` function is compiled for the GPU or run by its NumPy interpreter
(``TRITON_INTERPRET=1``). :data:`INTERPRETED` records which of the two happened. How a kernel is
launched (its configs, the tuning, the device guard) is :mod:`._launch`.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRETED: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"

# Triton's own library functions (tl.sum, tl.max, tl.cdiv, ...) are themselves @triton.jit functions,
# decorated when triton is first imported — in a test session often before TRITON_INTERPRET=1 is set
# (transformers imports torch._dynamo, which imports triton). Interpreted kernels cannot call such
# compiled-mode functions, so the kernels use only builtins (tl.full rather than tl.zeros, integer
# arithmetic rather than tl.cdiv) and the two reductions below, which pass
# Triton's own combine functions to the ``tl.reduce`` builtin exactly as tl.sum and tl.max do (the
# interpreter recognizes those combine functions and reduces with NumPy).


@triton.jit
def reduce_sum(x, axis: tl.constexpr):
    """``tl.sum(x, axis)`` for float32 ``x``."""
    return tl.reduce(x, axis, tl.standard._sum_combine)


@triton.jit
def reduce_max(x, axis: tl.constexpr):
    """``tl.max(x, axis)`` for float32 ``x``."""
    return tl.reduce(x, axis, tl.standard._elementwise_max)


def next_pow2(n: int, floor: int = 16) -> int:
    return max(floor, triton.next_power_of_2(n))


def rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a 2-D ``[rows, last]`` view whose last dimension is contiguous (copies only if needed)."""
    t2 = t.reshape(-1, t.shape[-1]) if t.dim() != 2 else t
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


def use_reference(t: torch.Tensor) -> bool:
    """True for float64 tensors, which every host function hands to the torch reference: the kernels
    accumulate in float32, and float64 is only used by the explicit-rule checks that need it exact."""
    return t.dtype == torch.float64


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: IEEE float32 for float32 operands (torch's default, no TF32, so
    results match ``torch.matmul``), or TF32 when the user enabled it for torch; ignored for 16-bit."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


@triton.jit
def stabilized_ratio(z, eps):
    """``z / (z + eps·sign z)`` with sign(0) = 1 in float32 — the ε-rule factor (Bach et al. 2015)."""
    sign = tl.where(z >= 0, 1.0, -1.0)
    return z / (z + eps * sign)


# Two bfloat16 bugs of Triton 3.9's interpreter are worked around under the interpreter only (the
# branches are compiled out on the GPU): ``tl.dot`` multiplies the raw uint16 storage of bfloat16
# operands (runtime/interpreter.py, ``create_dot``), and float32 → bfloat16 casts truncate instead of
# rounding to nearest-even (see :func:`cast`).
_INTERPRETER_FIXES = tl.constexpr(INTERPRETED)


@triton.jit
def mm(a, b, acc, DOT_PRECISION: tl.constexpr):
    """``acc + a @ b`` with float32 accumulation (``acc`` may be None).

    Under the interpreter 16-bit operands are upcast to float32 first, which is exact and equals a
    tensor-core dot with float32 accumulation."""
    if _INTERPRETER_FIXES:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=DOT_PRECISION)


@triton.jit
def cast(x, dtype: tl.constexpr):
    """``x.to(dtype)`` rounding to nearest-even, as the GPU does.

    Triton 3.9's interpreter truncates float32 → bfloat16 (``cast_impl`` passes no rounding mode
    to ``_convert_float``); under the interpreter the rounding is done on the float32 bits first
    (add 0x7FFF plus the lowest kept bit, clear the low half), after which truncation is exact.
    """
    if _INTERPRETER_FIXES:
        if dtype == tl.bfloat16:
            bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
            bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
            x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)
