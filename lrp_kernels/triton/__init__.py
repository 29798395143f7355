"""The Triton backend (``backend="triton"``): fused LRP kernels written in Triton.

Host functions of the contract in :mod:`lrp_kernels.backend`, same signatures and semantics as the
torch reference (:mod:`lrp_kernels.ops._torch_backend`):

* ``layer_norm_forward``, ``layer_norm_backward`` — row-wise kernels (:mod:`.layer_norm`);
* ``gelu_forward``, ``gelu_backward``, ``gelu_eps_ratio`` — element-wise kernels (:mod:`.gelu`);
* ``eps_ratio`` — the ε-stabilizer alone (:mod:`.linear`);
* ``attention_forward``, ``attention_backward`` — FlashAttention-style fused attention with the
  ``grad`` / ``attnlrp`` / ``cp_lrp`` backward; ``saved`` is ``(out, row_max, row_log_sum)``, or
  ``(q, k, row_max, row_log_sum)`` for ``cp_lrp`` (:mod:`.attention`).

Extra, beyond the contract: ``linear_backward(grad_z, z, weight, eps, gelu_input=None,
approximate="none") -> grad_x``, the ε-rule backward of a linear as one GEMM with the rule applied
to the operand on load (:mod:`.linear`). ``softmax_forward`` / ``softmax_backward`` are not provided:
the fused attention never forms the probabilities, so those fall back to the torch reference.

Where it runs: on CUDA devices with Triton's GPU compiler, or — when ``TRITON_INTERPRET=1`` was set
before this package was first imported — through Triton's NumPy interpreter on CPU tensors (for
tests; about a thousand times slower). float64 inputs are handed to the torch reference.
"""

from __future__ import annotations

import os

try:
    import triton  # noqa: F401
except ImportError as exc:  # the backend loader turns this into "cannot be imported (...)"
    raise ImportError(f"triton is not installed ({exc}); pip install triton") from exc

import torch

from ._common import INTERPRETED
from .attention import attention_backward, attention_forward
from .gelu import gelu_backward, gelu_eps_ratio, gelu_forward
from .layer_norm import layer_norm_backward, layer_norm_forward
from .linear import eps_ratio, linear_backward

#: Device types the kernels run on: CUDA, plus CPU when they were built for the interpreter.
devices: tuple[str, ...] = ("cuda", "cpu") if INTERPRETED else ("cuda",)

__all__ = [
    "INTERPRETED",
    "attention_backward",
    "attention_forward",
    "available",
    "devices",
    "eps_ratio",
    "gelu_backward",
    "gelu_eps_ratio",
    "gelu_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "linear_backward",
]


def available() -> str | None:
    """None when the kernels can run here, otherwise the reason.

    Usable when the kernels were built for the interpreter and ``TRITON_INTERPRET=1`` is still set,
    or when they were compiled for the GPU and a CUDA device exists.
    """
    if INTERPRETED:
        if os.environ.get("TRITON_INTERPRET", "0") == "1":
            return None
        return "the Triton kernels were built for the interpreter, but TRITON_INTERPRET=1 is no longer set"
    if torch.cuda.is_available():
        return None
    return "no CUDA device (set TRITON_INTERPRET=1 before importing lrp_kernels to run Triton on the CPU)"
