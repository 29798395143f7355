"""Torch reference of the attention rules (math: ``lrp_kernels/ops/attention.py``).

On the CPU the forward is aten's fused attention (the kernel behind
``F.scaled_dot_product_attention``): bit for bit the plain model's forward, and no [B, H, L, L]
tensor is stored; ``grad`` and ``attnlrp`` take its fused backward (attnlrp's is the plain one
scaled by powers of two, exactly), ``cp_lrp`` recomputes P. On CUDA the forward and the backward are
``F.scaled_dot_product_attention`` and its autograd backward (PyTorch's fused kernels: with a mask,
the memory-efficient one), the backward scaled by ¼/¼/½ for attnlrp and only g_V (which is Pᵀ g_O)
kept for cp_lrp. Elsewhere, and for a batch with a fully padded sequence, the eager path stores P
(the fused kernels' log-sum-exp of a row whose keys are all masked drops the log L of the uniform
row, so their backward is wrong there; aten's float16 CPU forward does not give such a row the
uniform softmax): that path's stored P is [L, L] per sequence (per chunk on the chunked path).

The variants of the contract: a sliding ``window`` and ``causal`` attention run in chunks of query
rows (:func:`chunks`), each with the slice of keys its rows read and its block of the additive mask
(:func:`dense_mask` with ``rows``/``keys``), through the same fused kernels (SDPA's memory-efficient
kernel on CUDA): no [L, L] tensor (a chunk that holds a padded row reads every key without
``causal``); cp_lrp's recomputed P comes in row chunks too. ``rotary`` rotates q and k on load and its transpose rotates their gradients
back (:func:`apply_rotary`, :func:`rotary_transposed`); grouped K/V heads are repeated for the
product and their gradients summed over the group; ``input_eps`` multiplies each gradient by the
ε-ratio of its input (the rule of the linears that made q, k, v, applied here once per element so
that their own backward is a plain GEMM). DeBERTa's disentangled attention
(:func:`disentangled_forward`) and soft-capped scores (``softcap``, Gemma 2: :func:`softcap_forward`) are
eager: the relative terms need P's gradient, and no fused kernel caps the scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrp_kernels.backends.contract import AttentionKernels

from ._common import acc
from .linear import eps_ratio


def softmax_forward(scores, mask, scale):
    """``softmax(scores·scale + mask)`` over the last dim, for [B, H, Lq, Lk] scores and an additive
    mask [B, Lk] (per key) or [B | 1, 1, Lq, Lk] (:func:`dense_mask`)."""
    s = acc(scores) * scale
    if mask is not None:
        s.add_((mask if mask.dim() == 4 else mask[:, None, None, :]).to(s.dtype))
    return torch.softmax(s, dim=-1).to(scores.dtype)


def softmax_backward(grad_p, probs, factor):
    """``factor · p ⊙ (g − Σ_k p·g)``: the softmax gradient, scaled."""
    g = acc(grad_p)
    p = acc(probs)
    gp = p * g
    out = gp - p * gp.sum(dim=-1, keepdim=True)
    if factor != 1.0:
        out = out * factor
    return out.to(grad_p.dtype)


def _flash_mask(mask, dtype):
    """The additive mask ([B, L] or dense) as aten's CPU flash attention takes it: 4-d, q's dtype."""
    if mask is None:
        return None
    if torch.finfo(dtype).max < torch.finfo(mask.dtype).max:  # float16: keep padding finite
        mask = mask.clamp(min=torch.finfo(dtype).min)
    return mask.to(dtype) if mask.dim() == 4 else mask.to(dtype)[:, None, None, :]


def dense_mask(mask, window, length, device=None, causal=False, rows=None, keys=None):
    """The additive float32 mask of a sliding ``window`` (|i − j| ≤ window), of ``causal`` attention
    (j ≤ i) or both, and the key mask [B, L]: [B | 1, 1, L, L] (the contract's rules of
    ``lrp_kernels.backends.contract``). A padded query row keeps every unpadded key without
    ``causal`` and ignores the key mask with it (every key j ≤ i in the band), so that no row is
    empty (it carries no relevance: nothing reads a padded position). Neither ``window`` nor
    ``causal``: ``mask`` unchanged. ``rows=(i0, i1)``, ``keys=(k0, k1)``: only that block of it,
    [B | 1, 1, i1 − i0, k1 − k0] (the chunked path)."""
    if window is None and not causal:
        return mask if rows is None and keys is None else _block(mask, rows, keys, length)
    device = mask.device if mask is not None else device
    (i0, i1), (k0, k1) = rows or (0, length), keys or (0, length)
    dist = torch.arange(i0, i1, device=device)[:, None] - torch.arange(k0, k1, device=device)[None, :]  # i − j
    keep = torch.ones(dist.shape, dtype=torch.bool, device=device)
    if window is not None:
        keep &= dist.abs() <= window
    if causal:
        keep &= dist >= 0
    if mask is None:
        keep = keep[None]
    else:
        real = mask > torch.finfo(torch.float32).min / 2  # [B, L]
        key, padded_row = real[:, None, k0:k1], ~real[:, i0:i1, None]
        keep = keep[None] & (key | padded_row) if causal else key & (keep[None] | padded_row)
    zeros = torch.zeros(keep.shape, dtype=torch.float32, device=device)
    return zeros.masked_fill_(~keep, torch.finfo(torch.float32).min)[:, None]


def _block(mask, rows, keys, length):
    """The per-key mask [B, L] as the block (rows, keys) of its [B, 1, L, L] broadcast: [B, 1, 1, k1 − k0]."""
    if mask is None:
        return None
    k0, k1 = keys or (0, length)
    return mask[:, None, None, k0:k1]


#: float32 elements of one chunk's [B, H, rows, keys] scores on the chunked path (128 MiB)
CHUNK_ELEMENTS = 1 << 25


def chunks(mask, window, causal, batch_heads: int, length: int):
    """The query chunks of the chunked path: ``(i0, i1, k0, k1)``, each chunk's rows and the keys any
    of its rows reads (its band; every key for a chunk holding a padded row without ``causal``).
    Rows per chunk: a multiple of 64 that keeps one chunk's scores within :data:`CHUNK_ELEMENTS`."""
    rows = max(64, min(length, CHUNK_ELEMENTS // max(1, batch_heads * length)) // 64 * 64)
    padded = _padded_rows(mask) if not causal else None
    out = []
    for i0 in range(0, length, rows):
        i1 = min(length, i0 + rows)
        if causal:
            k0, k1 = (0 if window is None else max(0, i0 - window)), i1
        elif window is None or (padded is not None and any(padded[i0:i1])):
            k0, k1 = 0, length
        else:
            k0, k1 = max(0, i0 - window), min(length, i1 + window)
        out.append((i0, i1, k0, k1))
    return out


def _padded_rows(mask):
    """Per position: whether it is padding in some sequence of the batch (a Python list; read on the
    host once per mask tensor, as :func:`fully_padded`)."""
    if mask is None:
        return None
    try:
        version = mask._version
    except RuntimeError:  # an inference tensor: no version counter, nothing cached
        version = None
    cached = getattr(mask, "_lrp_padded_rows", None)
    if cached is not None and cached[0] == version and version is not None:
        return cached[1]
    rows = (mask <= torch.finfo(torch.float32).min / 2).any(dim=0).tolist()
    if version is not None:
        mask._lrp_padded_rows = (version, rows)
    return rows


def _rotate(x, rotary, sign: float):
    """``x·cos + J(x)·sin`` with J = rotate_half (sign 1) or its transpose (sign −1), in float32:
    J(x) = (−x₂, x₁), Jᵀ(x) = (x₂, −x₁) for the halves x₁, x₂ of the last dim."""
    cos, sin = (t.unsqueeze(1) for t in rotary)
    xf = acc(x)
    half = x.shape[-1] // 2
    out = xf * cos
    out[..., :half].addcmul_(xf[..., half:], sin[..., :half], value=-sign)
    out[..., half:].addcmul_(xf[..., :half], sin[..., half:], value=sign)
    return out.to(x.dtype)


def apply_rotary(x, rotary):
    """``x·cos + rotate_half(x)·sin`` over [B, H, L, D] (cos, sin [B | 1, L, D]), in float32."""
    return x if rotary is None else _rotate(x, rotary, 1.0)


def rotary_transposed(g, rotary):
    """The transpose of :func:`apply_rotary` applied to ``g``: ``g·cos + rotate_halfᵀ(g·sin)``."""
    return g if rotary is None or g is None else _rotate(g, rotary, -1.0)


def repeat_kv(x, heads: int):
    """K or V [B, H_kv, L, D] repeated to ``heads`` heads (query head h reads head h // (heads/H_kv))."""
    groups = heads // x.shape[1]
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def sum_groups(g, kv_heads: int):
    """The gradient of :func:`repeat_kv`: [B, H, L, D] summed over each group of query heads."""
    if g is None or g.shape[1] == kv_heads:
        return g
    batch, heads, length, dim = g.shape
    return g.view(batch, kv_heads, heads // kv_heads, length, dim).sum(dim=2)


#: device types whose attention runs through F.scaled_dot_product_attention and its autograd backward
SDPA_DEVICES = ("cuda",)


def fully_padded(mask) -> bool:
    """Whether a sequence of the batch has only padding keys. Read once per mask tensor (on CUDA it
    is a host sync; the model passes the same mask to every layer) unless the mask was modified."""
    if mask is None:
        return False
    try:
        version = mask._version
    except RuntimeError:  # an inference tensor: no version counter, nothing cached
        version = None
    cached = getattr(mask, "_lrp_fully_padded", None)
    if cached is not None and version is not None and cached[0] == version:
        return cached[1]
    answer = not bool((mask > torch.finfo(torch.float32).min / 2).any(dim=-1).all())
    if version is not None:
        mask._lrp_fully_padded = (version, answer)
    return answer


def uses_fused_kernel(q, mode, mask=None) -> bool:
    """Whether this attention runs as a fused kernel (aten's on the CPU, SDPA on CUDA; see the module
    docstring): not for a batch with a fully padded sequence, in any mode (the fused float16 CPU
    forward does not give such a row the uniform softmax either)."""
    if q.device.type != "cpu" and q.device.type not in SDPA_DEVICES:
        return False
    return not fully_padded(mask)


def scores_backward(grad_out, v, probs, scale, mode, softmax_backward=softmax_backward):
    """``(g_S, g_V)`` from stored probabilities with the mode's factors (V ½, the unscaled scores
    Q·Kᵀ ¼ for attnlrp; g_S None for cp_lrp)."""
    grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
    if mode == "cp_lrp":
        return None, grad_v
    half = 0.5 if mode == "attnlrp" else 1.0
    if half != 1.0:
        grad_v.mul_(half)
    grad_p = torch.matmul(grad_out, v.transpose(-1, -2))
    return softmax_backward(grad_p, probs, scale * half * half), grad_v


def eager_backward(grad_out, q, k, v, probs, scale, mode, softmax_backward=softmax_backward):
    """The backward from stored probabilities, with the mode's factors (V ½, Q and K ¼ for attnlrp)."""
    grad_s, grad_v = scores_backward(grad_out, v, probs, scale, mode, softmax_backward)
    if grad_s is None:
        return None, None, grad_v
    grad_q = torch.matmul(grad_s, k)
    grad_k = torch.matmul(grad_s.transpose(-1, -2), q)
    return grad_q, grad_k, grad_v


def is_variant(q, k, window=None, rotary=None, causal=False) -> bool:
    """Whether a sliding window, causal attention, rotary positions or grouped K/V heads are asked for
    (a backend without kernels for them hands the call to this reference)."""
    return window is not None or causal or rotary is not None or k.shape[1] != q.shape[1]


def _loaded(q, k, v, rotary):
    """What the product reads: rotated q and k, K/V repeated to q's heads."""
    heads = q.shape[1]
    return apply_rotary(q, rotary), repeat_kv(apply_rotary(k, rotary), heads), repeat_kv(v, heads)


def _chunk_masks(mask, window, causal, q, cs):
    """Each chunk's block of the dense mask (:func:`dense_mask`), built when it is needed."""
    length = q.shape[-2]
    return (dense_mask(mask, window, length, q.device, causal, (i0, i1), (k0, k1)) for i0, i1, k0, k1 in cs)


def _sdpa_forward(q, k, v, mask, scale):
    """SDPA on detached leaves with grad: ``(out, (out with its graph, q, k, v leaves))``."""
    with torch.enable_grad():
        leaves = tuple(t.detach().requires_grad_(True) for t in (q, k, v))
        out = F.scaled_dot_product_attention(*leaves, attn_mask=_flash_mask(mask, q.dtype), scale=scale)
    return out.detach(), (out, *leaves)


def _sdpa_backward(grad_out, mode, saved):
    out, *leaves = saved
    if mode == "cp_lrp":  # SDPA's g_V is Pᵀ g_O
        (grad_v,) = torch.autograd.grad(out, leaves[2:], grad_out)
        return None, None, grad_v
    return _mode_factors(mode, *torch.autograd.grad(out, leaves, grad_out))


def _mode_factors(mode, grad_q, grad_k, grad_v):
    """The plain gradients with attnlrp's factors ¼, ¼, ½ (exact: powers of two), in place."""
    if mode == "attnlrp":
        grad_q.mul_(0.25)
        grad_k.mul_(0.25)
        grad_v.mul_(0.5)
    return grad_q, grad_k, grad_v


def with_input_eps(grads, inputs, input_eps, ratio=eps_ratio):
    """Each gradient times the ε-ratio of its input (``input_eps`` of the contract), by ``ratio``."""
    if not input_eps:
        return grads
    return tuple(None if g is None else ratio(g, x, input_eps) for g, x in zip(grads, inputs))


def _forward(q, k, v, mask, scale, mode, fused):
    if fused and q.device.type in SDPA_DEVICES:
        return _sdpa_forward(q, k, v, mask, scale)
    if fused:
        out, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=_flash_mask(mask, q.dtype), scale=scale
        )
        return out, (() if mode == "cp_lrp" else (out, logsumexp))
    probs = softmax_forward(torch.matmul(q, k.transpose(-1, -2)), mask, scale)
    return torch.matmul(probs, v), (probs,)


def _backward(grad_out, q, k, v, mask, scale, mode, saved, fused):
    grad_out = grad_out.contiguous()  # the model's gradient arrives as a transposed view of merged heads
    if not fused:
        return eager_backward(grad_out, q, k, v, saved[0], scale, mode)
    if q.device.type in SDPA_DEVICES:
        return _sdpa_backward(grad_out, mode, saved)
    if mode == "cp_lrp":
        return None, None, _cp_grad_v(grad_out, q, k, mask, scale)
    out, logsumexp = saved
    return _mode_factors(mode, *torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out, q, k, v, out, logsumexp, 0.0, False, attn_mask=_flash_mask(mask, q.dtype), scale=scale
    ))


def _cp_grad_v(grad_out, q, k, mask, scale):
    """cp_lrp's g_V = Pᵀ g_O with P recomputed in row chunks (at most :data:`CHUNK_ELEMENTS` scores at a time)."""
    batch, heads, length, _ = q.shape
    keys = k.shape[-2]
    rows = max(1, CHUNK_ELEMENTS // max(1, batch * heads * keys))
    grad_v = None
    for i0 in range(0, length, rows):
        i1 = min(length, i0 + rows)
        block = mask if mask is None or mask.dim() == 2 else mask[:, :, i0:i1]
        probs = softmax_forward(torch.matmul(q[:, :, i0:i1], k.transpose(-1, -2)), block, scale)
        part = torch.matmul(probs.transpose(-1, -2), grad_out[:, :, i0:i1])
        grad_v = part if grad_v is None else grad_v.add_(part)
    return grad_v


def _banded(window, causal) -> bool:
    """Whether the mask has a band (a window or causal attention): the chunked path."""
    return window is not None or causal


def forward(q, k, v, mask, scale, mode, window=None, rotary=None, causal=False, softcap=None):
    if softcap is not None:
        return softcap_forward(q, k, v, mask, scale, mode, window, rotary, causal, softcap)
    fused = uses_fused_kernel(q, mode, mask)
    loaded = _loaded(q, k, v, rotary)
    if not _banded(window, causal):
        out, saved = _forward(*loaded, mask, scale, mode, fused)
    else:  # chunked queries, each with its key slice and its block of the mask: no [L, L] tensor
        cs = chunks(mask, window, causal, q.shape[0] * q.shape[1], q.shape[-2])
        parts = [_forward(loaded[0][:, :, i0:i1], loaded[1][:, :, k0:k1], loaded[2][:, :, k0:k1], block, scale,
                          mode, fused)
                 for (i0, i1, k0, k1), block in zip(cs, _chunk_masks(mask, window, causal, q, cs))]
        out = torch.cat([part for part, _ in parts], dim=2)
        saved = tuple(t for _, part_saved in parts for t in part_saved)
    if is_variant(q, k, window, rotary, causal):  # the backward reads the rotated / repeated tensors again
        saved = (*saved, *loaded)
    return out, saved


def _backward_chunked(grad_out, q, k, v, mask, scale, mode, saved, fused, window, causal):
    """The backward of the chunked forward, chunk by chunk: g_Q per chunk, g_K and g_V summed (float32)
    over the chunks whose key slices overlap."""
    cs = chunks(mask, window, causal, q.shape[0] * q.shape[1], q.shape[-2])
    per_chunk = len(saved) // len(cs)
    # only the CPU's fused kernels read the mask again (eager: the saved probabilities; SDPA: its graph)
    reads_mask = fused and q.device.type not in SDPA_DEVICES
    blocks = _chunk_masks(mask, window, causal, q, cs) if reads_mask else (None for _ in cs)
    cp = mode == "cp_lrp"
    grad_q = None if cp else torch.empty_like(q)
    grad_k = None if cp else torch.zeros(k.shape, dtype=acc(k).dtype, device=k.device)
    grad_v = torch.zeros(v.shape, dtype=acc(v).dtype, device=v.device)
    for n, ((i0, i1, k0, k1), block) in enumerate(zip(cs, blocks)):
        gq, gk, gv = _backward(grad_out[:, :, i0:i1], q[:, :, i0:i1], k[:, :, k0:k1], v[:, :, k0:k1], block, scale,
                               mode, saved[n * per_chunk:(n + 1) * per_chunk], fused)
        if not cp:
            grad_q[:, :, i0:i1] = gq
            grad_k[:, :, k0:k1] += gk
        grad_v[:, :, k0:k1] += gv
    return grad_q, None if cp else grad_k.to(k.dtype), grad_v.to(v.dtype)


def backward(grad_out, q, k, v, mask, scale, mode, saved, window=None, rotary=None, input_eps=0.0, causal=False,
             softcap=None):
    if softcap is not None:
        return softcap_backward(grad_out, q, k, v, scale, mode, saved, rotary, input_eps, softcap)
    fused = uses_fused_kernel(q, mode, mask)
    loaded = (q, k, v)
    if is_variant(q, k, window, rotary, causal):
        *saved, q_loaded, k_loaded, v_loaded = saved
        loaded = (q_loaded, k_loaded, v_loaded)
    if _banded(window, causal):
        grad_q, grad_k, grad_v = _backward_chunked(grad_out, *loaded, mask, scale, mode, saved, fused, window, causal)
    else:
        grad_q, grad_k, grad_v = _backward(grad_out, *loaded, mask, scale, mode, saved, fused)
    kv_heads = k.shape[1]
    grad_k, grad_v = sum_groups(grad_k, kv_heads), sum_groups(grad_v, kv_heads)
    grads = rotary_transposed(grad_q, rotary), rotary_transposed(grad_k, rotary), grad_v
    return with_input_eps(grads, (q, k, v), input_eps)


# ---------------------------------------------------------------------------- soft-capped scores (Gemma 2)
def capped_scores(q, k, scale, softcap):
    """``(S, S')``: the scores S = scale·Q Kᵀ and their soft-capped value S' = c·tanh(S/c), in float32."""
    s = acc(torch.matmul(q, k.transpose(-1, -2))) * scale
    return s, softcap * torch.tanh(s / softcap)


def softcap_forward(q, k, v, mask, scale, mode, window, rotary, causal, softcap):
    """softmax(c·tanh(S/c) + mask)·V, eager (no fused kernel caps the scores): P is stored, with the
    rotated and repeated q, k, v the backward reads again — [B, H, L, L], the one attention besides
    DeBERTa's that is not linear in memory."""
    q, k, v = _loaded(q, k, v, rotary)
    dense = dense_mask(mask, window, q.shape[-2], q.device, causal)
    _, capped = capped_scores(q, k, scale, softcap)
    if dense is not None:
        capped = capped + (dense if dense.dim() == 4 else dense[:, None, None, :])
    probs = torch.softmax(capped, dim=-1).to(q.dtype)
    return torch.matmul(probs, v), (probs, q, k, v)


def softcap_backward(grad_out, q, k, v, scale, mode, saved, rotary, input_eps, softcap):
    """The mode's rule with the soft-cap in between: ``grad`` its derivative 1 − tanh²(S/c); the LRP
    modes its identity rule, g_S = g_S' ⊙ S'/S (S'/S → 1 as S → 0; ops/attention.py says why)."""
    probs, q_loaded, k_loaded, v_loaded = saved
    s, capped = capped_scores(q_loaded, k_loaded, scale, softcap)
    if mode == "grad":
        ratio = 1.0 - (capped / softcap).square()
    else:
        ratio = torch.where(s == 0, torch.ones_like(s), capped / torch.where(s == 0, torch.ones_like(s), s))

    def capped_softmax_backward(grad_p, p, factor):
        return (acc(softmax_backward(grad_p, p, factor)) * ratio).to(grad_p.dtype)

    grad_out = grad_out.contiguous()
    grad_q, grad_k, grad_v = eager_backward(grad_out, q_loaded, k_loaded, v_loaded, probs, scale, mode,
                                            softmax_backward=capped_softmax_backward)
    kv_heads = k.shape[1]
    grad_k, grad_v = sum_groups(grad_k, kv_heads), sum_groups(grad_v, kv_heads)
    grads = rotary_transposed(grad_q, rotary), rotary_transposed(grad_k, rotary), grad_v
    return with_input_eps(grads, (q, k, v), input_eps)


# ---------------------------------------------------------------------------- DeBERTa's disentangled attention
def relative_scores(q, k, pos_key, pos_query, rel_index):
    """c2p + p2c (unscaled) [B, H, L, L]: c2p_ij = q_i·pos_key_δ(i,j), p2c_ij = k_j·pos_query_δ(i,j)."""
    if pos_key is None and pos_query is None:
        return None
    batch, heads, length, _ = q.shape
    index = rel_index.expand(batch, heads, length, length)
    scores = None
    if pos_key is not None:
        scores = torch.gather(torch.matmul(q, pos_key.transpose(-1, -2)), -1, index)
    if pos_query is not None:
        p2c = torch.gather(torch.matmul(k, pos_query.transpose(-1, -2)), -1, index.transpose(-1, -2))
        scores = p2c.transpose(-1, -2) if scores is None else scores + p2c.transpose(-1, -2)
    return scores


def disentangled_forward(q, k, v, pos_key, pos_query, rel_index, mask, scale, mode):
    scores = torch.matmul(q, k.transpose(-1, -2))
    relative = relative_scores(q, k, pos_key, pos_query, rel_index)
    if relative is not None:
        scores = scores + relative
    probs = softmax_forward(scores, mask, scale)
    return torch.matmul(probs, v), (probs,)


def _relative_backward(grad_s, x, pos, index, position_grads):
    """Through gather(x·posᵀ, δ): the gradient of x [B, H, L, D] and (``position_grads``) of pos."""
    grad_rel = torch.zeros((*grad_s.shape[:-1], pos.shape[-2]), dtype=grad_s.dtype, device=grad_s.device)
    grad_rel.scatter_add_(-1, index, grad_s)  # [B, H, L, R]
    grad_pos = None
    if position_grads:
        grad_pos = torch.matmul(grad_rel.transpose(-1, -2), x)
        if pos.shape[0] != grad_pos.shape[0]:
            grad_pos = grad_pos.sum(dim=0, keepdim=True)
    return torch.matmul(grad_rel, pos), grad_pos


def disentangled_backward(grad_out, q, k, v, pos_key, pos_query, rel_index, mask, scale, mode, saved,
                          position_grads=False):
    grad_s, grad_v = scores_backward(grad_out, v, saved[0], scale, mode)
    if grad_s is None:
        return None, None, grad_v, None, None
    grad_q = torch.matmul(grad_s, k)
    grad_k = torch.matmul(grad_s.transpose(-1, -2), q)
    batch, heads, length, _ = q.shape
    index = None if rel_index is None else rel_index.expand(batch, heads, length, length)
    grad_pk = grad_pq = None
    if pos_key is not None:
        extra, grad_pk = _relative_backward(grad_s, q, pos_key, index, position_grads)
        grad_q.add_(extra)
    if pos_query is not None:
        extra, grad_pq = _relative_backward(grad_s.transpose(-1, -2), k, pos_query, index.transpose(-1, -2),
                                            position_grads)
        grad_k.add_(extra)
    return grad_q, grad_k, grad_v, grad_pk, grad_pq


KERNELS = AttentionKernels(forward=forward, backward=backward, disentangled_forward=disentangled_forward,
                           disentangled_backward=disentangled_backward)
