"""Compiled kernels of the attention rules (``csrc/attention.{cpp,cu}``: the masked softmax and its
backward; math: ``lrp_kernels/ops/attention.py``).

The GEMMs stay on ``torch.matmul`` around the softmax kernels, unless the torch reference runs this
attention as one fused aten kernel (FlashAttention style, no stored probabilities): then that is
used as it is, being both faster and leaner. cp_lrp needs P and always takes the softmax kernels.

The variants — sliding windows, causal attention, rotary positions, grouped K/V heads — run the
torch reference on the CPU (``cpp``; no kernels of their own yet). The ``cuda`` backend declares its
own kernel set, :data:`CUDA_KERNELS`: there the variants run the Triton backend's flash-style kernels
when Triton runs on the device (installed, with its GPU compiler), else the torch reference (on CUDA:
SDPA with a dense [B, 1, L, L] mask). DeBERTa's disentangled attention runs the reference on both.
"""

from __future__ import annotations

import torch

from lrp_kernels.backends import registry
from lrp_kernels.backends.contract import AttentionKernels
from lrp_kernels.backends.torch import attention as reference

from . import linear
from ._glue import DTYPE_CODES, launch, rows, supported


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


def _reference_runs(q, k, mask, mode, window, rotary, causal):
    return reference.uses_fused_kernel(q, mode, mask) or reference.is_variant(q, k, window, rotary, causal)


def forward(q, k, v, mask, scale, mode, window=None, rotary=None, causal=False):
    if _reference_runs(q, k, mask, mode, window, rotary, causal):
        return reference.forward(q, k, v, mask, scale, mode, window, rotary, causal)
    probs = softmax_forward(torch.matmul(q, k.transpose(-1, -2)), mask, scale)
    return torch.matmul(probs, v), (probs,)


def backward(grad_out, q, k, v, mask, scale, mode, saved, window=None, rotary=None, input_eps=0.0, causal=False):
    if _reference_runs(q, k, mask, mode, window, rotary, causal):
        return reference.backward(grad_out, q, k, v, mask, scale, mode, saved, window, rotary, input_eps, causal)
    grad_out = grad_out.contiguous()  # the model's gradient arrives as a transposed view of merged heads
    grads = reference.eager_backward(grad_out, q, k, v, saved[0], scale, mode, softmax_backward=softmax_backward)
    return reference.with_input_eps(grads, (q, k, v), input_eps, ratio=linear.eps_ratio)


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
