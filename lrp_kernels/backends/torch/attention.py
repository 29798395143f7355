"""Torch reference of the attention rules (math: ``lrp_kernels/ops/attention.py``).

On the CPU the forward is aten's fused attention (the kernel behind
``F.scaled_dot_product_attention``): bit for bit the plain model's forward, and no [B, H, L, L]
tensor is stored; ``grad`` and ``attnlrp`` take its fused backward (attnlrp's is the plain one
scaled by powers of two, exactly), ``cp_lrp`` recomputes P. Elsewhere, and for a batch with a
fully padded sequence, the eager path stores P (aten's fused CPU backward is wrong for a sequence
whose keys are all masked: its log-sum-exp drops the log L of the uniform row; its float16 forward
does not give such a row the uniform softmax).
"""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import AttentionKernels

from ._common import acc


def softmax_forward(scores, mask, scale):
    """``softmax(scores·scale + mask[:, None, None, :])`` over the last dim, for [B, H, Lq, Lk] scores."""
    s = acc(scores) * scale
    if mask is not None:
        s.add_(mask[:, None, None, :].to(s.dtype))
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
    """The additive [B, L] float32 mask as aten's CPU flash attention takes it: [B, 1, 1, L], q's dtype."""
    if mask is None:
        return None
    if torch.finfo(dtype).max < torch.finfo(mask.dtype).max:  # float16: keep padding finite
        mask = mask.clamp(min=torch.finfo(dtype).min)
    return mask.to(dtype)[:, None, None, :]


def uses_fused_kernel(q, mode, mask=None) -> bool:
    """Whether this attention runs as aten's fused CPU kernel (see the module docstring): not for a
    batch with a fully padded sequence, in any mode (the fused float16 forward does not give such a
    row the uniform softmax either)."""
    if q.device.type != "cpu":
        return False
    if mask is None:
        return True
    keep = mask > torch.finfo(torch.float32).min / 2
    return bool(keep.any(dim=-1).all())


def eager_backward(grad_out, q, k, v, probs, scale, mode, softmax_backward=softmax_backward):
    """The backward from stored probabilities, with the mode's factors (V ½, Q and K ¼ for attnlrp)."""
    grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
    if mode == "cp_lrp":
        return None, None, grad_v
    half = 0.5 if mode == "attnlrp" else 1.0
    if half != 1.0:
        grad_v.mul_(half)
    grad_p = torch.matmul(grad_out, v.transpose(-1, -2))
    grad_s = softmax_backward(grad_p, probs, scale * half * half)
    grad_q = torch.matmul(grad_s, k)
    grad_k = torch.matmul(grad_s.transpose(-1, -2), q)
    return grad_q, grad_k, grad_v


def forward(q, k, v, mask, scale, mode):
    if uses_fused_kernel(q, mode, mask):
        out, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=_flash_mask(mask, q.dtype), scale=scale
        )
        return out, (() if mode == "cp_lrp" else (out, logsumexp))
    probs = softmax_forward(torch.matmul(q, k.transpose(-1, -2)), mask, scale)
    return torch.matmul(probs, v), (probs,)


def backward(grad_out, q, k, v, mask, scale, mode, saved):
    if not uses_fused_kernel(q, mode, mask):
        return eager_backward(grad_out, q, k, v, saved[0], scale, mode)
    if mode == "cp_lrp":
        probs = softmax_forward(torch.matmul(q, k.transpose(-1, -2)), mask, scale)
        return None, None, torch.matmul(probs.transpose(-1, -2), grad_out)
    out, logsumexp = saved
    grad_q, grad_k, grad_v = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out, q, k, v, out, logsumexp, 0.0, False, attn_mask=_flash_mask(mask, q.dtype), scale=scale
    )
    if mode == "attnlrp":  # exact: the factors are powers of two
        grad_q.mul_(0.25)
        grad_k.mul_(0.25)
        grad_v.mul_(0.5)
    return grad_q, grad_k, grad_v


KERNELS = AttentionKernels(forward=forward, backward=backward)
