"""The ε-rule of a linear layer: its stabilizer, one element-wise pass; the GEMM stays cuBLAS.

Linear ``z = x Wᵀ + b`` with ``W`` of shape ``[N_out, N_in]``. The ε-rule (Bach et al. 2015) in the
gradient×input form ``R = x ⊙ g`` is ``g_x = (g_z ⊙ z / (z + ε·sign z)) @ W`` (sign(0) = 1);
``eps_ratio`` computes the bracket — once per element — and the op multiplies by W with
``torch.matmul``. (An earlier version applied the rule to the A operand inside the K loop of a
Triton GEMM: it recomputed the ratio, and erf for the GELU variant, once per output tile, 659 and
1782 SASS instructions per K step on sm_90 against the plain GEMM's 114 for the same 4 HGMMA.)

The GELU-identity × ε-ratio of the linear that feeds a GELU is :func:`.activation.gelu_eps_ratio`.
float64 inputs go to the torch reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.backends.contract import LinearKernels
from lrp_kernels.backends.torch import linear as reference

from ._common import cast, stabilized_ratio, use_reference
from ._launch import Kernel
from .activation import gelu_eps_ratio, launch_pairwise
from .configs import ELEMENTWISE


@triton.jit
def _eps_ratio_kernel(
    g_ptr,  # *T   [N] gradient at z
    z_ptr,  # *T   [N] linear output z (forward value)
    out_ptr,  # *T [N] g · z/(z + ε·sign z)
    N,  # i32/i64  number of elements
    eps,  # f32  ε > 0
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    g = tl.load(g_ptr + offs, mask=m, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, cast(g * stabilized_ratio(z, eps), out_ptr.dtype.element_ty), mask=m)


EPS_RATIO = Kernel(_eps_ratio_kernel, ELEMENTWISE, buckets=("N",))


def eps_ratio(grad_z: torch.Tensor, z: torch.Tensor, eps: float) -> torch.Tensor:
    """``grad_z · z/(z + ε·sign z)`` (sign(0) = 1); ε = 0 returns ``grad_z`` itself."""
    if eps == 0:
        return grad_z
    if use_reference(grad_z) or use_reference(z):
        return reference.eps_ratio(grad_z, z, eps)
    return launch_pairwise(EPS_RATIO, "grad_z and z", grad_z, z, float(eps))


KERNELS = LinearKernels(eps_ratio=eps_ratio, gelu_eps_ratio=gelu_eps_ratio)
