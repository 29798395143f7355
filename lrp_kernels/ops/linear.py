r"""Linear layer under the sign-aware ε-rule, optionally followed by a GELU under the identity rule.

Math (Bach et al. 2015, ε-rule; gradient×input form of Arras et al. 2025):

    z = W x + b
    R_x = x ⊙ Wᵀ (R_z / (z + ε·sign z))          sign(0) = 1
    ⇒ modified gradient   g_x = Wᵀ (g_z ⊙ z / (z + ε·sign z))        (R = x ⊙ g everywhere)

The bias absorbs its share, Σ R_x = Σ R_z − Σ_j b_j R_z_j / (z_j + ε sign z_j); with b = 0 and ε = 0
the rule is exactly conservative and g_x is the plain gradient.

With ``activation="gelu"`` (or ``"gelu_tanh"``) the op is h = GELU(W x + b) — a BERT intermediate
layer — and the GELU follows the identity rule (R_u = R_h, i.e. g_u = g_h ⊙ GELU(u)/u; Achtibat et
al. 2024). Folded into the stabilizer of the linear that produced u, the backward GEMM is fed

    s = g_h ⊙ GELU(u)/u ⊙ u/(u + ε·sign u)         (GELU(u)/u → ½ as u → 0)

and g_x = Wᵀ s — one fused element-wise pass instead of two. No weight or bias gradient is computed.

Kernels (:class:`~lrp_kernels.backends.contract.LinearKernels`): ``backends/{torch,cpp,triton}/linear.py``,
``csrc/linear.{cpp,cu}``; tests ``tests/ops/test_linear.py``; benchmark ``benchmarks/ops/bench_linear.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrp_kernels.backends.contract import Backend

from ._backend import or_reference
from ._rows import rowwise

#: activations that fuse into the linear's backward (their identity rule × the ε-ratio)
FUSED_ACTIVATIONS = {None: None, "gelu": "none", "gelu_tanh": "tanh"}


class LRPLinearFunction(torch.autograd.Function):
    """Forward: ``F.linear`` (then GELU); backward: the ε-rule (fused with GELU's identity rule)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, activation, backend: Backend):
        z = F.linear(x, weight, bias)
        approximate = FUSED_ACTIVATIONS[activation]
        ctx.eps, ctx.approximate, ctx.kernels = eps, approximate, backend.linear
        # A consumer that passes no gradient (the Q and K projections under cp_lrp) gets None here
        # rather than zeros, and the backward GEMM is skipped.
        ctx.set_materialize_grads(False)
        if approximate is None:
            ctx.save_for_backward(weight, z if eps != 0 else None)
            return z
        ctx.save_for_backward(weight, z)
        return backend.activation.forward(z, activation)

    @staticmethod
    def backward(ctx, grad_out):
        if grad_out is None:
            return None, None, None, None, None, None
        weight, z = ctx.saved_tensors
        kernels, eps, approximate = ctx.kernels, ctx.eps, ctx.approximate

        def rule(g, z):  # the rule once per element, then one GEMM (cuBLAS on CUDA)
            s = kernels.eps_ratio(g, z, eps) if approximate is None else kernels.gelu_eps_ratio(g, z, eps, approximate)
            return torch.matmul(s, weight)

        # rows of grad_out that are all zero (a language model's positions not explained) are skipped
        return rowwise(grad_out, (z,), weight.shape[1], rule), None, None, None, None, None


def lrp_linear(x, weight, bias=None, eps=1e-6, activation=None, backend: Backend | None = None):
    """``F.linear(x, weight, bias)`` (then GELU when ``activation`` is ``"gelu"``/``"gelu_tanh"``)
    whose backward is the ε-LRP rule. ``backend``: a resolved :class:`Backend` (None: the torch reference)."""
    if activation not in FUSED_ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {sorted(a for a in FUSED_ACTIVATIONS if a)}")
    return LRPLinearFunction.apply(x, weight, bias, float(eps), activation, or_reference(backend))
