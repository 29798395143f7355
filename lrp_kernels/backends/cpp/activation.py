"""Compiled kernels of the activation rule (``csrc/activation.{cpp,cu}``; math:
``lrp_kernels/ops/activation.py``). GELU runs compiled; tanh and ReLU take the torch reference."""

from __future__ import annotations

from lrp_kernels.backends.contract import ActivationKernels
from lrp_kernels.backends.torch import activation as reference

from ._glue import approximate_code, elementwise, supported


def gelu_forward(u, approximate="none"):
    code = approximate_code(approximate)
    if not supported(u):
        return reference.gelu_forward(u, approximate)
    return elementwise("activation_gelu_forward", u, [u], prefix=(code,))


def gelu_backward(grad_h, u, approximate="none"):
    code = approximate_code(approximate)
    if not supported(grad_h, u):
        return reference.gelu_backward(grad_h, u, approximate)
    return elementwise("activation_gelu_backward", grad_h, [grad_h, u], prefix=(code,))


def forward(x, fn):
    reference.check_function(fn)
    if fn in ("gelu", "gelu_tanh"):
        return gelu_forward(x, reference.gelu_approximate(fn))
    return reference.forward(x, fn)


def backward(grad_y, x, fn):
    reference.check_function(fn)
    if fn in ("gelu", "gelu_tanh"):
        return gelu_backward(grad_y, x, reference.gelu_approximate(fn))
    return reference.backward(grad_y, x, fn)


KERNELS = ActivationKernels(forward=forward, backward=backward)
