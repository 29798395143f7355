"""Importing lrp_kernels.triton for the Triton tests: compiled on a GPU, interpreted on the CPU."""

import os
import sys

import pytest
import torch

_NO_TRITON = "triton is not installed (it is a test dependency: pip install -e .[test])"


def import_triton_backend():
    """Import lrp_kernels.backends.triton, with its kernels run by Triton's interpreter when there is no GPU.

    Triton decides between compiling and interpreting when a kernel is decorated — when
    lrp_kernels.backends.triton is first imported — and imports parts of itself lazily at launch, so
    TRITON_INTERPRET=1 is set for the rest of this process before that import. The package is
    re-imported if another test imported it without the interpreter.
    """
    if torch.cuda.is_available():
        # one config per kernel: autotuning would compile every config for every test's shapes
        os.environ.setdefault("LRP_KERNELS_TRITON_AUTOTUNE", "0")
    else:
        os.environ["TRITON_INTERPRET"] = "1"
    pytest.importorskip("triton", reason=_NO_TRITON)
    package = "lrp_kernels.backends.triton"
    if not torch.cuda.is_available() and not getattr(sys.modules.get(package), "INTERPRETED", True):
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
    import lrp_kernels.backends.triton as backend

    if backend.why_unavailable() is not None:
        pytest.skip(backend.why_unavailable(), allow_module_level=True)
    return backend
