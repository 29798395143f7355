"""The backend an op runs on when none is passed: the torch reference."""

from __future__ import annotations

from lrp_kernels.backends.contract import Backend


def or_reference(backend: Backend | None) -> Backend:
    if backend is None:
        from lrp_kernels.backends.torch import BACKEND

        return BACKEND
    return backend
