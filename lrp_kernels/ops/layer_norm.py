r"""LayerNorm under the identity rule on its normalization (σ held constant).

Math (Ali et al. 2022, CP-LRP; Achtibat et al. 2024, AttnLRP — both treat 1/σ as a constant):

    y = γ ⊙ (x − μ)/σ + β,          μ = mean_H(x),  σ = sqrt(var_H(x) + eps)

With σ constant, y is an affine map of x: y = M x + β with M = diag(γ)(I − 11ᵀ/H)/σ. The ε = 0 rule on
that map gives, in the gradient×input form,

    g_x = Mᵀ g_y = (γ⊙g_y − mean_H(γ⊙g_y)) / σ

and Σ R_x = Σ (y − β) ⊙ g_y: conservative with β = 0 (β absorbs its share). The forward is the
ordinary LayerNorm; it saves only 1/σ per row.

Kernels (:class:`~lrp_kernels.backends.contract.LayerNormKernels`): ``backends/{torch,cpp,triton}/layer_norm.py``,
``csrc/layer_norm.{cpp,cu}``; tests ``tests/ops/test_layer_norm.py``; benchmark ``benchmarks/ops/bench_layer_norm.py``.
"""

from __future__ import annotations

from lrp_kernels.backends.contract import Backend

from ._backend import or_reference
from ._norm import LRPNormFunction


def lrp_layer_norm(x, weight, bias, eps=1e-12, backend: Backend | None = None):
    """LayerNorm over the last dimension whose backward treats σ as a constant."""
    return LRPNormFunction.apply(or_reference(backend).layer_norm, x, weight, bias, float(eps))
