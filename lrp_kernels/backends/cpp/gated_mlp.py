"""Compiled kernels of the gated MLP rule (``csrc/gated_mlp.{cpp,cu}``; math: ``lrp_kernels/ops/gated_mlp.py``)."""

from __future__ import annotations

import torch

from lrp_kernels.backends.contract import GatedMLPKernels
from lrp_kernels.backends.torch import gated_mlp as reference

from ._glue import DTYPE_CODES, elementwise, launch, rows, supported

#: activation codes of csrc/kernels.h (GatedFn): the GELU approximate codes, then SiLU
FN_CODES = {"gelu": 0, "gelu_tanh": 1, "silu": 2}


def forward(a, b, fn):
    reference.check_function(fn)
    if not supported(a, b):
        return reference.forward(a, b, fn)
    return elementwise("gated_mlp_forward", a, [a, b], prefix=(FN_CODES[fn],))


def backward(grad_u, a, b, fn, eps):
    reference.check_function(fn)
    if not supported(grad_u, a, b):
        return reference.backward(grad_u, a, b, fn, eps)
    (gm, g_stride), (am, a_stride), (bm, b_stride) = rows(grad_u), rows(a), rows(b)
    n_rows, cols = am.shape
    out = torch.empty((*a.shape[:-1], 2 * cols), dtype=a.dtype, device=a.device)
    launch("gated_mlp_backward", a.device, DTYPE_CODES[a.dtype], FN_CODES[fn], n_rows, cols,
           gm.data_ptr(), g_stride, am.data_ptr(), a_stride, bm.data_ptr(), b_stride, float(eps),
           out.data_ptr(), 2 * cols)
    return out


KERNELS = GatedMLPKernels(forward=forward, backward=backward)
