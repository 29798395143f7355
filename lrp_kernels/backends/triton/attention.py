"""Fused attention: FlashAttention-style forward and the AttnLRP / CP-LRP backward, in Triton.

Forward, per batch b and head h (q, k, v of shape ``[B, H, L, D]``, additive padding mask
``mask[B, L]`` in float32 — 0 for tokens, ``finfo(float32).min`` for padding):

    S = scale · Q Kᵀ + mask[b, None, :],   P = softmax_rows(S),   O = P V

computed with the online softmax of FlashAttention (Dao et al. 2022; Dao 2023): key blocks are
streamed through each query block keeping the running row maximum ``m`` and the running sum
``ℓ = Σ_j exp(S_ij − m)``. P (B×H×L×L) is never stored. The forward saves ``(O, m, log ℓ)``
with m and log ℓ float32 ``[B, H, L]``; for ``cp_lrp``, whose backward needs P but not O and is
called without q, k, v, it saves ``(Q, K, m, log ℓ)`` (references, no copies). ``m + log ℓ`` is the
log-sum-exp of each row; the two parts are kept apart because a query whose keys are all padding
has ``S_ij ≈ finfo.min`` and ``m + log ℓ`` would round to ``m`` in float32 — stored apart, the
backward recovers ``P_ij = 1/L`` exactly like the reference softmax does for such rows.

Backward, recomputing ``P_ij = exp(S_ij − m_i − log ℓ_i)`` block by block:

    g_V = Pᵀ g_O
    g_P = g_O Vᵀ,   Δ_i = Σ_j P_ij g_P,ij = g_O,i · O_i,   g_S = P ⊙ (g_P − Δ)
    g_Q = scale · g_S K,   g_K = scale · g_Sᵀ Q

Modes (``lrp_kernels.ops.attention``):

* ``"grad"``: the plain gradient above.
* ``"attnlrp"`` (Achtibat et al. 2024): the softmax keeps its gradient (first-order Taylor rule);
  the bilinear products ``Q Kᵀ`` and ``P V`` follow the uniform rule (½ to each factor), so g_V and
  g_P are halved and g_Q, g_K halved again: ``g_V·½``, ``g_Q·¼``, ``g_K·¼``.
* ``"cp_lrp"`` (Ali et al. 2022): P is a constant, all relevance flows through V: ``g_V = Pᵀ g_O``,
  ``g_Q = g_K = None`` — the backward runs only the g_V part of the key-block kernel.

Kernels: ``_attention_forward_kernel`` (grid: query blocks × B·H), ``_attention_delta_kernel``
(Δ, grid: query blocks × B·H), ``_attention_backward_dkdv_kernel`` (one program per key block,
streaming query blocks; writes g_K, g_V) and ``_attention_backward_dq_kernel`` (one program per
query block, streaming key blocks; writes g_Q). No atomics. Matrix products take input-dtype
operands and accumulate in float32; softmax statistics are float32. float64 inputs go to the torch
reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.errors import BackendError
from lrp_kernels.backends.contract import ATTENTION_MODES, AttentionKernels
from lrp_kernels.backends.torch import attention as reference

from ._common import autotune, bucket, cast, dot_precision, mm, next_pow2, reduce_max, reduce_sum, use_reference

MODES = ATTENTION_MODES
MAX_HEAD_DIM = 256


def _cfg(bm, bn, stages, warps):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_stages=stages, num_warps=warps)


_FORWARD = dict(
    ampere=[_cfg(128, 64, 3, 4), _cfg(128, 128, 2, 8), _cfg(64, 64, 3, 4), _cfg(128, 32, 4, 4)],
    hopper=[_cfg(128, 128, 3, 8), _cfg(128, 64, 4, 4), _cfg(128, 64, 3, 8), _cfg(64, 128, 3, 4)],
    interpret=_cfg(32, 16, 1, 1),
    key=["L_BUCKET", "D"],
)
# dK/dV: BLOCK_N keys per program, BLOCK_M query rows per step; dQ: BLOCK_M queries, BLOCK_N keys.
_BACKWARD = dict(
    ampere=[_cfg(64, 64, 2, 4), _cfg(32, 64, 3, 4), _cfg(64, 128, 2, 8), _cfg(128, 64, 2, 8)],
    hopper=[_cfg(64, 128, 3, 8), _cfg(128, 128, 2, 8), _cfg(64, 64, 3, 4), _cfg(32, 128, 3, 4)],
    interpret=_cfg(16, 32, 1, 1),
    key=["L_BUCKET", "D"],
)
_DELTA = dict(
    ampere=[_cfg(64, 1, 1, 4)],
    hopper=[_cfg(128, 1, 1, 4)],
    interpret=_cfg(32, 1, 1, 1),
    key=["L_BUCKET", "D"],
)


@autotune(**_FORWARD)
@triton.jit
def _attention_forward_kernel(
    q_ptr, k_ptr, v_ptr,  # *T [B, H, L, D] inputs (any strides)
    mask_ptr,  # *f32 [B, L] additive key mask (read when HAS_MASK)
    o_ptr,  # *T   [B, H, L, D] output, contiguous
    m_ptr,  # *f32 [B, H, L] row maxima m
    ls_ptr,  # *f32 [B, H, L] log ℓ (log of the row sums of exp(S − m))
    sqb, sqh, sql, sqd,  # q strides
    skb, skh, skl, skd,  # k strides
    svb, svh, svl, svd,  # v strides
    smb,  # mask row stride
    H,  # i32 heads
    L,  # i32 sequence length
    L_BUCKET,  # next power of two ≥ L: the autotuning key, not read
    D,  # i32 head dim
    scale,  # f32 score scale (1/√D)
    HAS_MASK: tl.constexpr,  # bool
    DOT_PRECISION: tl.constexpr,  # "ieee" / "tf32" for float32 operands
    BLOCK_M: tl.constexpr,  # query rows per program
    BLOCK_N: tl.constexpr,  # keys per step
    BLOCK_D: tl.constexpr,  # power of two ≥ D (≥ 16)
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < L
    d_ok = offs_d < D

    q = tl.load(
        q_ptr + b * sqb + h * sqh + offs_m[:, None] * sql + offs_d[None, :] * sqd,
        mask=row_ok[:, None] & d_ok[None, :], other=0.0,
    )
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.full((BLOCK_M,), 0.0, dtype=tl.float32)
    acc = tl.full((BLOCK_M, BLOCK_D), 0.0, dtype=tl.float32)
    k_base = k_ptr + b * skb + h * skh
    v_base = v_ptr + b * svb + h * svh
    for start in range(0, L, BLOCK_N):
        cols = start + offs_n
        col_ok = cols < L
        kt = tl.load(
            k_base + cols[None, :] * skl + offs_d[:, None] * skd, mask=d_ok[:, None] & col_ok[None, :], other=0.0
        )
        s = mm(q, kt, None, DOT_PRECISION) * scale
        if HAS_MASK:
            s = s + tl.load(mask_ptr + b * smb + cols, mask=col_ok, other=0.0)[None, :]
        s = tl.where(col_ok[None, :], s, float("-inf"))  # keys past L do not exist
        m_new = tl.maximum(m_i, reduce_max(s, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + reduce_sum(p, 1)
        v = tl.load(
            v_base + cols[:, None] * svl + offs_d[None, :] * svd, mask=col_ok[:, None] & d_ok[None, :], other=0.0
        )
        acc = acc * alpha[:, None]
        acc = mm(cast(p, v.dtype), v, acc, DOT_PRECISION)
        m_i = m_new
    out = acc / l_i[:, None]
    o_rows = pid_bh * L + offs_m
    o_ok = row_ok[:, None] & d_ok[None, :]
    tl.store(o_ptr + o_rows[:, None] * D + offs_d[None, :], cast(out, o_ptr.dtype.element_ty), mask=o_ok)
    tl.store(m_ptr + o_rows, m_i, mask=row_ok)
    tl.store(ls_ptr + o_rows, tl.log(l_i), mask=row_ok)


@autotune(**_DELTA)
@triton.jit
def _attention_delta_kernel(
    o_ptr,  # *T   [B, H, L, D] forward output, contiguous
    g_ptr,  # *T   [B, H, L, D] gradient at the output (any strides)
    delta_ptr,  # *f32 [B, H, L] Δ = rowsum(g_O ⊙ O)
    sgb, sgh, sgl, sgd,  # grad_out strides
    H,  # i32 heads
    L,  # i32 sequence length
    L_BUCKET,  # next power of two ≥ L: the autotuning key, not read
    D,  # i32 head dim
    BLOCK_M: tl.constexpr,  # rows per program
    BLOCK_N: tl.constexpr,  # unused (shared config shape)
    BLOCK_D: tl.constexpr,  # power of two ≥ D
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    ok = (offs_m < L)[:, None] & (offs_d < D)[None, :]
    rows = pid_bh * L + offs_m
    o = tl.load(o_ptr + rows[:, None] * D + offs_d[None, :], mask=ok, other=0.0).to(tl.float32)
    g_off = b * sgb + h * sgh + offs_m[:, None] * sgl + offs_d[None, :] * sgd
    g = tl.load(g_ptr + g_off, mask=ok, other=0.0).to(tl.float32)
    tl.store(delta_ptr + rows, reduce_sum(o * g, 1), mask=offs_m < L)


@autotune(**_BACKWARD)
@triton.jit
def _attention_backward_dkdv_kernel(
    q_ptr, k_ptr,  # *T [B, H, L, D] forward inputs (any strides)
    v_ptr,  # *T [B, H, L, D] forward input (any strides; read when COMPUTE_QK)
    g_ptr,  # *T   [B, H, L, D] gradient at the output (any strides)
    mask_ptr,  # *f32 [B, L] additive key mask (read when HAS_MASK)
    m_ptr, ls_ptr,  # *f32 [B, H, L] saved row maxima and log ℓ
    delta_ptr,  # *f32 [B, H, L] Δ (read when COMPUTE_QK)
    gk_ptr, gv_ptr,  # *T [B, H, L, D] outputs g_K (written when COMPUTE_QK), g_V; contiguous
    sqb, sqh, sql, sqd,  # q strides
    skb, skh, skl, skd,  # k strides
    svb, svh, svl, svd,  # v strides
    sgb, sgh, sgl, sgd,  # grad_out strides
    smb,  # mask row stride
    H,  # i32 heads
    L,  # i32 sequence length
    L_BUCKET,  # next power of two ≥ L: the autotuning key, not read
    D,  # i32 head dim
    scale,  # f32 score scale
    qk_factor,  # f32 factor on g_K (scale · ¼ for attnlrp, scale for grad)
    v_factor,  # f32 factor on g_V (½ for attnlrp, 1 otherwise)
    HAS_MASK: tl.constexpr,  # bool
    COMPUTE_QK: tl.constexpr,  # False for cp_lrp (g_V only)
    DOT_PRECISION: tl.constexpr,  # "ieee" / "tf32" for float32 operands
    BLOCK_M: tl.constexpr,  # query rows per step
    BLOCK_N: tl.constexpr,  # keys per program
    BLOCK_D: tl.constexpr,  # power of two ≥ D
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    col_ok = offs_n < L
    d_ok = offs_d < D
    kv_ok = col_ok[:, None] & d_ok[None, :]

    k = tl.load(k_ptr + b * skb + h * skh + offs_n[:, None] * skl + offs_d[None, :] * skd, mask=kv_ok, other=0.0)
    if COMPUTE_QK:
        v = tl.load(v_ptr + b * svb + h * svh + offs_n[:, None] * svl + offs_d[None, :] * svd, mask=kv_ok, other=0.0)
    if HAS_MASK:
        key_bias = tl.load(mask_ptr + b * smb + offs_n, mask=col_ok, other=0.0)
    gk = tl.full((BLOCK_N, BLOCK_D), 0.0, dtype=tl.float32)
    gv = tl.full((BLOCK_N, BLOCK_D), 0.0, dtype=tl.float32)
    q_base = q_ptr + b * sqb + h * sqh
    g_base = g_ptr + b * sgb + h * sgh
    for start in range(0, L, BLOCK_M):
        rows = start + offs_m
        row_ok = rows < L
        qd_ok = d_ok[:, None] & row_ok[None, :]
        qt = tl.load(q_base + rows[None, :] * sql + offs_d[:, None] * sqd, mask=qd_ok, other=0.0)  # [D, M]
        go_ok = row_ok[:, None] & d_ok[None, :]
        go = tl.load(g_base + rows[:, None] * sgl + offs_d[None, :] * sgd, mask=go_ok, other=0.0)
        stat = pid_bh * L + rows
        lse_m = tl.load(m_ptr + stat, mask=row_ok, other=0.0)
        lse_l = tl.load(ls_ptr + stat, mask=row_ok, other=0.0)
        st = mm(k, qt, None, DOT_PRECISION) * scale  # Sᵀ block [N, M]
        if HAS_MASK:
            st = st + key_bias[:, None]
        st = tl.where(col_ok[:, None] & row_ok[None, :], st, float("-inf"))  # P = 0 outside L × L
        pt = tl.exp((st - lse_m[None, :]) - lse_l[None, :])
        gv = mm(cast(pt, go.dtype), go, gv, DOT_PRECISION)
        if COMPUTE_QK:
            delta = tl.load(delta_ptr + stat, mask=row_ok, other=0.0)
            dpt = mm(v, tl.trans(go), None, DOT_PRECISION)  # g_Pᵀ block [N, M]
            dst = pt * (dpt - delta[None, :])
            gk = mm(cast(dst, qt.dtype), tl.trans(qt), gk, DOT_PRECISION)
    out_rows = pid_bh * L + offs_n
    out_off = out_rows[:, None] * D + offs_d[None, :]
    tl.store(gv_ptr + out_off, cast(gv * v_factor, gv_ptr.dtype.element_ty), mask=kv_ok)
    if COMPUTE_QK:
        tl.store(gk_ptr + out_off, cast(gk * qk_factor, gk_ptr.dtype.element_ty), mask=kv_ok)


@autotune(**_BACKWARD)
@triton.jit
def _attention_backward_dq_kernel(
    q_ptr, k_ptr, v_ptr,  # *T [B, H, L, D] forward inputs (any strides)
    g_ptr,  # *T   [B, H, L, D] gradient at the output (any strides)
    mask_ptr,  # *f32 [B, L] additive key mask (read when HAS_MASK)
    m_ptr, ls_ptr,  # *f32 [B, H, L] saved row maxima and log ℓ
    delta_ptr,  # *f32 [B, H, L] Δ
    gq_ptr,  # *T  [B, H, L, D] output g_Q, contiguous
    sqb, sqh, sql, sqd,  # q strides
    skb, skh, skl, skd,  # k strides
    svb, svh, svl, svd,  # v strides
    sgb, sgh, sgl, sgd,  # grad_out strides
    smb,  # mask row stride
    H,  # i32 heads
    L,  # i32 sequence length
    L_BUCKET,  # next power of two ≥ L: the autotuning key, not read
    D,  # i32 head dim
    scale,  # f32 score scale
    qk_factor,  # f32 factor on g_Q (scale · ¼ for attnlrp, scale for grad)
    HAS_MASK: tl.constexpr,  # bool
    DOT_PRECISION: tl.constexpr,  # "ieee" / "tf32" for float32 operands
    BLOCK_M: tl.constexpr,  # query rows per program
    BLOCK_N: tl.constexpr,  # keys per step
    BLOCK_D: tl.constexpr,  # power of two ≥ D
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < L
    d_ok = offs_d < D
    qd_ok = row_ok[:, None] & d_ok[None, :]

    q = tl.load(q_ptr + b * sqb + h * sqh + offs_m[:, None] * sql + offs_d[None, :] * sqd, mask=qd_ok, other=0.0)
    go = tl.load(g_ptr + b * sgb + h * sgh + offs_m[:, None] * sgl + offs_d[None, :] * sgd, mask=qd_ok, other=0.0)
    stat = pid_bh * L + offs_m
    lse_m = tl.load(m_ptr + stat, mask=row_ok, other=0.0)
    lse_l = tl.load(ls_ptr + stat, mask=row_ok, other=0.0)
    delta = tl.load(delta_ptr + stat, mask=row_ok, other=0.0)
    gq = tl.full((BLOCK_M, BLOCK_D), 0.0, dtype=tl.float32)
    k_base = k_ptr + b * skb + h * skh
    v_base = v_ptr + b * svb + h * svh
    for start in range(0, L, BLOCK_N):
        cols = start + offs_n
        col_ok = cols < L
        kvt_ok = d_ok[:, None] & col_ok[None, :]
        kt = tl.load(k_base + cols[None, :] * skl + offs_d[:, None] * skd, mask=kvt_ok, other=0.0)  # [D, N]
        vt = tl.load(v_base + cols[None, :] * svl + offs_d[:, None] * svd, mask=kvt_ok, other=0.0)  # [D, N]
        s = mm(q, kt, None, DOT_PRECISION) * scale
        if HAS_MASK:
            s = s + tl.load(mask_ptr + b * smb + cols, mask=col_ok, other=0.0)[None, :]
        s = tl.where(row_ok[:, None] & col_ok[None, :], s, float("-inf"))  # P = 0 outside L × L
        p = tl.exp((s - lse_m[:, None]) - lse_l[:, None])
        dp = mm(go, vt, None, DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        gq = mm(cast(ds, kt.dtype), tl.trans(kt), gq, DOT_PRECISION)
    gq_off = stat[:, None] * D + offs_d[None, :]
    tl.store(gq_ptr + gq_off, cast(gq * qk_factor, gq_ptr.dtype.element_ty), mask=qd_ok)


def _check_mode(mode):
    if mode not in MODES:
        raise BackendError(f"unknown attention mode {mode!r}; valid: {', '.join(MODES)}")


def _check(q, k, v, mask):
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise BackendError(
            f"q, k, v must all have shape [B, H, L, D], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise BackendError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[-1] > MAX_HEAD_DIM:
        raise BackendError(f"head dim {q.shape[-1]} exceeds the Triton attention's maximum {MAX_HEAD_DIM}")
    if mask is not None and tuple(mask.shape) != (q.shape[0], q.shape[2]):
        raise BackendError(f"mask must have shape [B, L] = [{q.shape[0]}, {q.shape[2]}], got {tuple(mask.shape)}")


def _mask_arg(mask, like):
    if mask is None:
        return like, 0, False
    m = mask.to(torch.float32)
    if m.stride(-1) != 1:
        m = m.contiguous()
    return m, m.stride(0), True


def forward(q, k, v, mask, scale: float, mode: str, window=None, rotary=None):
    """``(O, saved)``: softmax(scale·QKᵀ + mask)·V without materializing P.

    ``saved`` is ``(O, row_max, row_log_sum)`` for ``grad``/``attnlrp`` and ``(q, k, row_max,
    row_log_sum)`` for ``cp_lrp``, whose backward is called without q, k, v (they are not needed by
    the reference, which saves P); the fused backward recomputes P from q and k. A sliding
    ``window``, ``rotary`` positions or grouped K/V heads run the torch reference (no kernel yet).
    """
    _check_mode(mode)
    if reference.is_variant(q, k, window, rotary):
        return reference.forward(q, k, v, mask, scale, mode, window, rotary)
    _check(q, k, v, mask)
    if use_reference(q):
        return reference.forward(q, k, v, mask, scale, mode)
    bsz, heads, length, dim = q.shape
    out = torch.empty((bsz, heads, length, dim), dtype=q.dtype, device=q.device)
    row_max = torch.empty((bsz, heads, length), dtype=torch.float32, device=q.device)
    row_log_sum = torch.empty_like(row_max)
    if out.numel():
        mask_t, smb, has_mask = _mask_arg(mask, row_max)
        grid = lambda meta: (triton.cdiv(length, meta["BLOCK_M"]), bsz * heads)  # noqa: E731
        _attention_forward_kernel[grid](
            q, k, v, mask_t, out, row_max, row_log_sum,
            *q.stride(), *k.stride(), *v.stride(), smb,
            heads, length, bucket(length), dim, float(scale),
            HAS_MASK=has_mask, DOT_PRECISION=dot_precision(q.dtype), BLOCK_D=next_pow2(dim),
        )
    if mode == "cp_lrp":
        return out, (q, k, row_max, row_log_sum)
    return out, (out, row_max, row_log_sum)


def backward(grad_out, q, k, v, mask, scale: float, mode: str, saved, window=None, rotary=None):
    """``(g_Q, g_K, g_V)`` of the mode (g_Q = g_K = None for ``cp_lrp``) from the saved statistics.

    For ``cp_lrp`` q, k, v may be None (q and k come from ``saved``).
    """
    _check_mode(mode)
    if k is not None and reference.is_variant(q, k, window, rotary):
        return reference.backward(grad_out, q, k, v, mask, scale, mode, saved, window, rotary)
    if use_reference(grad_out):  # float64: the forward was the reference's
        return reference.backward(grad_out, q, k, v, mask, scale, mode, saved)
    compute_qk = mode != "cp_lrp"
    if compute_qk:
        if len(saved) != 3:
            raise BackendError("attention_backward needs the (out, row_max, row_log_sum) of the Triton forward")
        out, row_max, row_log_sum = saved
    else:
        if len(saved) != 4:
            raise BackendError("cp_lrp attention_backward needs the (q, k, row_max, row_log_sum) of the Triton forward")
        q, k, row_max, row_log_sum = saved
        v = k
    _check(q, k, v, mask)
    if grad_out.shape != q.shape:
        raise BackendError(f"grad_out must have shape {tuple(q.shape)}, got {tuple(grad_out.shape)}")
    bsz, heads, length, dim = q.shape
    v_factor = 0.5 if mode == "attnlrp" else 1.0
    qk_factor = scale * (0.25 if mode == "attnlrp" else 1.0)
    gv = torch.empty((bsz, heads, length, dim), dtype=q.dtype, device=q.device)
    gk = torch.empty_like(gv) if compute_qk else None
    gq = torch.empty_like(gv) if compute_qk else None
    if gv.numel() == 0:
        return gq, gk, gv
    mask_t, smb, has_mask = _mask_arg(mask, row_max)
    prec = dot_precision(q.dtype)
    block_d = next_pow2(dim)
    delta = row_max
    if compute_qk:
        out = out.contiguous()
        delta = torch.empty_like(row_max)
        _attention_delta_kernel[lambda meta: (triton.cdiv(length, meta["BLOCK_M"]), bsz * heads)](
            out, grad_out, delta, *grad_out.stride(), heads, length, bucket(length), dim, BLOCK_D=block_d,
        )
    strides = (*q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), smb)
    _attention_backward_dkdv_kernel[lambda meta: (triton.cdiv(length, meta["BLOCK_N"]), bsz * heads)](
        q, k, v, grad_out, mask_t, row_max, row_log_sum, delta, gk if compute_qk else gv, gv,
        *strides, heads, length, bucket(length), dim, float(scale), float(qk_factor), float(v_factor),
        HAS_MASK=has_mask, COMPUTE_QK=compute_qk, DOT_PRECISION=prec, BLOCK_D=block_d,
    )
    if compute_qk:
        _attention_backward_dq_kernel[lambda meta: (triton.cdiv(length, meta["BLOCK_M"]), bsz * heads)](
            q, k, v, grad_out, mask_t, row_max, row_log_sum, delta, gq,
            *strides, heads, length, bucket(length), dim, float(scale), float(qk_factor),
            HAS_MASK=has_mask, DOT_PRECISION=prec, BLOCK_D=block_d,
        )
    return gq, gk, gv


KERNELS = AttentionKernels(
    forward=forward,
    backward=backward,
    disentangled_forward=reference.disentangled_forward,
    disentangled_backward=reference.disentangled_backward,
)
