r"""Linear layer with the sign-aware ε-rule, optionally followed by a GELU under the identity rule.

Math (Bach et al. 2015, ε-rule; gradient×input form of Arras et al. 2025):

    z = W x + b
    R_x = x ⊙ Wᵀ (R_z / (z + ε·sign z))          sign(0) = 1
    ⇒ modified gradient   g_x = Wᵀ (g_z ⊙ z / (z + ε·sign z))        (R = x ⊙ g everywhere)

The bias absorbs its share, Σ R_x = Σ R_z − Σ_j b_j R_z_j / (z_j + ε sign z_j); with b = 0 and ε = 0
the rule is exactly conservative and g_x is the plain gradient.

With ``activation="gelu"`` the op is h = GELU(W x + b) (a BERT intermediate layer) and the GELU
follows the identity rule (R_u = R_h, i.e. g_u = g_h ⊙ GELU(u)/u, Achtibat et al. 2024). Folded into
the stabilizer of the linear that produced u, the backward GEMM is fed

    s = g_h ⊙ GELU(u)/u ⊙ u/(u + ε·sign u)         (GELU(u)/u → ½ as u → 0)

and g_x = Wᵀ s — one fused element-wise pass instead of two.

No weight or bias gradient is ever computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrp_kernels.backend import host_function

ACTIVATIONS = {None: None, "gelu": "none", "gelu_tanh": "tanh"}


class LRPLinearFunction(torch.autograd.Function):
    """Forward: ``F.linear`` (then GELU); backward: the ε-rule (fused with GELU's identity rule)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, activation, impl):
        z = F.linear(x, weight, bias)
        approximate = ACTIVATIONS[activation]
        ctx.eps, ctx.approximate, ctx.impl = eps, approximate, impl
        # A consumer that passes no gradient (the Q and K projections under cp_lrp) gets None here
        # rather than zeros, and the backward GEMM is skipped.
        ctx.set_materialize_grads(False)
        if approximate is None:
            ctx.save_for_backward(weight, z if eps != 0 else None)
            return z
        ctx.save_for_backward(weight, z)
        return host_function(impl, "gelu_forward")(z, approximate)

    @staticmethod
    def backward(ctx, grad_out):
        if grad_out is None:
            return None, None, None, None, None, None
        weight, z = ctx.saved_tensors
        fused = getattr(ctx.impl, "linear_backward", None)
        if fused is not None:
            if ctx.approximate is None:
                grad_x = fused(grad_out, z, weight, ctx.eps)
            else:
                grad_x = fused(grad_out, None, weight, ctx.eps, gelu_input=z, approximate=ctx.approximate)
            return grad_x, None, None, None, None, None
        if ctx.approximate is not None:
            s = host_function(ctx.impl, "gelu_eps_ratio")(grad_out, z, ctx.eps, ctx.approximate)
        elif ctx.eps != 0:
            s = host_function(ctx.impl, "eps_ratio")(grad_out, z, ctx.eps)
        else:
            s = grad_out
        return torch.matmul(s, weight), None, None, None, None, None


def lrp_linear(x, weight, bias=None, eps=1e-6, activation=None, impl=None):
    """``F.linear(x, weight, bias)`` (then GELU when ``activation`` is ``"gelu"``/``"gelu_tanh"``)
    whose backward is the ε-LRP rule. ``impl`` is a backend module (see :mod:`lrp_kernels.backend`);
    None uses the torch reference."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {sorted(a for a in ACTIVATIONS if a)}")
    if impl is None:
        from lrp_kernels.ops import _torch_backend as impl
    return LRPLinearFunction.apply(x, weight, bias, float(eps), activation, impl)
