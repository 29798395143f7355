"""Fused attention: FlashAttention-style forward and the AttnLRP / CP-LRP backward, in Triton.

Forward, per batch b and head h (q, k, v of shape ``[B, H, L, D]``, any strides — the model's
``split_heads`` views of ``[B, L, H·D]`` — and an additive padding mask ``mask[B, L]`` in float32:
0 for tokens, ``finfo(float32).min`` for padding):

    S = scale · Q Kᵀ + mask[b, None, :],   P = softmax_rows(S),   O = P V

computed with the online softmax of FlashAttention (Dao et al. 2022; Dao 2023): key blocks are
streamed through each query block keeping the running row maximum ``m`` and the running sum
``ℓ = Σ_j exp(S_ij − m)``. P (B×H×L×L) is never stored. The forward saves ``(O, m, log ℓ)``, or
``(m, log ℓ)`` for ``cp_lrp`` (its backward needs P, not O), with m and log ℓ float32 ``[B, H, L]``.
``m + log ℓ`` is the log-sum-exp of each row; the two parts are kept apart because a query whose
keys are all padding has ``S_ij ≈ finfo.min`` and ``m + log ℓ`` would round to ``m`` in float32 —
stored apart, the backward recovers ``P_ij = 1/L`` exactly like the reference softmax does.

Backward, recomputing ``P_ij = exp(S_ij − m_i − log ℓ_i)`` block by block:

    g_V = Pᵀ g_O
    g_P = g_O Vᵀ,   Δ_i = Σ_j P_ij g_P,ij = g_O,i · O_i,   g_S = P ⊙ (g_P − Δ)
    g_Q = scale · g_S K,   g_K = scale · g_Sᵀ Q

Modes (``lrp_kernels.ops.attention``): ``"grad"`` the plain gradient; ``"attnlrp"`` (Achtibat et al.
2024) ``g_V·½``, ``g_Q·¼``, ``g_K·¼`` (uniform rule on the two bilinear products, the softmax keeps
its gradient); ``"cp_lrp"`` (Ali et al. 2022) P constant: ``g_V = Pᵀ g_O``, ``g_Q = g_K = None``.

Variants of the contract, in the kernels (constexprs ``WINDOWED``, ``CAUSAL``, ``ROTARY``; ``G`` an
integer):

* grouped K/V heads (EuroBERT, GQA): k and v ``[B, H/G, L, D]``, query head h reads K/V head h // G.
  The dK/dV program of a K/V head streams the query blocks of its G query heads in turn, so g_K and
  g_V of a shared head are the sum over the heads that read it (the reference's repeat, then sum),
  with no atomics.
* a sliding window (ModernBERT's local layers): query i reads key j only when |i − j| ≤ window; a
  padded query row keeps every real key (the reference's dense mask: no row is empty). Key blocks
  outside a query block's band are skipped (every real key is read by a block holding a padded
  row), and in dK/dV the query blocks outside the band that hold no padded row. A window of L − 1
  or more is no window.
* causal attention (decoders): query i reads key j ≤ i only, with a window also i − j ≤ window (the
  same band, one-sided; padded rows keep it too). Key blocks above the diagonal are never loaded:
  the forward's and dQ's key loop ends at the query block's last row, dK/dV's query loop starts at
  the key block's first column, and outside the band nothing is loaded either. Only the blocks that
  straddle the diagonal (or an edge of the band) apply an element mask: one loop body, whose
  run-time flag branches around the mask (two copies of the body — masked, unmasked loops — spilled
  registers in every dK/dV config, ``aot``). A padded query row ignores the key mask and reads every
  key j ≤ i of its band (the reference's dense causal mask: no row is empty; nothing reads it). A
  query block without padded rows skips the leading key blocks of left padding (the decoders'
  usual), and a key block of padding only is read by the padded rows alone.
* rotary positions ``(cos, sin)`` ``[B | 1, L, D]``: q and k tiles are rotated as they are loaded,
  ``x·cos + rotate_half(x)·sin`` in float32 rounded to the input dtype (the reference's half-split
  convention), and g_Q, g_K are rotated back by the transpose before they are stored (the rotation
  is linear: its rule is its gradient). For head dims that are powers of two ≥ 16 (the tile is the
  head), and on a GPU where ``configs.py`` lists the head dim for rotary (Hopper: 16–64; Ampere:
  none — the rotation's registers make every config spill there); otherwise the torch reference.

Kernels, each on a 1-D grid (B·H × blocks, the block index fastest; no 65,535 limit on B·H):
``_attention_forward_kernel`` (one program per query block), ``_attention_backward_dq_kernel`` (one
per query block, streaming key blocks; writes g_Q and Δ — launched first) and
``_attention_backward_dkdv_kernel`` (one per K/V head and key block, streaming query blocks; writes
g_K, g_V). No atomics. Outputs are laid out like the inputs (``empty_like``): for the model's head
views that is ``[B, L, H, D]`` memory, so merging heads and the gradients of the projections need no
copies. Keys after the last non-padding key of a sequence are skipped (their probabilities are
exactly 0). Matrix products take input-dtype operands and accumulate in float32; softmax statistics
are float32. float64 inputs, head dims past :data:`MAX_HEAD_DIM`, rotary positions where they have
no kernel (above), and shapes for which no config fits the GPU's shared memory go to the torch
reference, as does DeBERTa's disentangled attention (``disentangled_forward``/``_backward``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lrp_kernels.errors import BackendError
from lrp_kernels.backends.contract import ATTENTION_MODES, AttentionKernels
from lrp_kernels.backends.torch import attention as reference

from ._common import cast, dot_precision, mm, next_pow2, reduce_max, reduce_sum, stabilized_ratio, use_reference
from ._launch import Kernel
from .configs import ATTENTION_DKDV, ATTENTION_DQ, ATTENTION_FORWARD

MODES = ATTENTION_MODES
MAX_HEAD_DIM = 256
_PAD = tl.constexpr(torch.finfo(torch.float32).min)  # the additive mask at padding
_HALF_PAD = tl.constexpr(torch.finfo(torch.float32).min / 2)


@triton.jit
def _tile(ptr, b, h, s_b, s_h, s_row, s_col, rows, cols):
    """Pointers to the ``[rows, cols]`` tile of head (b, h) of a 4-D tensor (strides of its
    batch, head, row and column dimensions)."""
    return ptr + b * s_b + h * s_h + rows[:, None] * s_row + cols[None, :] * s_col


@triton.jit
def _positions(start, BLOCK: tl.constexpr, WIDE: tl.constexpr):
    """``start + [0, BLOCK)``: sequence positions, int64 when WIDE (a tensor whose row offsets
    ``position · row stride`` reach 2³¹ elements: long sequences of wide heads), else int32."""
    offs = tl.arange(0, BLOCK)
    if WIDE:
        offs = offs.to(tl.int64)
    return start + offs


@triton.jit
def _program(num_blocks, H):
    """``(b, h, block)`` of this program on the 1-D grid of B·H × blocks (block index fastest)."""
    pid = tl.program_id(0)
    bh = (pid // num_blocks).to(tl.int64)
    return bh // H, bh % H, pid % num_blocks, bh


@triton.jit
def _real_span(mask_ptr, b, smb, L, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    """``[first, end)``: the first key of sequence b that is not padding and one past the last. A real
    query reads no key outside (P is exactly 0 there). ``(0, L)`` without a mask or without such a
    key (a fully padded row attends uniformly to every key)."""
    first = 0
    end = L
    if HAS_MASK:
        offs = tl.arange(0, BLOCK)
        low = tl.full((BLOCK,), L, tl.int32)
        last = tl.full((BLOCK,), 0, tl.int32)
        for start in range(0, L, BLOCK):
            cols = start + offs
            real = tl.load(mask_ptr + b * smb + cols, mask=cols < L, other=_PAD) > _HALF_PAD
            low = tl.minimum(low, tl.where(real, cols, L))
            last = tl.maximum(last, tl.where(real, cols + 1, 0))
        found = reduce_max(last, 0)
        first = tl.where(found > 0, -reduce_max(-low, 0), 0)
        end = tl.where(found > 0, found, L)
    return first, end


@triton.jit
def _padded_rows(mask_ptr, b, smb, rows, row_ok, HAS_MASK: tl.constexpr, WINDOWED: tl.constexpr,
                 CAUSAL: tl.constexpr):
    """Which of ``rows`` are padding: with a window such a query reads every real key, in the band or
    not; in causal attention it ignores the key mask (reads every key j ≤ i in the band) — the
    reference's dense mask: no row is empty. All False without a mask, or without a window and
    causality (then a padded row reads the real keys like any other)."""
    pad = rows < 0
    if HAS_MASK:
        if WINDOWED:
            pad = tl.load(mask_ptr + b * smb + rows, mask=row_ok, other=0.0) <= _HALF_PAD
        if CAUSAL:
            pad = tl.load(mask_ptr + b * smb + rows, mask=row_ok, other=0.0) <= _HALF_PAD
    return pad


@triton.jit
def _band(ok, rows, cols, row_pad, window, WINDOWED: tl.constexpr, CAUSAL: tl.constexpr):
    """``ok`` and the variant's element mask for broadcastable query positions ``rows`` and key
    positions ``cols``: causal j ≤ i (with a window also i − j ≤ window, padded rows alike); a
    bidirectional window |i − j| ≤ window or query i padding (:func:`_padded_rows`). An unpadded query
    keeps its own key, so no row of the band is empty: outside it P is exactly 0 as with the dense
    mask."""
    dist = rows - cols
    if CAUSAL:
        ok = ok & (dist >= 0)
        if WINDOWED:
            ok = ok & (dist <= window)
    elif WINDOWED:
        ok = ok & (((dist <= window) & (dist >= -window)) | row_pad)
    return ok


@triton.jit
def _key_range(mask_ptr, b, smb, L, row0, row_pad, window, HAS_MASK: tl.constexpr, WINDOWED: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``[lo, hi)``: the keys the queries ``row0 …`` read (bidirectional) — up to the last real key
    (:func:`_real_span`); with a window the band ``[row0 − w, row0 + BLOCK_M + w)`` unless a row of the
    block is padding. ``lo`` is a multiple of BLOCK_N."""
    hi = _real_span(mask_ptr, b, smb, L, HAS_MASK, BLOCK_N)[1]
    lo = 0
    if WINDOWED:
        banded = reduce_max(row_pad.to(tl.float32), 0) == 0
        lo = tl.where(banded, tl.maximum(row0 - window, 0) // BLOCK_N * BLOCK_N, 0)
        hi = tl.where(banded, tl.minimum(row0 + BLOCK_M + window, hi), hi)
    return lo, hi


@triton.jit
def _blocks(lo, hi, BLOCK: tl.constexpr):
    """How many blocks of BLOCK from ``lo`` cover ``[lo, hi)`` (0 when empty). Causal loops run over
    ``range(0, _blocks(lo, hi))`` with the starts computed: a lower bound that comes from a mask scan
    keeps Triton's software pipelining from the loop."""
    return (tl.maximum(hi - lo, 0) + BLOCK - 1) // BLOCK


@triton.jit
def _causal_key_range(mask_ptr, b, smb, L, row0, row_pad, window, HAS_MASK: tl.constexpr, WINDOWED: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``(lo, inside, diagonal, hi)``: the keys the causal queries ``row0 … row0 + BLOCK_M − 1`` read lie
    in ``[lo, hi)`` — nothing above the block's last row, with a window nothing before
    ``row0 − window``, and for a block without padded rows nothing outside the real keys
    (:func:`_real_span`: left padding skips the leading blocks). The key blocks of ``[inside,
    diagonal)`` lie in the band for every row (no element mask); those before (the window's lower
    edge) and from ``diagonal`` on need one. All but ``hi`` are multiples of BLOCK_N."""
    row_end = tl.minimum(row0 + BLOCK_M, L)
    first, end = _real_span(mask_ptr, b, smb, L, HAS_MASK, BLOCK_N)
    real_rows = reduce_max(row_pad.to(tl.float32), 0) == 0
    lo = tl.where(real_rows, first // BLOCK_N * BLOCK_N, 0)
    hi = tl.where(real_rows, tl.minimum(row_end, end), row_end)
    diagonal = (row0 + 1) // BLOCK_N * BLOCK_N  # blocks before it end at or before row0: j ≤ i for all
    inside = lo
    if WINDOWED:
        lo = tl.maximum(lo, tl.maximum(row0 - window, 0) // BLOCK_N * BLOCK_N)
        # blocks from here on start at or after row_end − 1 − w: i − j ≤ w for all
        inside = tl.maximum(lo, (tl.maximum(row_end - 1 - window, 0) + BLOCK_N - 1) // BLOCK_N * BLOCK_N)
    return lo, inside, diagonal, hi


@triton.jit
def _padding_span(mask_ptr, b, smb, L, BLOCK: tl.constexpr):
    """``[first, last + 1)`` of the padded positions of sequence b (empty: ``(L, 0)``)."""
    offs = tl.arange(0, BLOCK)
    first = tl.full((BLOCK,), L, tl.int32)
    last = tl.full((BLOCK,), 0, tl.int32)
    for start in range(0, L, BLOCK):
        cols = start + offs
        pad = tl.load(mask_ptr + b * smb + cols, mask=cols < L, other=0.0) <= _HALF_PAD
        first = tl.minimum(first, tl.where(pad, cols, L))
        last = tl.maximum(last, tl.where(pad, cols + 1, 0))
    return -reduce_max(-first, 0), reduce_max(last, 0)


@triton.jit
def _query_range(mask_ptr, b, smb, L, col0, window, HAS_MASK: tl.constexpr, WINDOWED: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``(lo, hi, gap_lo, gap_hi)`` (bidirectional): the queries that read the keys ``col0 …`` lie in
    ``[lo, hi)`` (lo a multiple of BLOCK_M), none of them in ``[gap_lo, gap_hi)``. Nothing past the
    last real key; with a window, the band ``[col0 − w, col0 + BLOCK_N + w)`` and the padded rows
    (which read every real key), the gap between the two."""
    hi = tl.where(col0 < _real_span(mask_ptr, b, smb, L, HAS_MASK, BLOCK_N)[1], L, 0)
    lo = 0
    gap_lo = 0
    gap_hi = 0
    if WINDOWED:
        band_lo = tl.maximum(col0 - window, 0)
        band_hi = tl.minimum(col0 + BLOCK_N + window, L)
        pad_lo = L
        pad_hi = 0
        if HAS_MASK:
            pad_lo, pad_hi = _padding_span(mask_ptr, b, smb, L, BLOCK_M)
        padded = pad_lo < pad_hi
        lo = tl.where(padded, tl.minimum(band_lo, pad_lo), band_lo) // BLOCK_M * BLOCK_M
        hi = tl.minimum(hi, tl.where(padded, tl.maximum(band_hi, pad_hi), band_hi))
        gap_lo = tl.where(padded, tl.minimum(band_hi, pad_hi), 0)
        gap_hi = tl.where(padded, tl.maximum(band_lo, pad_lo), 0)
    return lo, hi, gap_lo, gap_hi


@triton.jit
def _causal_query_range(mask_ptr, b, smb, L, col0, key_bias, window, HAS_MASK: tl.constexpr, WINDOWED: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``(lo, inside, edge, hi)``: the causal queries that read the keys ``col0 … col0 + BLOCK_N − 1`` lie
    in ``[lo, hi)`` — none before the diagonal, with a window none past ``col_end − 1 + w``, and for
    a key block of padding only (``key_bias``) none past the last padded row (only padded rows read
    padded keys). The query blocks of ``[inside, edge)`` read every key of the block (no element
    mask); those before (the diagonal) and from ``edge`` on (the window's upper edge) need one. All
    but ``hi`` are multiples of BLOCK_M."""
    col_end = tl.minimum(col0 + BLOCK_N, L)
    lo = col0 // BLOCK_M * BLOCK_M
    inside = (col_end - 1 + BLOCK_M - 1) // BLOCK_M * BLOCK_M  # blocks from here on start at or after the last key
    hi = L
    edge = L
    if WINDOWED:
        hi = tl.minimum(L, col_end + window)
        edge = (col0 + window + 1) // BLOCK_M * BLOCK_M  # blocks before it end at or before col0 + w
    if HAS_MASK:
        no_real_key = reduce_max((key_bias > _HALF_PAD).to(tl.float32), 0) == 0
        hi = tl.where(no_real_key, tl.minimum(hi, _padding_span(mask_ptr, b, smb, L, BLOCK_M)[1]), hi)
    return lo, inside, edge, hi


@triton.jit
def _rotate_half(x):
    """``(−x₂, x₁)`` for the halves x₁, x₂ of the last dimension of a 2-D tile."""
    R: tl.constexpr = x.shape[0]
    D: tl.constexpr = x.shape[1]
    halves = tl.permute(tl.reshape(x, (R, 2, D // 2)), (0, 2, 1))  # [R, D/2, 2]
    x1, x2 = tl.split(halves)
    return tl.reshape(tl.permute(tl.join(-x2, x1), (0, 2, 1)), (R, D))


@triton.jit
def _rotate(x, cos_ptr, sin_ptr, b, rows, cols, ok, scb, scl, scd, sign):
    """``x·cos + sign·rotate_half(x)·sin`` in float32 for a ``[rows, D]`` tile (D = its width, so a
    power of two), cos and sin ``[B | 1, L, D]`` read at the rows' positions: the rotation on load
    (sign 1) or its transpose, which takes a gradient back (sign −1; the reference's half-split
    convention, ``backends/torch/attention.py``)."""
    cos = tl.load(_tile(cos_ptr, b, 0, scb, 0, scl, scd, rows, cols), mask=ok, other=0.0).to(tl.float32)
    sin = tl.load(_tile(sin_ptr, b, 0, scb, 0, scl, scd, rows, cols), mask=ok, other=0.0).to(tl.float32)
    xf = x.to(tl.float32)
    return xf * cos + sign * _rotate_half(xf) * sin


@triton.jit
def _on_load(x, cos_ptr, sin_ptr, b, rows, cols, ok, scb, scl, scd, ROTARY: tl.constexpr):
    """A ``[rows, D]`` tile of q or k as the product reads it: rotated by its positions when ROTARY,
    rounded back to the input dtype (as the reference does)."""
    if ROTARY:
        x = cast(_rotate(x, cos_ptr, sin_ptr, b, rows, cols, ok, scb, scl, scd, 1.0), x.dtype)
    return x


@triton.jit
def _loaded_t(ptr, b, h, s_b, s_h, s_row, s_col, rows, cols, row_ok, col_ok, cos_ptr, sin_ptr, scb, scl, scd,
              ROTARY: tl.constexpr):
    """The transpose ``[D, rows]`` of a tile of q or k as the product reads it (:func:`_on_load`)."""
    if ROTARY:
        ok = row_ok[:, None] & col_ok[None, :]
        x = tl.load(_tile(ptr, b, h, s_b, s_h, s_row, s_col, rows, cols), mask=ok, other=0.0)
        xt = tl.trans(_on_load(x, cos_ptr, sin_ptr, b, rows, cols, ok, scb, scl, scd, ROTARY))
    else:
        xt = tl.load(_tile(ptr, b, h, s_b, s_h, s_col, s_row, cols, rows), mask=col_ok[:, None] & row_ok[None, :],
                     other=0.0)
    return xt


@triton.jit
def _input_rule(grad, x, input_eps):
    """``grad · x/(x + ε·sign x)``: the ε-rule of the projection that produced x, applied once per
    element as the gradient is stored (the projection's own backward is then one GEMM); ``grad``
    unchanged for ε = 0. A run-time branch: one compiled kernel for both (a few instructions per
    output element, after the main loop)."""
    ratio = stabilized_ratio(x.to(tl.float32), tl.where(input_eps > 0, input_eps, 1.0))  # never 0/0
    return grad * tl.where(input_eps > 0, ratio, 1.0)


@triton.jit
def _stored_gradient(grad, factor, x, input_eps, cos_ptr, sin_ptr, b, rows, cols, ok, scb, scl, scd,
                     ROTARY: tl.constexpr):
    """A gradient as it is stored: times ``factor``, rotated back by the transposed rotation when
    ROTARY (the gradient of a linear map is its transpose), then the ε-rule of its input x."""
    grad = grad * factor
    if ROTARY:
        grad = _rotate(grad, cos_ptr, sin_ptr, b, rows, cols, ok, scb, scl, scd, -1.0)
    return _input_rule(grad, x, input_eps)


@triton.jit
def _row_bias(bias, row_pad, CAUSAL: tl.constexpr):
    """The additive key mask as a query row reads it: 0 for a padded row of causal attention (it
    ignores the key mask, :func:`_padded_rows`); ``bias`` and ``row_pad`` broadcastable."""
    if CAUSAL:
        bias = tl.where(row_pad, 0.0, bias)
    return bias


@triton.jit
def _scores(q, kt, mask_ptr, b, smb, cols, col_ok, row_pad, scale, HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr,
            DOT_PRECISION: tl.constexpr):
    """``scale · q kᵀ + mask`` of a [rows, keys] block (no element mask: the caller's)."""
    s = mm(q, kt, None, DOT_PRECISION) * scale
    if HAS_MASK:
        bias = tl.load(mask_ptr + b * smb + cols, mask=col_ok, other=0.0)
        s = s + _row_bias(bias[None, :], row_pad[:, None], CAUSAL)
    return s


@triton.jit
def _query_block(q_ptr, sqb, sqh, sql, sqd, H, L, D, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                 WIDE: tl.constexpr):
    """This program's block of query rows: ``(b, h, block, b·H + h)``, the rows and head-dim columns
    with their masks, and the q tile as stored (the forward and the dQ kernel start alike)."""
    b, h, pid_m, bh = _program((L + BLOCK_M - 1) // BLOCK_M, H)
    offs_m = _positions(pid_m * BLOCK_M, BLOCK_M, WIDE)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < L
    d_ok = offs_d < D
    qd_ok = row_ok[:, None] & d_ok[None, :]
    q = tl.load(_tile(q_ptr, b, h, sqb, sqh, sql, sqd, offs_m, offs_d), mask=qd_ok, other=0.0)
    return b, h, pid_m, bh, offs_m, offs_d, row_ok, d_ok, qd_ok, q


@triton.jit
def _forward_step(q, m_i, l_i, acc, start, offs_m, offs_n, offs_d, d_ok, row_pad, k_ptr, v_ptr, mask_ptr, cos_ptr,
                  sin_ptr, b, hk, skb, skh, skl, skd, svb, svh, svl, svd, smb, scb, scl, scd, L, window, scale,
                  masked, HAS_MASK: tl.constexpr, WINDOWED: tl.constexpr, CAUSAL: tl.constexpr,
                  ROTARY: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """The online softmax over the key block ``start …`` (K/V head ``hk``): ``(m, ℓ, acc)`` updated.
    ``masked`` (True, or a run-time flag of the causal loops): the element mask — keys past L,
    outside the window's band, above the diagonal; a block the caller knows to lie inside the band
    for every row goes without (one loop body: the flag branches around the mask alone)."""
    cols = start + offs_n
    col_ok = cols < L
    kt = _loaded_t(k_ptr, b, hk, skb, skh, skl, skd, cols, offs_d, col_ok, d_ok, cos_ptr, sin_ptr, scb, scl, scd,
                   ROTARY)
    s = _scores(q, kt, mask_ptr, b, smb, cols, col_ok, row_pad, scale, HAS_MASK, CAUSAL, DOT_PRECISION)
    if masked:
        ok = _band(col_ok[None, :], offs_m[:, None], cols[None, :], row_pad[:, None], window, WINDOWED, CAUSAL)
        s = tl.where(ok, s, float("-inf"))
    m_new = tl.maximum(m_i, reduce_max(s, 1))
    m_use = m_new
    if WINDOWED:  # a row may have no key of its band in this block yet: keep m = −inf, ℓ = 0
        m_use = tl.where(m_new > float("-inf"), m_new, 0.0)
    elif CAUSAL:
        m_use = tl.where(m_new > float("-inf"), m_new, 0.0)
    alpha = tl.exp(m_i - m_use)
    p = tl.exp(s - m_use[:, None])
    l_i = l_i * alpha + reduce_sum(p, 1)
    v = tl.load(_tile(v_ptr, b, hk, svb, svh, svl, svd, cols, offs_d), mask=col_ok[:, None] & d_ok[None, :], other=0.0)
    acc = mm(cast(p, v.dtype), v, acc * alpha[:, None], DOT_PRECISION)
    return m_new, l_i, acc


@triton.jit
def _attention_forward_kernel(
    q_ptr, k_ptr, v_ptr,  # *T q [B, H, L, D], k and v [B, H/G, L, D] inputs (any strides)
    mask_ptr,  # *f32 [B, L] additive key mask (read when HAS_MASK)
    cos_ptr, sin_ptr,  # *T' [B | 1, L, D] rotary cos and sin, same strides (read when ROTARY)
    o_ptr,  # *T   [B, H, L, D] output (any strides)
    m_ptr, ls_ptr,  # *f32 [B, H, L] row maxima m and log ℓ, contiguous
    sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, sob, soh, sol, sod,  # strides
    smb, scb, scl, scd,  # mask row stride; strides of cos and sin (batch 0 when shared)
    H, G, L, D,  # i32 query heads, query heads per K/V head, sequence length, head dim
    window,  # i32 sliding window: query i reads key j when |i − j| ≤ window (causal: 0 ≤ i − j ≤ window)
    scale,  # f32 score scale (1/√D)
    HAS_MASK: tl.constexpr,  # bool
    WINDOWED: tl.constexpr,  # bool: a sliding window narrower than L
    CAUSAL: tl.constexpr,  # bool: query i reads key j ≤ i only; key blocks above the diagonal are never loaded
    ROTARY: tl.constexpr,  # bool: q and k rotated on load (BLOCK_D = D)
    DOT_PRECISION: tl.constexpr,  # "ieee" / "tf32" for float32 operands
    WIDE: tl.constexpr,  # bool: int64 sequence positions (row offsets past 2³¹ elements)
    BLOCK_M: tl.constexpr,  # query rows per program
    BLOCK_N: tl.constexpr,  # keys per step
    BLOCK_D: tl.constexpr,  # power of two ≥ D (≥ 16)
):
    b, h, pid_m, bh, offs_m, offs_d, row_ok, d_ok, qd_ok, q = _query_block(q_ptr, sqb, sqh, sql, sqd, H, L, D,
                                                                            BLOCK_M, BLOCK_D, WIDE)
    offs_n = _positions(0, BLOCK_N, WIDE)
    q = _on_load(q, cos_ptr, sin_ptr, b, offs_m, offs_d, qd_ok, scb, scl, scd, ROTARY)
    row_pad = _padded_rows(mask_ptr, b, smb, offs_m, row_ok, HAS_MASK, WINDOWED, CAUSAL)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.full((BLOCK_M,), 0.0, dtype=tl.float32)
    acc = tl.full((BLOCK_M, BLOCK_D), 0.0, dtype=tl.float32)
    row0 = pid_m * BLOCK_M
    if CAUSAL:  # the key blocks up to this block's last row (in the band); the element mask only where needed
        lo, inside, diagonal, hi = _causal_key_range(mask_ptr, b, smb, L, row0, row_pad, window, HAS_MASK, WINDOWED,
                                                     BLOCK_M, BLOCK_N)
        for i in range(0, _blocks(lo, hi, BLOCK_N)):
            start = lo + i * BLOCK_N
            masked = (start < inside) | (start >= diagonal)  # the window's lower edge, the diagonal
            m_i, l_i, acc = _forward_step(q, m_i, l_i, acc, start, offs_m, offs_n, offs_d, d_ok, row_pad, k_ptr, v_ptr,
                                          mask_ptr, cos_ptr, sin_ptr, b, h // G, skb, skh, skl, skd, svb, svh, svl, svd,
                                          smb, scb, scl, scd, L, window, scale, masked, HAS_MASK, WINDOWED, CAUSAL,
                                          ROTARY, DOT_PRECISION)
    else:
        lo, hi = _key_range(mask_ptr, b, smb, L, row0, row_pad, window, HAS_MASK, WINDOWED, BLOCK_M, BLOCK_N)
        for start in range(lo, hi, BLOCK_N):
            m_i, l_i, acc = _forward_step(q, m_i, l_i, acc, start, offs_m, offs_n, offs_d, d_ok, row_pad, k_ptr, v_ptr,
                                          mask_ptr, cos_ptr, sin_ptr, b, h // G, skb, skh, skl, skd, svb, svh, svl, svd,
                                          smb, scb, scl, scd, L, window, scale, True, HAS_MASK, WINDOWED, CAUSAL,
                                          ROTARY, DOT_PRECISION)
    if WINDOWED:  # rows past L read no key of the band
        l_i = tl.where(l_i > 0, l_i, 1.0)
    tl.store(_tile(o_ptr, b, h, sob, soh, sol, sod, offs_m, offs_d), cast(acc / l_i[:, None], o_ptr.dtype.element_ty),
             mask=qd_ok)
    tl.store(m_ptr + bh * L + offs_m, m_i, mask=row_ok)
    tl.store(ls_ptr + bh * L + offs_m, tl.log(l_i), mask=row_ok)


@triton.jit
def _dq_step(qr, go, delta, lse_m, lse_l, gq, start, offs_m, offs_n, offs_d, row_ok, d_ok, row_pad, k_ptr, v_ptr,
             mask_ptr, cos_ptr, sin_ptr, b, hk, skb, skh, skl, skd, svb, svh, svl, svd, smb, scb, scl, scd, L, window,
             scale, masked, HAS_MASK: tl.constexpr, WINDOWED: tl.constexpr, CAUSAL: tl.constexpr,
             ROTARY: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """``g_Q`` plus what the key block ``start …`` (K/V head ``hk``) gives it, P recomputed from the
    saved statistics; ``masked`` as in :func:`_forward_step`."""
    cols = start + offs_n
    col_ok = cols < L
    kt = _loaded_t(k_ptr, b, hk, skb, skh, skl, skd, cols, offs_d, col_ok, d_ok, cos_ptr, sin_ptr, scb, scl, scd,
                   ROTARY)  # [D, N]
    vt = tl.load(_tile(v_ptr, b, hk, svb, svh, svd, svl, offs_d, cols), mask=d_ok[:, None] & col_ok[None, :],
                 other=0.0)  # [D, N]
    s = _scores(qr, kt, mask_ptr, b, smb, cols, col_ok, row_pad, scale, HAS_MASK, CAUSAL, DOT_PRECISION)
    if masked:
        ok = _band(row_ok[:, None] & col_ok[None, :], offs_m[:, None], cols[None, :], row_pad[:, None], window,
                   WINDOWED, CAUSAL)
        s = tl.where(ok, s, float("-inf"))
    p = tl.exp((s - lse_m[:, None]) - lse_l[:, None])
    ds = p * (mm(go, vt, None, DOT_PRECISION) - delta[:, None])
    return mm(cast(ds, kt.dtype), tl.trans(kt), gq, DOT_PRECISION)


@triton.jit
def _attention_backward_dq_kernel(
    q_ptr, k_ptr, v_ptr,  # *T q [B, H, L, D], k and v [B, H/G, L, D] forward inputs (any strides)
    o_ptr,  # *T   [B, H, L, D] forward output (any strides)
    g_ptr,  # *T   [B, H, L, D] gradient at the output (any strides)
    mask_ptr,  # *f32 [B, L] additive key mask (read when HAS_MASK)
    cos_ptr, sin_ptr,  # *T' [B | 1, L, D] rotary cos and sin, same strides (read when ROTARY)
    m_ptr, ls_ptr,  # *f32 [B, H, L] saved row maxima and log ℓ
    delta_ptr,  # *f32 [B, H, L] Δ = rowsum(g_O ⊙ O), written here for the dK/dV kernel
    gq_ptr,  # *T  [B, H, L, D] output g_Q (any strides)
    sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, sob, soh, sol, sod,  # strides
    sgb, sgh, sgl, sgd, sqgb, sqgh, sqgl, sqgd,  # strides of g_O and g_Q
    smb, scb, scl, scd,  # mask row stride; strides of cos and sin (batch 0 when shared)
    H, G, L, D,  # i32 query heads, query heads per K/V head, sequence length, head dim
    window,  # i32 sliding window (read when WINDOWED)
    scale,  # f32 score scale
    qk_factor,  # f32 factor on g_Q (scale · ¼ for attnlrp, scale for grad)
    input_eps,  # f32 ε of the projection that produced q: g_Q times its ε-ratio of q (0: none)
    HAS_MASK: tl.constexpr,  # bool
    WINDOWED: tl.constexpr,  # bool: a sliding window narrower than L
    CAUSAL: tl.constexpr,  # bool: key blocks above the diagonal are never loaded
    ROTARY: tl.constexpr,  # bool: q and k rotated on load, g_Q rotated back (BLOCK_D = D)
    DOT_PRECISION: tl.constexpr,  # "ieee" / "tf32" for float32 operands
    WIDE: tl.constexpr,  # bool: int64 sequence positions (row offsets past 2³¹ elements)
    BLOCK_M: tl.constexpr,  # query rows per program
    BLOCK_N: tl.constexpr,  # keys per step
    BLOCK_D: tl.constexpr,  # power of two ≥ D
):
    b, h, pid_m, bh, offs_m, offs_d, row_ok, d_ok, qd_ok, q = _query_block(q_ptr, sqb, sqh, sql, sqd, H, L, D,
                                                                            BLOCK_M, BLOCK_D, WIDE)
    offs_n = _positions(0, BLOCK_N, WIDE)
    qr = _on_load(q, cos_ptr, sin_ptr, b, offs_m, offs_d, qd_ok, scb, scl, scd, ROTARY)
    go = tl.load(_tile(g_ptr, b, h, sgb, sgh, sgl, sgd, offs_m, offs_d), mask=qd_ok, other=0.0)
    o = tl.load(_tile(o_ptr, b, h, sob, soh, sol, sod, offs_m, offs_d), mask=qd_ok, other=0.0)
    delta = reduce_sum(go.to(tl.float32) * o.to(tl.float32), 1)
    stat = bh * L + offs_m
    tl.store(delta_ptr + stat, delta, mask=row_ok)
    lse_m = tl.load(m_ptr + stat, mask=row_ok, other=0.0)
    lse_l = tl.load(ls_ptr + stat, mask=row_ok, other=0.0)
    row_pad = _padded_rows(mask_ptr, b, smb, offs_m, row_ok, HAS_MASK, WINDOWED, CAUSAL)
    gq = tl.full((BLOCK_M, BLOCK_D), 0.0, dtype=tl.float32)
    row0 = pid_m * BLOCK_M
    if CAUSAL:  # the key blocks up to this block's last row (in the band); the element mask only where needed
        lo, inside, diagonal, hi = _causal_key_range(mask_ptr, b, smb, L, row0, row_pad, window, HAS_MASK, WINDOWED,
                                                     BLOCK_M, BLOCK_N)
        for i in range(0, _blocks(lo, hi, BLOCK_N)):
            start = lo + i * BLOCK_N
            masked = (start < inside) | (start >= diagonal)  # the window's lower edge, the diagonal
            gq = _dq_step(qr, go, delta, lse_m, lse_l, gq, start, offs_m, offs_n, offs_d, row_ok, d_ok, row_pad, k_ptr,
                          v_ptr, mask_ptr, cos_ptr, sin_ptr, b, h // G, skb, skh, skl, skd, svb, svh, svl, svd, smb,
                          scb, scl, scd, L, window, scale, masked, HAS_MASK, WINDOWED, CAUSAL, ROTARY, DOT_PRECISION)
    else:
        lo, hi = _key_range(mask_ptr, b, smb, L, row0, row_pad, window, HAS_MASK, WINDOWED, BLOCK_M, BLOCK_N)
        for start in range(lo, hi, BLOCK_N):
            gq = _dq_step(qr, go, delta, lse_m, lse_l, gq, start, offs_m, offs_n, offs_d, row_ok, d_ok, row_pad, k_ptr,
                          v_ptr, mask_ptr, cos_ptr, sin_ptr, b, h // G, skb, skh, skl, skd, svb, svh, svl, svd, smb,
                          scb, scl, scd, L, window, scale, True, HAS_MASK, WINDOWED, CAUSAL, ROTARY, DOT_PRECISION)
    gq = _stored_gradient(gq, qk_factor, q, input_eps, cos_ptr, sin_ptr, b, offs_m, offs_d, qd_ok, scb, scl, scd,
                          ROTARY)
    tl.store(_tile(gq_ptr, b, h, sqgb, sqgh, sqgl, sqgd, offs_m, offs_d), cast(gq, gq_ptr.dtype.element_ty), mask=qd_ok)


@triton.jit
def _probabilities_t(k, qt, key_bias, pad_keys, mask_ptr, b, smb, row_pad, m_ptr, ls_ptr, stat, rows, row_ok, offs_n,
                     col_ok, window, scale, masked, HAS_MASK: tl.constexpr, WINDOWED: tl.constexpr,
                     CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Pᵀ of a [keys, queries] block, ``exp(Sᵀ − m − log ℓ)`` from the saved row statistics; when
    ``masked`` 0 outside the element mask (:func:`_band`). Causal: the padded rows ignore the key
    mask, looked up only when the key block holds padded keys (``pad_keys``)."""
    st = mm(k, qt, None, DOT_PRECISION) * scale
    if HAS_MASK:
        if CAUSAL:
            if pad_keys:
                pad = _padded_rows(mask_ptr, b, smb, rows, row_ok, HAS_MASK, False, CAUSAL)
                st = st + _row_bias(key_bias[:, None], pad[None, :], CAUSAL)
            else:
                st = st + key_bias[:, None]
        else:
            st = st + key_bias[:, None]
    if masked:
        ok = _band(col_ok[:, None] & row_ok[None, :], rows[None, :], offs_n[:, None], row_pad[None, :], window,
                   WINDOWED, CAUSAL)
        st = tl.where(ok, st, float("-inf"))
    lse_m = tl.load(m_ptr + stat, mask=row_ok, other=0.0)
    lse_l = tl.load(ls_ptr + stat, mask=row_ok, other=0.0)
    return tl.exp((st - lse_m[None, :]) - lse_l[None, :])


@triton.jit
def _dkdv_step(q_ptr, g_ptr, mask_ptr, cos_ptr, sin_ptr, m_ptr, ls_ptr, delta_ptr, b, h, rows, k, v, key_bias,
               pad_keys, offs_n, col_ok, offs_d, d_ok, gk, gv, sqb, sqh, sql, sqd, sgb, sgh, sgl, sgd, smb, scb, scl,
               scd, H, L, window, scale, masked, HAS_MASK: tl.constexpr, WINDOWED: tl.constexpr, CAUSAL: tl.constexpr,
               ROTARY: tl.constexpr, COMPUTE_QK: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """``(g_K, g_V)`` of a key block plus what the query ``rows`` of head h give it (k rotated);
    ``masked`` as in :func:`_forward_step`, ``pad_keys`` as in :func:`_probabilities_t`."""
    row_ok = rows < L
    qt = _loaded_t(q_ptr, b, h, sqb, sqh, sql, sqd, rows, offs_d, row_ok, d_ok, cos_ptr, sin_ptr, scb, scl, scd,
                   ROTARY)  # [D, M]
    go = tl.load(_tile(g_ptr, b, h, sgb, sgh, sgl, sgd, rows, offs_d), mask=row_ok[:, None] & d_ok[None, :],
                 other=0.0)
    stat = (b * H + h) * L + rows
    row_pad = _padded_rows(mask_ptr, b, smb, rows, row_ok, HAS_MASK, WINDOWED, False)  # the bidirectional band's
    pt = _probabilities_t(k, qt, key_bias, pad_keys, mask_ptr, b, smb, row_pad, m_ptr, ls_ptr, stat, rows, row_ok,
                          offs_n, col_ok, window, scale, masked, HAS_MASK, WINDOWED, CAUSAL, DOT_PRECISION)
    gv = mm(cast(pt, go.dtype), go, gv, DOT_PRECISION)
    if COMPUTE_QK:
        delta = tl.load(delta_ptr + stat, mask=row_ok, other=0.0)
        dst = pt * (mm(v, tl.trans(go), None, DOT_PRECISION) - delta[None, :])  # g_Sᵀ block [N, M]
        gk = mm(cast(dst, qt.dtype), tl.trans(qt), gk, DOT_PRECISION)
    return gk, gv


@triton.jit
def _attention_backward_dkdv_kernel(
    q_ptr, k_ptr, v_ptr,  # *T q [B, H, L, D], k and v [B, H/G, L, D] forward inputs (any strides)
    g_ptr,  # *T   [B, H, L, D] gradient at the output (any strides)
    mask_ptr,  # *f32 [B, L] additive key mask (read when HAS_MASK)
    cos_ptr, sin_ptr,  # *T' [B | 1, L, D] rotary cos and sin, same strides (read when ROTARY)
    m_ptr, ls_ptr,  # *f32 [B, H, L] saved row maxima and log ℓ
    delta_ptr,  # *f32 [B, H, L] Δ (read when COMPUTE_QK)
    gk_ptr, gv_ptr,  # *T [B, H/G, L, D] outputs g_K (written when COMPUTE_QK), g_V (any strides)
    sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, sgb, sgh, sgl, sgd,  # input strides
    skgb, skgh, skgl, skgd, svgb, svgh, svgl, svgd,  # strides of g_K and g_V
    smb, scb, scl, scd,  # mask row stride; strides of cos and sin (batch 0 when shared)
    H, G, L, D,  # i32 query heads, query heads per K/V head (each program sums their gradients), L, head dim
    window,  # i32 sliding window (read when WINDOWED)
    scale,  # f32 score scale
    qk_factor,  # f32 factor on g_K (scale · ¼ for attnlrp, scale for grad)
    v_factor,  # f32 factor on g_V (½ for attnlrp, 1 otherwise)
    input_eps,  # f32 ε of the projections that produced k, v: g_K, g_V times their ε-ratios (0: none)
    HAS_MASK: tl.constexpr,  # bool
    WINDOWED: tl.constexpr,  # bool: a sliding window narrower than L
    CAUSAL: tl.constexpr,  # bool: query blocks before the diagonal are never loaded
    ROTARY: tl.constexpr,  # bool: q and k rotated on load, g_K rotated back (BLOCK_D = D)
    COMPUTE_QK: tl.constexpr,  # False for cp_lrp (g_V only)
    DOT_PRECISION: tl.constexpr,  # "ieee" / "tf32" for float32 operands
    WIDE: tl.constexpr,  # bool: int64 sequence positions (row offsets past 2³¹ elements)
    BLOCK_M: tl.constexpr,  # query rows per step
    BLOCK_N: tl.constexpr,  # keys per program
    BLOCK_D: tl.constexpr,  # power of two ≥ D
):
    b, hk, pid_n, _ = _program((L + BLOCK_N - 1) // BLOCK_N, H // G)
    offs_n = _positions(pid_n * BLOCK_N, BLOCK_N, WIDE)
    offs_m = _positions(0, BLOCK_M, WIDE)
    offs_d = tl.arange(0, BLOCK_D)
    col_ok = offs_n < L
    d_ok = offs_d < D
    kv_ok = col_ok[:, None] & d_ok[None, :]
    k = tl.load(_tile(k_ptr, b, hk, skb, skh, skl, skd, offs_n, offs_d), mask=kv_ok, other=0.0)
    kr = _on_load(k, cos_ptr, sin_ptr, b, offs_n, offs_d, kv_ok, scb, scl, scd, ROTARY)
    v = tl.load(_tile(v_ptr, b, hk, svb, svh, svl, svd, offs_n, offs_d), mask=kv_ok, other=0.0)
    key_bias = tl.full((BLOCK_N,), 0.0, dtype=tl.float32)
    if HAS_MASK:
        key_bias = tl.load(mask_ptr + b * smb + offs_n, mask=col_ok, other=0.0)
    pad_keys = reduce_max((key_bias <= _HALF_PAD).to(tl.float32), 0) > 0  # this key block holds padding
    gk = tl.full((BLOCK_N, BLOCK_D), 0.0, dtype=tl.float32)
    gv = tl.full((BLOCK_N, BLOCK_D), 0.0, dtype=tl.float32)
    if CAUSAL:  # the query blocks from the diagonal on (in the band); the element mask only where needed
        lo, inside, edge, hi = _causal_query_range(mask_ptr, b, smb, L, pid_n * BLOCK_N, key_bias, window, HAS_MASK,
                                                   WINDOWED, BLOCK_M, BLOCK_N)
        for h in range(hk * G, hk * G + G):  # the query heads that share this K/V head: their sum, no atomics
            for i in range(0, _blocks(lo, hi, BLOCK_M)):
                start = lo + i * BLOCK_M
                masked = (start < inside) | (start >= edge)  # the diagonal, the window's upper edge
                gk, gv = _dkdv_step(q_ptr, g_ptr, mask_ptr, cos_ptr, sin_ptr, m_ptr, ls_ptr, delta_ptr, b, h,
                                    start + offs_m, kr, v, key_bias, pad_keys, offs_n, col_ok, offs_d, d_ok, gk, gv,
                                    sqb, sqh, sql, sqd, sgb, sgh, sgl, sgd, smb, scb, scl, scd, H, L, window, scale,
                                    masked, HAS_MASK, WINDOWED, CAUSAL, ROTARY, COMPUTE_QK, DOT_PRECISION)
    else:
        lo, hi, gap_lo, gap_hi = _query_range(mask_ptr, b, smb, L, pid_n * BLOCK_N, window, HAS_MASK, WINDOWED,
                                              BLOCK_M, BLOCK_N)
        for h in range(hk * G, hk * G + G):  # the query heads that share this K/V head: their sum, no atomics
            for start in range(lo, hi, BLOCK_M):
                needed = True
                if WINDOWED:  # not in the gap: rows outside the band, none of them padding
                    needed = (start < gap_lo) | (start + BLOCK_M > gap_hi)
                if needed:
                    gk, gv = _dkdv_step(q_ptr, g_ptr, mask_ptr, cos_ptr, sin_ptr, m_ptr, ls_ptr, delta_ptr, b, h,
                                        start + offs_m, kr, v, key_bias, pad_keys, offs_n, col_ok, offs_d, d_ok, gk,
                                        gv, sqb, sqh, sql, sqd, sgb, sgh, sgl, sgd, smb, scb, scl, scd, H, L, window,
                                        scale, True, HAS_MASK, WINDOWED, CAUSAL, ROTARY, COMPUTE_QK, DOT_PRECISION)
    gv = _input_rule(gv * v_factor, v, input_eps)
    tl.store(_tile(gv_ptr, b, hk, svgb, svgh, svgl, svgd, offs_n, offs_d), cast(gv, gv_ptr.dtype.element_ty),
             mask=kv_ok)
    if COMPUTE_QK:
        gk = _stored_gradient(gk, qk_factor, k, input_eps, cos_ptr, sin_ptr, b, offs_n, offs_d, kv_ok, scb, scl,
                              scd, ROTARY)
        tl.store(_tile(gk_ptr, b, hk, skgb, skgh, skgl, skgd, offs_n, offs_d), cast(gk, gk_ptr.dtype.element_ty),
                 mask=kv_ok)


FORWARD = Kernel(_attention_forward_kernel, ATTENTION_FORWARD, buckets=("L",))
BACKWARD_DQ = Kernel(_attention_backward_dq_kernel, ATTENTION_DQ, buckets=("L",))
BACKWARD_DKDV = Kernel(_attention_backward_dkdv_kernel, ATTENTION_DKDV, buckets=("L",))


def _grid(blocks: str, bsz: int, heads: int, length: int):
    """The 1-D grid of B·H × ``ceil(L / meta[blocks])`` programs."""
    return lambda meta: (bsz * heads * triton.cdiv(length, meta[blocks]),)


def _check_mode(mode):
    if mode not in MODES:
        raise BackendError(f"unknown attention mode {mode!r}; valid: {', '.join(MODES)}")


def _shapes_fit(q, k, v) -> bool:
    """q [B, H, L, D], k and v [B, H_kv, L, D] with H a multiple of H_kv."""
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape or k.shape[1] == 0:
        return False
    return k.shape[::2] == q.shape[::2] and k.shape[3] == q.shape[3] and q.shape[1] % k.shape[1] == 0


def _check(q, k, v, mask):
    if not _shapes_fit(q, k, v):
        raise BackendError(
            f"q, k, v must all have shape [B, H, L, D] (k and v may have H_kv heads, H % H_kv = 0), got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise BackendError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if mask is not None and tuple(mask.shape) != (q.shape[0], q.shape[2]):
        raise BackendError(f"mask must have shape [B, L] = [{q.shape[0]}, {q.shape[2]}], got {tuple(mask.shape)}")


def runs_reference(q: torch.Tensor, rotary=None, causal=False) -> bool:
    """Whether attention on tensors like ``q`` goes to the torch reference: float64, a head dim past
    :data:`MAX_HEAD_DIM`, ``rotary`` positions with a head dim that is not a power of two ≥ 16 (the
    kernels rotate a whole ``BLOCK_D`` tile), or no config of some kernel fits this GPU for the head
    dim (and rotary: ``configs.py`` lists rotary head dims per GPU generation; ``causal`` launches
    have a table of their own where the plain configs spill) — the same answer in the forward and
    the backward, which must agree on who saved what. Grouped K/V heads, windows and causal
    attention as such run in the kernels."""
    dim = q.shape[-1]
    if use_reference(q) or dim > MAX_HEAD_DIM or (rotary is not None and next_pow2(dim) != dim):
        return True
    named = {"q_ptr": q, "BLOCK_D": next_pow2(dim), "ROTARY": rotary is not None, "CAUSAL": bool(causal),
             "cos_ptr": rotary[0] if rotary is not None else q}
    return not all(kernel.candidates(q.device, named) for kernel in (FORWARD, BACKWARD_DQ, BACKWARD_DKDV))


#: offsets within one head from this many elements on index the sequence in int64 (:func:`_wide`)
WIDE_ELEMENTS = 2**31


def _wide(*tensors) -> bool:
    """Whether the offsets within one head of some tensor (its last two dims: positions, head dim or
    rotary columns) reach :data:`WIDE_ELEMENTS`: then the kernels compute positions in int64 (batch
    and head offsets always are). About L·H·D ≥ 2³¹ for the model's [B, L, H, D] head views."""
    return any(sum((n - 1) * abs(st) for n, st in zip(t.shape[-2:], t.stride()[-2:])) >= WIDE_ELEMENTS
               for t in tensors)


def _mask_arg(mask, like):
    if mask is None:
        return like, 0, False
    m = mask.to(torch.float32)
    if m.stride(-1) != 1:
        m = m.contiguous()
    return m, m.stride(0), True


def _rotary_arg(rotary, q, like):
    """``(cos, sin, (batch, row, column strides))`` of ``rotary`` for the kernels (``like`` and zero
    strides without): two tensors of the same strides, the batch stride 0 when shared."""
    if rotary is None:
        return like, like, (0, 0, 0)
    cos, sin = rotary
    batch, _, length, dim = q.shape
    if cos.shape != sin.shape or cos.dim() != 3 or cos.shape[0] not in (1, batch) or cos.shape[1:] != (length, dim):
        raise BackendError(f"rotary cos and sin must have shape [B | 1, L, D] = [{batch} | 1, {length}, {dim}], got "
                           f"{tuple(cos.shape)}, {tuple(sin.shape)}")
    if cos.dtype == torch.float64:
        cos, sin = cos.float(), sin.float()
    if cos.stride() != sin.stride():
        cos, sin = cos.contiguous(), sin.contiguous()
    return cos, sin, (cos.stride(0) if cos.shape[0] > 1 else 0, cos.stride(1), cos.stride(2))


def _variant_args(q, k, window, rotary, causal, like):
    """What the kernels take for the variants: ``(pointers cos, sin; ints scb, scl, scd, G, window;
    constexprs)``. A window of L − 1 or more keeps every key: no band (causal or not)."""
    if window is not None and window < 0:
        raise BackendError(f"window must be >= 0, got {window}")
    windowed = window is not None and window < q.shape[2] - 1
    cos, sin, strides = _rotary_arg(rotary, q, like)
    ints = (*strides, q.shape[1] // k.shape[1], int(window) if windowed else 0)
    return (cos, sin), ints, dict(WINDOWED=windowed, CAUSAL=bool(causal), ROTARY=rotary is not None)


def forward(q, k, v, mask, scale: float, mode: str, window=None, rotary=None, causal=False):
    """``(O, saved)``: softmax(scale·QKᵀ + mask)·V without materializing P; O is laid out like q.

    ``saved`` is ``(O, row_max, row_log_sum)`` for ``grad``/``attnlrp`` and ``(row_max,
    row_log_sum)`` for ``cp_lrp`` (whose backward recomputes P from q and k and needs no O). Grouped
    K/V heads, a sliding ``window``, ``causal`` masking and ``rotary`` positions run in the kernels
    (rotary: for head dims that are powers of two, see :func:`runs_reference`).
    """
    _check_mode(mode)
    _check(q, k, v, mask)
    if runs_reference(q, rotary, causal):
        return reference.forward(q, k, v, mask, scale, mode, window, rotary, causal)
    bsz, heads, length, dim = q.shape
    out = torch.empty_like(q)
    row_max = torch.empty((bsz, heads, length), dtype=torch.float32, device=q.device)
    row_log_sum = torch.empty_like(row_max)
    if out.numel():
        mask_t, smb, has_mask = _mask_arg(mask, row_max)
        rot, (scb, scl, scd, groups, win), flags = _variant_args(q, k, window, rotary, causal, row_max)
        FORWARD[_grid("BLOCK_M", bsz, heads, length)](
            q, k, v, mask_t, *rot, out, row_max, row_log_sum,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(), smb, scb, scl, scd, heads, groups, length, dim, win,
            float(scale), HAS_MASK=has_mask, **flags, DOT_PRECISION=dot_precision(q.dtype),
            WIDE=_wide(q, k, v, out, *(rotary or ())), BLOCK_D=next_pow2(dim),
        )
    stats = (row_max, row_log_sum)
    return out, (stats if mode == "cp_lrp" else (out, *stats))


def _saved_stats(saved, compute_qk):
    want = 3 if compute_qk else 2
    if len(saved) != want:
        names = "(out, row_max, row_log_sum)" if compute_qk else "(row_max, row_log_sum)"
        raise BackendError(f"attention_backward needs the {names} of the Triton forward")
    return (None, *saved) if not compute_qk else saved


def backward(grad_out, q, k, v, mask, scale: float, mode: str, saved, window=None, rotary=None,
             input_eps: float = 0.0, causal=False):
    """``(g_Q, g_K, g_V)`` of the mode (g_Q = g_K = None for ``cp_lrp``), each laid out like its input
    and, with ``input_eps``, multiplied by the ε-ratio of its input in the kernel that writes it;
    g_K and g_V of a shared K/V head summed over its query heads, g_Q and g_K rotated back."""
    _check_mode(mode)
    _check(q, k, v, mask)
    if runs_reference(q, rotary, causal):  # the forward was the reference's
        return reference.backward(grad_out, q, k, v, mask, scale, mode, saved, window, rotary, input_eps, causal)
    compute_qk = mode != "cp_lrp"
    out, row_max, row_log_sum = _saved_stats(saved, compute_qk)
    if grad_out.shape != q.shape:
        raise BackendError(f"grad_out must have shape {tuple(q.shape)}, got {tuple(grad_out.shape)}")
    gv = torch.empty_like(v)
    gq, gk = (torch.empty_like(q), torch.empty_like(k)) if compute_qk else (None, None)
    if gv.numel() == 0:
        return gq, gk, gv
    bsz, heads, length, dim = q.shape
    mask_t, smb, has_mask = _mask_arg(mask, row_max)
    rot, (scb, scl, scd, groups, win), flags = _variant_args(q, k, window, rotary, causal, row_max)
    common = dict(HAS_MASK=has_mask, **flags, DOT_PRECISION=dot_precision(q.dtype),
                  WIDE=_wide(q, k, v, grad_out, gv, *(rotary or ()), *(t for t in (out, gq, gk) if t is not None)),
                  BLOCK_D=next_pow2(dim))
    sizes = (smb, scb, scl, scd, heads, groups, length, dim, win, float(scale))
    qk_factor = scale * (0.25 if mode == "attnlrp" else 1.0)
    delta = torch.empty_like(row_max) if compute_qk else row_max
    if compute_qk:  # first: it writes Δ
        BACKWARD_DQ[_grid("BLOCK_M", bsz, heads, length)](
            q, k, v, out, grad_out, mask_t, *rot, row_max, row_log_sum, delta, gq,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(), *grad_out.stride(), *gq.stride(), *sizes,
            float(qk_factor), float(input_eps), **common,
        )
    BACKWARD_DKDV[_grid("BLOCK_N", bsz, k.shape[1], length)](
        q, k, v, grad_out, mask_t, *rot, row_max, row_log_sum, delta, gk if compute_qk else gv, gv,
        *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), *(gk if compute_qk else gv).stride(), *gv.stride(),
        *sizes, float(qk_factor), 0.5 if mode == "attnlrp" else 1.0, float(input_eps), COMPUTE_QK=compute_qk, **common,
    )
    return gq, gk, gv


KERNELS = AttentionKernels(
    forward=forward,
    backward=backward,
    disentangled_forward=reference.disentangled_forward,
    disentangled_backward=reference.disentangled_backward,
)
