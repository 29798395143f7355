r"""RMSNorm under the identity rule on its normalization (1/rms held constant).

Math (the treatment of LayerNorm's σ in Ali et al. 2022, CP-LRP, and Achtibat et al. 2024, AttnLRP,
applied to Zhang & Sennrich 2019's RMSNorm, as in EuroBERT and Llama):

    y = γ ⊙ x / rms(x),          rms(x) = sqrt(mean_H(x²) + eps)

With rms constant, y = D x is linear with the diagonal D = diag(γ)/rms, and the ε = 0 rule gives, in
the gradient×input form,

    g_x = Dᵀ g_y = γ ⊙ g_y / rms          R_x = x ⊙ g_x = y ⊙ g_y = R_y

— element by element the identity rule: conservative exactly (there is no bias). The forward is
the ordinary RMSNorm; it saves only 1/rms per row. The autograd Function is the one LayerNorm uses
(:mod:`lrp_kernels.ops._norm`).

LayerNorm *without* bias (ModernBERT) needs no rule of its own: it is :mod:`lrp_kernels.ops.layer_norm`
with ``bias=None`` (σ held constant; conservative, as β = 0).

Kernels (:class:`~lrp_kernels.backends.contract.RMSNormKernels`): ``backends/torch/rms_norm.py`` (the
reference), ``backends/cpp/rms_norm.py`` (``csrc/rms_norm.{cpp,cu}``: cpp and cuda), ``backends/triton/rms_norm.py``.
Tests ``tests/ops/test_rms_norm.py``; benchmark ``benchmarks/ops/bench_rms_norm.py``.
"""

from __future__ import annotations

from lrp_kernels.backends.contract import Backend

from ._backend import or_reference
from ._norm import LRPNormFunction


def lrp_rms_norm(x, weight, eps=1e-6, backend: Backend | None = None):
    """RMSNorm over the last dimension whose backward treats 1/rms as a constant."""
    return LRPNormFunction.apply(or_reference(backend).rms_norm, x, weight, float(eps))
