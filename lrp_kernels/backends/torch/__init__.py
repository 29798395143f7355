"""The torch backend: eager PyTorch, on every device torch runs on.

It is the reference: every kernel of the other backends is tested against these host functions,
and these against explicit float64 LRP (``tests/explicit_lrp.py``). One file per rule, named as in
``lrp_kernels/ops/``.
"""

from __future__ import annotations

from lrp_kernels.backends.contract import Backend

BACKEND = Backend.of_package("torch", ("cpu", "cuda"), lambda: None, __name__)
