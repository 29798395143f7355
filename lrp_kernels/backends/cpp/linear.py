"""Compiled kernels of the linear ε-rule (``csrc/linear.{cpp,cu}``; math: ``lrp_kernels/ops/linear.py``)."""

from __future__ import annotations

from lrp_kernels.backends.contract import LinearKernels
from lrp_kernels.backends.torch import linear as reference

from ._glue import approximate_code, elementwise, supported


def eps_ratio(grad_z, z, eps):
    if eps == 0:
        return grad_z
    if not supported(grad_z, z):
        return reference.eps_ratio(grad_z, z, eps)
    return elementwise("linear_eps_ratio", grad_z, [grad_z, z], float(eps))


def gelu_eps_ratio(grad_h, u, eps, approximate="none"):
    code = approximate_code(approximate)
    if not supported(grad_h, u):
        return reference.gelu_eps_ratio(grad_h, u, eps, approximate)
    return elementwise("linear_gelu_eps_ratio", grad_h, [grad_h, u], float(eps), prefix=(code,))


KERNELS = LinearKernels(eps_ratio=eps_ratio, gelu_eps_ratio=gelu_eps_ratio)
