"""The ``cpp`` and ``cuda`` backends: the compiled kernels of ``csrc/`` through ``lrp_kernels._C``.

One file per rule, named as in ``lrp_kernels/ops/`` and ``csrc/``; ``_glue.py`` turns tensors into
the pointers, sizes and row strides the torch-free kernels take. Both backends share the glue: CPU
tensors run the C++/OpenMP kernels (``cpp``), CUDA tensors the CUDA kernels (``cuda``). The kernels
take float32, float16 and bfloat16 and compute in float32; what they do not cover (float64,
mismatched dtypes or shapes, empty tensors, tanh/ReLU) runs the torch reference, which defines the
same math. The one rule whose kernel set differs between the two is attention: on ``cuda`` its
variants (windows, causal, rotary, grouped K/V heads) run the Triton kernels where Triton runs
(``attention.CUDA_KERNELS``).
"""

from __future__ import annotations

from lrp_kernels.backends.contract import Backend

from . import attention
from ._glue import why_cuda_unavailable, why_unavailable

CPP = Backend.of_package("cpp", ("cpu",), why_unavailable, __name__)
CUDA = Backend.of_package("cuda", ("cuda",), why_cuda_unavailable, __name__, attention=attention.CUDA_KERNELS)
