"""Compiled kernels of the attention rules (``csrc/attention.{cpp,cu}``; math:
``lrp_kernels/ops/attention.py``).

On the CPU the whole op is one blocked (flash-style) kernel pair, ``attention_blocked_forward`` /
``attention_blocked_backward`` (``csrc/attention.cpp``): every mode (grad, attnlrp, cp_lrp) and every
variant of the contract — key padding, a sliding window, causal attention, grouped K/V heads — with
no [L, L] tensor: the forward saves the output and the float32 log-sum-exp of each row ``[B, H, L]``
(cp_lrp: the log-sum-exp only), the backward recomputes the probabilities block by block. Rotary
positions rotate q and k before the kernel (recomputed in the backward rather than saved) and rotate
g_Q, g_K back after it; ``input_eps`` is fused into the kernel's stores (after the rotation back,
with rotary positions). Outputs and gradients are laid out as ``[B, L, H, D]`` memory (the model's
head views), so merging heads and the projections' backward GEMMs copy nothing.

The ``cuda`` backend declares its own kernel set, :data:`CUDA_KERNELS`: the variants (window, causal,
rotary, grouped K/V heads) run the Triton backend's flash-style kernels when Triton runs on the
device (installed, with its GPU compiler), anything else — and the variants without Triton — the
torch reference (SDPA, and for the variants and cp_lrp its chunked path: no [L, L] tensor either).
The compiled masked-softmax kernels (``softmax_forward`` / ``softmax_backward``, CPU and CUDA) remain
as host functions. float64 and DeBERTa's disentangled attention run the torch reference.
"""

from __future__ import annotations

import torch

from lrp_kernels.backends import registry
from lrp_kernels.backends.contract import AttentionKernels
from lrp_kernels.backends.torch import attention as reference

from . import linear
from ._glue import _C, DTYPE_CODES, launch, rows, supported


def softmax_forward(scores, mask, scale):
    if not supported(scores) or scores.dim() != 4 or scores.shape[-1] == 0:
        return reference.softmax_forward(scores, mask, scale)
    batch, heads, lq, lk = scores.shape
    if mask is not None:
        if mask.shape != (batch, lk):
            return reference.softmax_forward(scores, mask, scale)
        mask = mask.to(device=scores.device, dtype=torch.float32)
        if mask.stride(1) != 1 and lk > 1:
            mask = mask.contiguous()
    sm, s_stride = rows(scores)
    probs = torch.empty(scores.shape, dtype=scores.dtype, device=scores.device)
    launch(
        "attention_softmax_forward",
        scores.device,
        DTYPE_CODES[scores.dtype],
        sm.shape[0],
        lk,
        heads * lq,
        sm.data_ptr(),
        s_stride,
        0 if mask is None else mask.data_ptr(),
        0 if mask is None else mask.stride(0),
        float(scale),
        probs.data_ptr(),
        lk,
    )
    return probs


def softmax_backward(grad_p, probs, factor):
    if not supported(grad_p, probs) or grad_p.shape[-1] == 0:
        return reference.softmax_backward(grad_p, probs, factor)
    gm, g_stride = rows(grad_p)
    pm, p_stride = rows(probs)
    n_rows, cols = gm.shape
    out = torch.empty(grad_p.shape, dtype=grad_p.dtype, device=grad_p.device)
    launch(
        "attention_softmax_backward",
        grad_p.device,
        DTYPE_CODES[grad_p.dtype],
        n_rows,
        cols,
        gm.data_ptr(),
        g_stride,
        pm.data_ptr(),
        p_stride,
        float(factor),
        out.data_ptr(),
        cols,
    )
    return out


MODE_CODES = {"grad": 0, "attnlrp": 1, "cp_lrp": 2}


def _blocked(q, k, v, mask, window) -> bool:
    """Whether the blocked CPU kernels take these tensors (else the torch reference runs)."""
    if q.device.type != "cpu" or not supported(q) or q.dim() != 4 or k.dim() != 4:
        return False
    if k.dtype != q.dtype or v.dtype != q.dtype or k.shape != v.shape or k.device != q.device:
        return False
    batch, heads, length, dim = q.shape
    if k.shape[0] != batch or k.shape[2:] != (length, dim) or k.shape[1] == 0 or heads % k.shape[1]:
        return False
    if window is not None and window < 0:
        return False
    return mask is None or tuple(mask.shape) == (batch, length)


def _heads(t):
    """(t with a contiguous last dim, the strides of its first three dims)."""
    if t.stride(-1) != 1 and t.shape[-1] > 1:
        t = t.contiguous()
    return t, tuple(t.stride()[:3])


def _like_heads(q):
    """A new tensor of q's shape [B, H, L, D] and dtype laid out as [B, L, H, D] memory (the model's head view)."""
    batch, heads, length, dim = q.shape
    return torch.empty(batch, length, heads, dim, dtype=q.dtype, device=q.device).transpose(1, 2)


def _mask_args(mask):
    if mask is None:
        return None, 0, 0
    mask = mask.to(torch.float32)
    if mask.stride(-1) != 1 and mask.shape[-1] > 1:
        mask = mask.contiguous()
    return mask, mask.data_ptr(), mask.stride(0)


def _forward_blocked(q, k, v, mask, scale, mode, window, rotary, causal):
    q, k = reference.apply_rotary(q, rotary), reference.apply_rotary(k, rotary)
    (q, qs), (k, ks), (v, vs) = _heads(q), _heads(k), _heads(v)
    batch, heads, length, dim = q.shape
    out = _like_heads(q)
    lse = torch.empty(batch, heads, length, dtype=torch.float32)
    mask, mask_ptr, mask_stride = _mask_args(mask)
    _C.attention_blocked_forward(DTYPE_CODES[q.dtype], batch, heads, k.shape[1], length, dim,
                                 q.data_ptr(), *qs, k.data_ptr(), *ks, v.data_ptr(), *vs, mask_ptr, mask_stride,
                                 -1 if window is None else int(window), int(bool(causal)), float(scale),
                                 out.data_ptr(), *out.stride()[:3], lse.data_ptr())
    return out, ((lse,) if mode == "cp_lrp" else (out, lse))


def _backward_blocked(grad_out, q, k, v, mask, scale, mode, saved, window, rotary, input_eps, causal):
    cp = mode == "cp_lrp"
    out, lse = (None, saved[0]) if cp else saved
    q_in, k_in = q, k
    q, k = reference.apply_rotary(q, rotary), reference.apply_rotary(k, rotary)
    (q, qs), (k, ks), (v, vs), (grad_out, gs) = _heads(q), _heads(k), _heads(v), _heads(grad_out)
    batch, heads, length, dim = q.shape
    grad_q = None if cp else _like_heads(q)
    grad_k = None if cp else _like_heads(k)
    grad_v = _like_heads(v)
    mask, mask_ptr, mask_stride = _mask_args(mask)
    fused_eps = 0.0 if rotary is not None else float(input_eps)

    def ptr(t):
        return (0, 0, 0, 0) if t is None else (t.data_ptr(), *t.stride()[:3])

    _C.attention_blocked_backward(DTYPE_CODES[q.dtype], MODE_CODES[mode], batch, heads, k.shape[1], length, dim,
                                  q.data_ptr(), *qs, k.data_ptr(), *ks, v.data_ptr(), *vs, grad_out.data_ptr(), *gs,
                                  *ptr(None if cp else _heads(out)[0]), lse.data_ptr(), mask_ptr, mask_stride,
                                  -1 if window is None else int(window), int(bool(causal)), float(scale), fused_eps,
                                  *ptr(grad_q), *ptr(grad_k), *ptr(grad_v))
    if rotary is None:
        return grad_q, grad_k, grad_v
    grads = reference.rotary_transposed(grad_q, rotary), reference.rotary_transposed(grad_k, rotary), grad_v
    return reference.with_input_eps(grads, (q_in, k_in, v), input_eps, ratio=linear.eps_ratio)


def forward(q, k, v, mask, scale, mode, window=None, rotary=None, causal=False):
    if _blocked(q, k, v, mask, window):
        return _forward_blocked(q, k, v, mask, scale, mode, window, rotary, causal)
    return reference.forward(q, k, v, mask, scale, mode, window, rotary, causal)


def backward(grad_out, q, k, v, mask, scale, mode, saved, window=None, rotary=None, input_eps=0.0, causal=False):
    if _blocked(q, k, v, mask, window):
        return _backward_blocked(grad_out, q, k, v, mask, scale, mode, saved, window, rotary, input_eps, causal)
    return reference.backward(grad_out, q, k, v, mask, scale, mode, saved, window, rotary, input_eps, causal)


KERNELS = AttentionKernels(
    forward=forward,
    backward=backward,
    disentangled_forward=reference.disentangled_forward,
    disentangled_backward=reference.disentangled_backward,
)


# ------------------------------------------------------------------------- the cuda backend's attention
_TRITON: dict = {}


def triton_attention(device) -> AttentionKernels | None:
    """The Triton backend's attention kernels where they run on ``device`` (Triton installed, with
    its GPU compiler on CUDA), else None; looked up once per device."""
    key = str(device)
    if key not in _TRITON:
        backend, _ = registry.load("triton")
        _TRITON[key] = backend.attention if backend is not None and backend.unavailable_reason(device) is None else None
    return _TRITON[key]


def _variant_kernels(q, k, window, rotary, causal) -> AttentionKernels:
    """Who runs this attention on the cuda backend: a variant (window, causal, rotary, grouped K/V
    heads) the Triton kernels where Triton runs here, anything else this module's host functions
    (the same answer in the forward and the backward, which must agree on who saved what)."""
    if reference.is_variant(q, k, window, rotary, causal):
        return triton_attention(q.device) or KERNELS
    return KERNELS


def cuda_forward(q, k, v, mask, scale, mode, window=None, rotary=None, causal=False):
    return _variant_kernels(q, k, window, rotary, causal).forward(q, k, v, mask, scale, mode, window, rotary, causal)


def cuda_backward(grad_out, q, k, v, mask, scale, mode, saved, window=None, rotary=None, input_eps=0.0,
                  causal=False):
    return _variant_kernels(q, k, window, rotary, causal).backward(grad_out, q, k, v, mask, scale, mode, saved,
                                                                   window, rotary, input_eps, causal)


#: the ``cuda`` backend's attention: the variants on the Triton kernels (see the module docstring)
CUDA_KERNELS = AttentionKernels(
    forward=cuda_forward,
    backward=cuda_backward,
    disentangled_forward=reference.disentangled_forward,
    disentangled_backward=reference.disentangled_backward,
)
