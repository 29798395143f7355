"""The torch backend: eager PyTorch, on every device torch runs on.

It is the reference: every kernel of the other backends is tested against these host functions,
and these against explicit float64 LRP (``tests/explicit_lrp.py``). One file per rule, named as in
``lrp_kernels/ops/``.
"""

from __future__ import annotations

from lrp_kernels.backends.contract import Backend

from . import activation, attention, gated_mlp, layer_norm, linear, rms_norm

BACKEND = Backend(
    name="torch",
    devices=("cpu", "cuda"),
    why_unavailable=lambda: None,
    linear=linear.KERNELS,
    layer_norm=layer_norm.KERNELS,
    activation=activation.KERNELS,
    attention=attention.KERNELS,
    rms_norm=rms_norm.KERNELS,
    gated_mlp=gated_mlp.KERNELS,
)
