"""The Triton backend (``backend="triton"``): fused LRP kernels written in Triton.

One file per rule, named as in ``lrp_kernels/ops/``; each ends with its kernel set of the contract
(:mod:`lrp_kernels.backends.contract`), with the torch reference's semantics:

* :mod:`.layer_norm` — row-wise LayerNorm forward and its σ-constant backward (rows up to
  :data:`._norm.MAX_ROW` elements in one block; longer ones: the torch reference);
* :mod:`.rms_norm` — row-wise RMSNorm forward and its 1/rms-constant backward (the backward kernel
  is the norms' shared one, :mod:`._norm`);
* :mod:`.activation` — element-wise GELU and its identity rule (tanh and ReLU: the torch reference);
* :mod:`.linear` — the ε-ratio and the GELU-identity × ε-ratio, element-wise (the op's GEMM is
  ``torch.matmul``);
* :mod:`.attention` — FlashAttention-style fused attention with the ``grad`` / ``attnlrp`` /
  ``cp_lrp`` backward; ``saved`` is ``(out, row_max, row_log_sum)``, or ``(row_max, row_log_sum)``
  for ``cp_lrp``. Grouped K/V heads, sliding windows and causal masking (key blocks above the
  diagonal skipped) run in the kernels, in any combination, rotary positions too for head dims 16,
  32 and 64 on Hopper (under the interpreter: every power of two from 16); DeBERTa's disentangled
  attention runs the torch reference (the ``cuda`` backend runs its attention variants on these
  kernels too);
* :mod:`.gated_mlp` — GeGLU / SwiGLU: act(a)·b and the backward's one element-wise pass (identity
  rule on act × uniform split of the product × the two linears' ε-ratios), strided halves read in place.

Launching (configs per GPU generation, dtype and block size; tuning and its file; the device
guard; launch hooks): :mod:`._launch` and :mod:`.configs`. Ahead-of-time inspection for
sm_80/sm_90 without a GPU: :mod:`.aot`.

Where it runs: on CUDA devices with Triton's GPU compiler, or — when ``TRITON_INTERPRET=1`` was set
before this package was first imported — through Triton's NumPy interpreter on CPU tensors (for
tests; about a thousand times slower). float64 inputs are handed to the torch reference.
"""

from __future__ import annotations

import os

try:
    import triton  # noqa: F401  (the import error, if any, is the reason the backend is unavailable)
except ImportError as exc:
    raise ImportError(f"triton is not installed ({exc}); pip install triton") from exc

import torch

from lrp_kernels.backends.contract import Backend

from ._common import INTERPRETED


def why_unavailable() -> str | None:
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


# CUDA, plus CPU when the kernels were built for the interpreter; every rule's kernel set is this
# package's own (``<rule>.KERNELS``), none passed explicitly
BACKEND = Backend.of_package("triton", ("cuda", "cpu") if INTERPRETED else ("cuda",), why_unavailable, __name__)
