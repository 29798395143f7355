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

Kernels (:class:`~lrp_kernels.backends.contract.AttentionKernels`): ``backends/{torch,cpp,triton}/attention.py``,
``csrc/attention.{cpp,cu}`` (the masked softmax and its backward); tests ``tests/ops/test_attention.py``;
benchmark ``benchmarks/ops/bench_attention.py``.
"""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import ATTENTION_MODES, Backend

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


class LRPAttentionFunction(torch.autograd.Function):
    """Forward: softmax(Q Kᵀ·scale + mask) V; backward: the rule of ``mode``."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale, mode, backend: Backend, input_eps):
        out, saved = backend.attention.forward(q, k, v, mask, scale, mode)
        ctx.scale, ctx.mode, ctx.kernels, ctx.input_eps = scale, mode, backend.attention, input_eps
        ctx.save_for_backward(q, k, v, mask, *saved)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, mask, *saved = ctx.saved_tensors
        gq, gk, gv = ctx.kernels.backward(grad_out, q, k, v, mask, ctx.scale, ctx.mode, tuple(saved), ctx.input_eps)
        return gq, gk, gv, None, None, None, None, None


def lrp_attention(q, k, v, mask=None, scale=None, mode="attnlrp", backend: Backend | None = None,
                  input_eps: float = 0.0):
    """Attention over [B, H, L, D] tensors with the backward rule ``mode`` (one of :data:`MODES`).

    ``input_eps`` > 0: q, k, v are the outputs of linears under the ε-rule whose ratio
    ``x/(x + ε·sign x)`` this op's backward applies to g_q, g_k, g_v (once per element, fused into
    the kernels that write them); those linears then run without a rule of their own (a plain
    ``F.linear``: their backward is one GEMM)."""
    if mode not in MODES:
        raise ValueError(f"unknown attention mode {mode!r}; valid: {', '.join(MODES)}")
    if input_eps < 0:
        raise ValueError(f"input_eps must be >= 0, got {input_eps}")
    if scale is None:
        scale = q.shape[-1] ** -0.5
    return LRPAttentionFunction.apply(q, k, v, mask, float(scale), mode, or_reference(backend), float(input_eps))
