"""The autograd Function of the normalizations whose rule holds the per-row scale constant.

LayerNorm (1/σ, :mod:`lrp_kernels.ops.layer_norm`) and RMSNorm (1/rms, :mod:`lrp_kernels.ops.rms_norm`)
differ in their math, which lives in their kernel sets, but not in how they join autograd: the
forward kernel returns ``(y, …, rstd)``, the backward kernel maps ``(grad_y, weight, rstd)`` to the
rule's gradient at x. One Function serves both, so the two cannot drift apart.
"""

from __future__ import annotations

import torch


class LRPNormFunction(torch.autograd.Function):
    """``apply(kernels, x, weight, *args)``: ``kernels.forward(x, weight, *args)`` whose last output
    is the saved row scale; the backward is ``kernels.backward(grad_y, weight, rstd)`` for x only."""

    @staticmethod
    def forward(ctx, kernels, x, weight, *args):
        out = kernels.forward(x, weight, *args)
        ctx.kernels, ctx.n_args = kernels, len(args)
        ctx.save_for_backward(weight, out[-1])
        return out[0]

    @staticmethod
    def backward(ctx, grad_y):
        weight, rstd = ctx.saved_tensors
        return (None, ctx.kernels.backward(grad_y, weight, rstd), None) + (None,) * ctx.n_args
