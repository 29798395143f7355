"""The ε-rule of a linear layer: its stabilizer alone, and the whole backward as one fused GEMM.

Linear ``z = x Wᵀ + b`` with ``W`` of shape ``[N_out, N_in]`` (``torch.nn.Linear`` layout). The
ε-rule (Bach et al. 2015) ``R_x = x ⊙ Wᵀ(R_z / (z + ε·sign z))`` becomes, in the gradient×input form
``R = x ⊙ g``,

    g_x = (g_z ⊙ z / (z + ε·sign z)) @ W          sign(0) = 1; ε = 0 gives the plain gradient

``eps_ratio`` computes the bracket alone (element-wise). ``linear_backward`` computes g_x as ONE
Triton GEMM: the A-operand tile is loaded from ``g_z`` and ``z`` and multiplied by the stabilizer in
registers before ``tl.dot`` — the stabilized gradient is never written to memory. No weight or bias
gradient is computed (parameters are constant during attribution).

With ``gelu_input=u`` the linear is the one that feeds a GELU, ``u = x Wᵀ + b``, ``h = gelu(u)``,
and ``grad_z`` is the gradient at ``h``. The operand is then the GELU identity rule (AttnLRP,
Achtibat et al. 2024) times this linear's stabilizer — exactly ``gelu_eps_ratio(grad_z, u, eps)``:

    g_x = (g_h ⊙ gelu(u)/u ⊙ u / (u + ε·sign u)) @ W

so the MLP's ``GELU → linear`` backward is a single kernel. ``z`` is not read in that case (it would
equal ``u``) and may be None.

Operand tiles are cast to the input dtype before the dot (tensor cores for bf16/fp16, exactly like
the reference's ``eps_ratio`` result feeding ``torch.matmul``); accumulation is float32.
float64 inputs go to the torch reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.errors import BackendError
from lrp_kernels.backends.contract import LinearKernels
from lrp_kernels.backends.torch import linear as reference

from ._common import ELEMENTWISE, autotune, bucket, cast, dot_precision, mm, rows, stabilized_ratio, use_reference
from .activation import approximate_flag, gelu_eps_ratio, gelu_factor

# Operand rules applied on load (constexpr RULE of the GEMM).
_PLAIN, _EPS, _GELU, _GELU_EPS = 0, 1, 2, 3


def _gemm_config(bm, bn, bk, stages, warps):
    meta = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}
    return triton.Config(meta, num_stages=stages, num_warps=warps)


def gemm_shared_bytes(config: triton.Config, element_bytes: int) -> int:
    """Shared memory of a GEMM config: one A and one B tile per pipeline stage, plus one more stage
    (the A tile is transformed in registers and staged again before the MMA) — matches what
    Triton 3.9 allocates for sm_90 and over-estimates sm_80 slightly."""
    kw = config.kwargs
    return (config.num_stages + 1) * (kw["BLOCK_M"] * kw["BLOCK_K"] + kw["BLOCK_K"] * kw["BLOCK_N"]) * element_bytes


_GEMM = dict(
    ampere=[
        _gemm_config(128, 128, 32, 3, 4),
        _gemm_config(128, 64, 32, 4, 4),
        _gemm_config(64, 128, 32, 4, 4),
        _gemm_config(128, 256, 32, 3, 8),
        _gemm_config(64, 64, 64, 3, 4),
    ],
    hopper=[
        _gemm_config(128, 128, 64, 4, 8),
        _gemm_config(128, 256, 64, 3, 8),
        _gemm_config(128, 128, 32, 4, 4),
        _gemm_config(64, 128, 64, 4, 4),
        _gemm_config(128, 64, 64, 4, 4),
    ],
    interpret=triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 16, "GROUP_M": 2}, num_warps=1),
    key=["M_BUCKET", "N_OUT", "N_IN"],
)


@autotune(**ELEMENTWISE)
@triton.jit
def _eps_ratio_kernel(
    g_ptr,  # *T   [N] gradient at z
    z_ptr,  # *T   [N] linear output z (forward value)
    out_ptr,  # *T [N] g · z/(z + ε·sign z)
    N,  # i32/i64  number of elements
    N_BUCKET,  # next power of two ≥ N: the autotuning key, not read
    eps,  # f32  ε > 0
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    g = tl.load(g_ptr + offs, mask=m, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, cast(g * stabilized_ratio(z, eps), out_ptr.dtype.element_ty), mask=m)


@autotune(**_GEMM, shared_bytes=lambda config, args: gemm_shared_bytes(config, args["w_ptr"].element_size()))
@triton.jit
def _linear_backward_kernel(
    g_ptr,  # *T  [M, N_OUT] gradient at the linear's output (or at the GELU output)
    z_ptr,  # *T  [M, N_OUT] linear output z, or GELU input u (read when RULE != PLAIN)
    w_ptr,  # *T  [N_OUT, N_IN] weight
    out_ptr,  # *T [M, N_IN] g_x, contiguous
    M,  # i32  rows (tokens)
    M_BUCKET,  # next power of two ≥ M: the autotuning key, not read
    N_OUT,  # i32  output features = reduction length
    N_IN,  # i32  input features = output columns
    stride_gm,  # row stride of g (last dim contiguous)
    stride_zm,  # row stride of z (last dim contiguous)
    stride_wo,  # stride of W along N_OUT
    stride_wi,  # stride of W along N_IN
    eps,  # f32  ε of the rule (read when RULE is EPS or GELU_EPS)
    RULE: tl.constexpr,  # 0 plain, 1 ε-ratio on z, 2 GELU identity on u, 3 GELU identity × ε-ratio on u
    APPROX_TANH: tl.constexpr,  # GELU tanh approximation (RULE 2, 3)
    DOT_PRECISION: tl.constexpr,  # "ieee" / "tf32" for float32 operands
    BLOCK_M: tl.constexpr,  # output tile rows
    BLOCK_N: tl.constexpr,  # output tile columns (along N_IN)
    BLOCK_K: tl.constexpr,  # reduction step (along N_OUT)
    GROUP_M: tl.constexpr,  # row-tiles per L2 super-group
):
    # Grouped tile order: GROUP_M row tiles share each W column panel while it is in L2.
    pid = tl.program_id(0)
    num_m = (M + BLOCK_M - 1) // BLOCK_M
    num_n = (N_IN + BLOCK_N - 1) // BLOCK_N
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_size
    pid_n = (pid % per_group) // group_size

    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    row_ok = offs_m < M
    col_ok = offs_n < N_IN

    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, dtype=tl.float32)
    for k0 in range(0, N_OUT, BLOCK_K):
        ks = k0 + offs_k
        a_mask = row_ok[:, None] & (ks[None, :] < N_OUT)
        a = tl.load(g_ptr + offs_m[:, None] * stride_gm + ks[None, :], mask=a_mask, other=0.0)
        if RULE != 0:
            # The rule, applied to the operand tile in registers (float32), never stored.
            z = tl.load(z_ptr + offs_m[:, None] * stride_zm + ks[None, :], mask=a_mask, other=0.0).to(tl.float32)
            if RULE == 1:
                f = stabilized_ratio(z, eps)
            elif RULE == 2:
                f = gelu_factor(z, APPROX_TANH)
            else:
                f = gelu_factor(z, APPROX_TANH) * stabilized_ratio(z, eps)
            a = cast(a.to(tl.float32) * f, w_ptr.dtype.element_ty)
        w = tl.load(
            w_ptr + ks[:, None] * stride_wo + offs_n[None, :] * stride_wi,
            mask=(ks[:, None] < N_OUT) & col_ok[None, :],
            other=0.0,
        )
        acc = mm(a, w, acc, DOT_PRECISION)
    tl.store(
        out_ptr + offs_m[:, None] * N_IN + offs_n[None, :],
        cast(acc, out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & col_ok[None, :],
    )


def eps_ratio(grad_z: torch.Tensor, z: torch.Tensor, eps: float) -> torch.Tensor:
    """``grad_z · z/(z + ε·sign z)`` (sign(0) = 1); ε = 0 returns ``grad_z`` itself."""
    if eps == 0:
        return grad_z
    if use_reference(grad_z) or use_reference(z):
        return reference.eps_ratio(grad_z, z, eps)
    if grad_z.shape != z.shape:
        raise BackendError(f"grad_z and z must have the same shape, got {tuple(grad_z.shape)} and {tuple(z.shape)}")
    g_c, z_c = grad_z.contiguous(), z.contiguous()
    out = torch.empty_like(g_c)
    n = g_c.numel()
    if n:
        _eps_ratio_kernel[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](g_c, z_c, out, n, bucket(n), float(eps))
    return out


def linear_backward(
    grad_z: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float,
    gelu_input: torch.Tensor | None = None,
    approximate: str = "none",
) -> torch.Tensor:
    """``g_x`` of a linear under the ε-rule as one GEMM (see the module docstring).

    ``grad_z``: ``[..., N_out]`` gradient at z (or at ``h = gelu(u)`` when ``gelu_input`` is given);
    ``z``: ``[..., N_out]`` forward output (unused with ``gelu_input``, may then be None);
    ``weight``: ``[N_out, N_in]``; returns ``[..., N_in]`` in grad_z's dtype.
    """
    n_out = grad_z.shape[-1]
    if weight.dim() != 2 or weight.shape[0] != n_out:
        raise BackendError(f"weight must have shape [{n_out}, N_in], got {tuple(weight.shape)}")
    if weight.dtype != grad_z.dtype:
        raise BackendError(f"weight dtype {weight.dtype} differs from the gradient dtype {grad_z.dtype}")
    if gelu_input is not None:
        tanh = approximate_flag(approximate)
        rule = _GELU_EPS if eps != 0 else _GELU
        source = gelu_input
    else:
        tanh = False
        rule = _EPS if eps != 0 else _PLAIN
        source = z
        if source is None and rule == _EPS:
            raise BackendError("linear_backward needs z (the linear's output) when eps != 0")
    if source is not None and source.shape != grad_z.shape:
        raise BackendError(f"z/gelu_input must have the shape of grad_z {tuple(grad_z.shape)}, got {tuple(source.shape)}")
    if use_reference(grad_z):
        if gelu_input is not None:
            return torch.matmul(reference.gelu_eps_ratio(grad_z, gelu_input, eps, approximate), weight)
        return torch.matmul(reference.eps_ratio(grad_z, z, eps), weight)

    g2 = rows(grad_z)
    s2 = rows(source) if rule != _PLAIN else g2
    m, n_in = g2.shape[0], weight.shape[1]
    out = torch.empty((m, n_in), dtype=grad_z.dtype, device=grad_z.device)
    if m and n_in:
        if n_out == 0:
            out.zero_()
        else:
            grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n_in, meta["BLOCK_N"]),)  # noqa: E731
            _linear_backward_kernel[grid](
                g2, s2, weight, out, m, bucket(m), n_out, n_in,
                g2.stride(0), s2.stride(0), weight.stride(0), weight.stride(1), float(eps),
                RULE=rule, APPROX_TANH=tanh, DOT_PRECISION=dot_precision(grad_z.dtype),
            )
    return out.reshape(*grad_z.shape[:-1], n_in)


KERNELS = LinearKernels(eps_ratio=eps_ratio, gelu_eps_ratio=gelu_eps_ratio, fused_backward=linear_backward)
