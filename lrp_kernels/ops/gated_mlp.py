r"""The gated MLP input of GeGLU / SwiGLU feed-forward blocks: u = act(a) ⊙ b with a, b linear in x.

Math (Achtibat et al., ICML 2024, AttnLRP: identity rule for element-wise non-linearities, uniform
rule for a product of two inputs; the ε-rule of Bach et al. 2015 for the linears):

    a = W_a x + b_a,   b = W_b x + b_b,   u = act(a) ⊙ b        (act = GELU: GeGLU, SiLU: SwiGLU)

Product, uniform rule: R_act = R_b = ½ R_u; activation, identity rule: R_a = R_act. In the
gradient×input form (R = x ⊙ g)

    g_a = ½ g_u ⊙ b ⊙ act(a)/a          g_b = ½ g_u ⊙ act(a)

(act(a)/a → its limit at a = 0: ½ for GELU, sigmoid(0) = ½ for SiLU), and R_a + R_b = u ⊙ g_u = R_u:
conservative. The ε-rule of the two linears then multiplies by a/(a + ε·sign a) and b/(b + ε·sign b);
all of it is ONE element-wise pass whose output s = [s_a | s_b] feeds the backward GEMM
g_x = s_a W_a + s_b W_b — a single GEMM when W_a and W_b are the two halves of one weight
(ModernBERT's ``Wi``), the way :mod:`lrp_kernels.ops.linear` fuses a GELU into its ε-ratio.
No weight or bias gradient is computed.

Kernels (:class:`~lrp_kernels.backends.contract.GatedMLPKernels`): ``backends/torch/gated_mlp.py`` (the
reference), ``backends/cpp/gated_mlp.py`` (``csrc/gated_mlp.{cpp,cu}``: cpp and cuda), ``backends/triton/gated_mlp.py``.
Tests ``tests/ops/test_gated_mlp.py``; benchmark ``benchmarks/ops/bench_gated_mlp.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrp_kernels.backends.contract import Backend
from lrp_kernels.backends.torch.gated_mlp import check_function

from ._backend import or_reference
from ._rows import rowwise


def _projections(x, weight, bias, up_weight, up_bias):
    """(a, b): the two halves of one linear (``up_weight`` None) or two linears."""
    if up_weight is None:
        return F.linear(x, weight, bias).chunk(2, dim=-1)
    return F.linear(x, weight, bias), F.linear(x, up_weight, up_bias)


class LRPGatedMLPFunction(torch.autograd.Function):
    """Forward: act(a) ⊙ b; backward: identity × uniform × ε-ratio in one pass, then the GEMM."""

    @staticmethod
    def forward(ctx, x, weight, bias, up_weight, up_bias, fn, eps, backend: Backend):
        a, b = _projections(x, weight, bias, up_weight, up_bias)
        ctx.fn, ctx.eps, ctx.kernels = fn, eps, backend.gated_mlp
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(a, b, weight, up_weight)
        return backend.gated_mlp.forward(a, b, fn)

    @staticmethod
    def backward(ctx, grad_u):
        if grad_u is None:
            return (None,) * 8
        a, b, weight, up_weight = ctx.saved_tensors
        kernels, fn, eps = ctx.kernels, ctx.fn, ctx.eps

        def rule(g, a, b):
            s = kernels.backward(g, a, b, fn, eps)
            if up_weight is None:
                return torch.matmul(s, weight)
            half = a.shape[-1]
            return torch.matmul(s[..., :half], weight).add_(torch.matmul(s[..., half:], up_weight))

        # rows of grad_u that are all zero (a language model's positions not explained) are skipped
        return (rowwise(grad_u, (a, b), weight.shape[1], rule),) + (None,) * 7


def lrp_gated_mlp(x, weight, bias=None, fn="gelu", eps=1e-6, backend: Backend | None = None,
                  up_weight=None, up_bias=None):
    """``act(a) ⊙ b`` under the gated MLP rule, ``act`` one of :data:`lrp_kernels.backends.contract.GATED_ACTIVATIONS`.

    ``a = F.linear(x, weight, bias)`` and ``b = F.linear(x, up_weight, up_bias)``; with ``up_weight``
    None, ``weight`` [2I, H] holds both (a's rows first: ``F.linear(x, weight, bias).chunk(2)``)."""
    check_function(fn)
    return LRPGatedMLPFunction.apply(x, weight, bias, up_weight, up_bias, fn, float(eps), or_reference(backend))
