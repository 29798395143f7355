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
uniform softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrp_kernels.backends.contract import AttentionKernels

from ._common import acc
from .linear import eps_ratio


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


def forward(q, k, v, mask, scale, mode):
    if q.device.type in SDPA_DEVICES and uses_fused_kernel(q, mode, mask):
        return _sdpa_forward(q, k, v, mask, scale)
    if uses_fused_kernel(q, mode, mask):
        out, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=_flash_mask(mask, q.dtype), scale=scale
        )
        return out, (() if mode == "cp_lrp" else (out, logsumexp))
    probs = softmax_forward(torch.matmul(q, k.transpose(-1, -2)), mask, scale)
    return torch.matmul(probs, v), (probs,)


def with_input_eps(grads, inputs, input_eps, ratio=eps_ratio):
    """Each gradient times the ε-ratio of its input (``input_eps`` of the contract), by ``ratio``."""
    if not input_eps:
        return grads
    return tuple(None if g is None else ratio(g, x, input_eps) for g, x in zip(grads, inputs))


def backward(grad_out, q, k, v, mask, scale, mode, saved, input_eps=0.0):
    return with_input_eps(_backward(grad_out, q, k, v, mask, scale, mode, saved), (q, k, v), input_eps)


def _backward(grad_out, q, k, v, mask, scale, mode, saved):
    grad_out = grad_out.contiguous()  # the model's gradient arrives as a transposed view of merged heads
    if q.device.type in SDPA_DEVICES and uses_fused_kernel(q, mode, mask):
        return _sdpa_backward(grad_out, mode, saved)
    if not uses_fused_kernel(q, mode, mask):
        return eager_backward(grad_out, q, k, v, saved[0], scale, mode)
    if mode == "cp_lrp":
        probs = softmax_forward(torch.matmul(q, k.transpose(-1, -2)), mask, scale)
        return None, None, torch.matmul(probs.transpose(-1, -2), grad_out)
    out, logsumexp = saved
    return _mode_factors(mode, *torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out, q, k, v, out, logsumexp, 0.0, False, attn_mask=_flash_mask(mask, q.dtype), scale=scale
    ))


KERNELS = AttentionKernels(forward=forward, backward=backward)
