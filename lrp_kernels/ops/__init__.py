"""The LRP rules as autograd Functions, one file per rule (the math in its docstring, with the paper).

Every op's forward is the ordinary op; its backward returns a *modified gradient* g such that the
relevance of any input x is ``x ⊙ g`` (the gradient×input form), so one backward pass of a model
built from these ops yields the relevance. Each functional API takes a resolved
:class:`~lrp_kernels.backends.Backend` (None: the torch reference) whose kernel set for that rule
runs the element-wise and row-wise parts. This layer imports only :mod:`lrp_kernels.backends`.
"""

from lrp_kernels.ops.activation import lrp_activation
from lrp_kernels.ops.attention import additive_mask, lrp_attention, lrp_disentangled_attention
from lrp_kernels.ops.gated_mlp import lrp_gated_mlp
from lrp_kernels.ops.layer_norm import lrp_layer_norm
from lrp_kernels.ops.linear import lrp_linear
from lrp_kernels.ops.rms_norm import lrp_rms_norm

__all__ = ["additive_mask", "lrp_activation", "lrp_attention", "lrp_disentangled_attention", "lrp_gated_mlp",
           "lrp_layer_norm", "lrp_linear", "lrp_rms_norm"]
