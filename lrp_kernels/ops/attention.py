r"""Scaled dot-product attention with an additive key-padding mask and three backward rules.

Forward (the ordinary op): S = Q Kᵀ · scale + mask,  P = softmax(S),  O = P V.

Backward, in the gradient×input form (relevance of x = x ⊙ g_x):

``"grad"``
    the plain gradient.
``"attnlrp"`` (Achtibat et al., ICML 2024)
    softmax: the first-order Taylor rule R_S = S ⊙ (R_P − P Σ R_P), which *is* the plain softmax
    gradient in this form; the bilinear products Q·Kᵀ and P·V: the uniform rule, each factor gets
    half. So g_V = ½ Pᵀ g_O, g_P = ½ g_O Vᵀ, g_S = softmax'(g_P), g_Q = ½ g_S K · scale,
    g_K = ½ g_Sᵀ Q · scale — Q and K receive ¼ and V ½ of the plain gradient. Not conservative: the
    softmax rule drops the Taylor remainder.
``"cp_lrp"`` (Ali et al., ICML 2022)
    P is a constant, O = P V is linear in V: g_V = Pᵀ g_O, g_Q = g_K = 0. Conservative.

``mask`` is additive, per key: [B, L] float32 with 0 at tokens and ``finfo(float32).min`` at padding
(:func:`additive_mask`). A backend may fuse the whole op (FlashAttention-style: no stored P).

Variants (the newer encoders; the rules above are unchanged):

sliding window (ModernBERT's local layers)
    query i reads key j only when |i − j| ≤ ``window``: a constant band added to the mask.
causal attention (decoders), ``causal=True``
    query i reads key j only when j ≤ i (with a ``window``: i − w ≤ j ≤ i, a causal sliding window).
    The mask is a constant; the rules are unchanged. Kernels never touch the blocks it removes.
soft-capped scores (Gemma 2's ``attn_logit_softcapping``), ``softcap=c``
    S' = c·tanh(S/c) replaces S before the mask and the softmax. An element-wise, monotone map of one
    input, it takes the identity rule of the element-wise activations (GELU, tanh; Achtibat et al.
    2024): R_S = R_S', i.e. g_S = g_S' ⊙ S'/S (→ 1 as S → 0, where tanh(u)/u → 1). The softmax keeps
    its rule (R_S' by its Taylor rule under ``attnlrp``) and the bilinear Q·Kᵀ then splits R_S as
    before, so the cap adds no loss of its own; ``cp_lrp`` holds P constant and never reaches it;
    ``grad`` takes its derivative 1 − tanh²(S/c). Not a parameter of the kernel sets: no fused
    kernel caps the scores, so the op runs soft-capped attention on the torch reference (eager, P
    stored) whatever the backend.
grouped K/V heads (EuroBERT, Llama-style GQA)
    k and v have H_kv heads, query head h reads K/V head h // (H/H_kv). The sharing is a copy,
    whose rule is its gradient: the relevance of a shared head is the sum over the query heads
    that read it (conservative).
rotary position embedding (Su et al. 2021; ModernBERT, EuroBERT), ``rotary=(cos, sin)``
    q and k are rotated per position, q' = R_t q with R_t = cos θ·I + sin θ·J (J: rotate_half), a
    fixed linear map without bias (θ depends on the position only, never on the input). Its rule is
    its gradient: g_q = R_tᵀ g_q', and Σ_d q ⊙ R_tᵀ g_q' = Σ_d (R_t q) ⊙ g_q' = Σ_d q' ⊙ g_q' — the
    ε = 0 rule of a bias-free linear map, conservative exactly (it is the rule of any bias-free linear
    map; that R_t is orthogonal is not needed). It is applied inside this op (on load, as a fused
    kernel would) and the gradients returned are those of the un-rotated q and k.
disentangled attention (He et al. 2021, DeBERTa; :func:`lrp_disentangled_attention`)
    S = scale·(Q Kᵀ + C2P + P2C) + mask, C2P_ij = Q_i·P^K_δ(i,j), P2C_ij = K_j·P^Q_δ(i,j), with
    P^K, P^Q the projected relative-position embeddings and δ(i,j) the (bucketed) relative position.
    The sum of the three terms is linear (its rule: the gradient); each term is a bilinear product
    under the uniform rule in ``attnlrp`` (½ to each factor: Q, K, P^K and P^Q all get ¼ of the
    plain gradient, V ½); in ``cp_lrp`` P is constant, g_V = Pᵀ g_O and nothing reaches Q, K or the
    positions. The relevance reaching P^K and P^Q (``attnlrp``) is the relevance of the relative
    positions: a caller reports it rather than dropping it (pass them with ``requires_grad``).

Kernels (:class:`~lrp_kernels.backends.contract.AttentionKernels`): ``backends/{torch,cpp,triton}/attention.py``,
``csrc/attention.{cpp,cu}`` (the blocked CPU attention of every mode and variant; the masked softmax
and its backward); tests ``tests/ops/test_attention.py``, ``tests/ops/test_attention_variants.py``,
``tests/ops/test_attention_blocked.py``; benchmark ``benchmarks/ops/bench_attention.py``. No
backend builds an [L, L] tensor for these variants (DeBERTa's disentangled attention is eager).
"""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import ATTENTION_MODES, Backend
from lrp_kernels.backends.torch.attention import apply_rotary, dense_mask, relative_scores, repeat_kv

from ._backend import or_reference

MODES = ATTENTION_MODES


def additive_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[B, L] 0/1 attention mask → additive float32 mask (0 keep, finfo(float32).min drop)."""
    if attention_mask is None:
        return None
    keep = attention_mask.to(torch.bool)
    return torch.zeros(keep.shape, dtype=torch.float32, device=keep.device).masked_fill_(
        ~keep, torch.finfo(torch.float32).min
    )


__all__ = ["MODES", "additive_mask", "apply_rotary", "dense_mask", "lrp_attention", "lrp_disentangled_attention",
           "relative_scores", "repeat_kv"]


class LRPAttentionFunction(torch.autograd.Function):
    """Forward: softmax(Q Kᵀ·scale + mask) V; backward: the rule of ``mode``."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale, mode, backend: Backend, window, cos, sin, input_eps, causal, softcap):
        rotary = None if cos is None else (cos, sin)
        capped = () if softcap is None else (softcap,)  # only the torch reference takes it (see above)
        out, saved = backend.attention.forward(q, k, v, mask, scale, mode, window, rotary, causal, *capped)
        ctx.scale, ctx.mode, ctx.kernels, ctx.window = scale, mode, backend.attention, window
        ctx.input_eps, ctx.causal, ctx.capped = input_eps, causal, capped
        ctx.save_for_backward(q, k, v, mask, cos, sin, *saved)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, mask, cos, sin, *saved = ctx.saved_tensors
        rotary = None if cos is None else (cos, sin)
        gq, gk, gv = ctx.kernels.backward(grad_out, q, k, v, mask, ctx.scale, ctx.mode, tuple(saved),
                                          ctx.window, rotary, ctx.input_eps, ctx.causal, *ctx.capped)
        return gq, gk, gv, None, None, None, None, None, None, None, None, None, None


def _checked(mode, scale, q):
    if mode not in MODES:
        raise ValueError(f"unknown attention mode {mode!r}; valid: {', '.join(MODES)}")
    return float(q.shape[-1] ** -0.5 if scale is None else scale)


def lrp_attention(q, k, v, mask=None, scale=None, mode="attnlrp", backend: Backend | None = None, *,
                  window: int | None = None, rotary=None, input_eps: float = 0.0, causal: bool = False,
                  softcap: float | None = None):
    """Attention over [B, H, L, D] queries (k, v: [B, H_kv, L, D]) with the backward rule ``mode``
    (one of :data:`MODES`), an optional sliding ``window``, ``rotary=(cos, sin)`` [B | 1, L, D],
    ``causal`` masking (the contract's rules: ``lrp_kernels.backends.contract``) and soft-capped
    scores ``softcap`` = c > 0 (c·tanh(S/c); on the torch reference, see the module docstring).

    ``input_eps`` > 0: q, k, v are the outputs of linears under the ε-rule whose ratio
    ``x/(x + ε·sign x)`` this op's backward applies to g_q, g_k, g_v (once per element, fused into
    the kernels that write them); those linears then run without a rule of their own (a plain
    ``F.linear``: their backward is one GEMM)."""
    scale = _checked(mode, scale, q)
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads cannot share {k.shape[1]} K/V heads")
    if input_eps < 0:
        raise ValueError(f"input_eps must be >= 0, got {input_eps}")
    if softcap is not None:
        if not softcap > 0:
            raise ValueError(f"softcap must be > 0, got {softcap}")
        softcap, backend = float(softcap), None  # the torch reference: no kernel caps the scores
    cos, sin = (None, None) if rotary is None else rotary
    return LRPAttentionFunction.apply(q, k, v, mask, scale, mode, or_reference(backend), window, cos, sin,
                                      float(input_eps), bool(causal), softcap)


class LRPDisentangledAttentionFunction(torch.autograd.Function):
    """Forward: softmax(scale·(Q Kᵀ + C2P + P2C) + mask) V; backward: the rule of ``mode``."""

    @staticmethod
    def forward(ctx, q, k, v, pos_key, pos_query, rel_index, mask, scale, mode, backend: Backend):
        kernels = backend.attention
        out, saved = kernels.disentangled_forward(q, k, v, pos_key, pos_query, rel_index, mask, scale, mode)
        ctx.scale, ctx.mode, ctx.kernels = scale, mode, kernels
        ctx.save_for_backward(q, k, v, pos_key, pos_query, rel_index, mask, *saved)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, pos_key, pos_query, rel_index, mask, *saved = ctx.saved_tensors
        position_grads = ctx.needs_input_grad[3] or ctx.needs_input_grad[4]
        grads = ctx.kernels.disentangled_backward(grad_out.contiguous(), q, k, v, pos_key, pos_query, rel_index,
                                                  mask, ctx.scale, ctx.mode, tuple(saved), position_grads)
        return (*grads, None, None, None, None, None)


def lrp_disentangled_attention(q, k, v, pos_key, pos_query, rel_index, mask=None, scale=None, mode="attnlrp",
                               backend: Backend | None = None):
    """DeBERTa's attention over [B, H, L, D] tensors: ``pos_key`` / ``pos_query`` [B | 1, H, R, D] (or
    None: no c2p / p2c term), ``rel_index`` [L, L] int64 (δ(i, j) in [0, R)), backward rule ``mode``."""
    scale = _checked(mode, scale, q)
    return LRPDisentangledAttentionFunction.apply(q, k, v, pos_key, pos_query, rel_index, mask, scale, mode,
                                                  or_reference(backend))
