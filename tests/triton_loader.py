"""Importing lrp_kernels.backends.triton for the tests: compiled on a GPU, interpreted on the CPU."""

import os
import sys

import pytest
import torch

PACKAGE = "lrp_kernels.backends.triton"
_NO_TRITON = "triton is not installed (it is a test dependency: pip install -e .[test])"


def load_triton_backend():
    """``(package, None)`` with the Triton backend package ready to run here, or ``(None, reason)``.

    Triton decides between compiling and interpreting when a kernel is decorated — when
    lrp_kernels.backends.triton is first imported — and imports parts of itself lazily at launch,
    so without a GPU TRITON_INTERPRET=1 is set for the rest of this process *before* that import.
    The package is re-imported if something (the registry, another test) imported it earlier
    without the interpreter. Call this at import time of a test module, before anything else in
    the module can import the Triton backend.
    """
    if torch.cuda.is_available():
        # one config per kernel: autotuning would compile every config for every test's shapes
        os.environ.setdefault("LRP_KERNELS_TRITON_AUTOTUNE", "0")
    else:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton  # noqa: F401
    except ImportError:
        return None, _NO_TRITON
    if not torch.cuda.is_available() and not getattr(sys.modules.get(PACKAGE), "INTERPRETED", True):
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
    import lrp_kernels.backends.triton as package

    reason = package.why_unavailable()
    return (package, None) if reason is None else (None, reason)


def import_triton_backend():
    """The Triton backend package, or skip the whole calling test module with the reason."""
    package, reason = load_triton_backend()
    if package is None:
        pytest.skip(reason, allow_module_level=True)
    return package
