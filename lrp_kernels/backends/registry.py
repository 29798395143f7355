"""The registry of backends and the choice of one per call.

Backends are imported lazily (importing Triton or the compiled module costs time and may fail);
a backend that cannot be imported is reported unavailable with the import error as the reason.
Selection: ``backend="auto" | "torch" | "cpp" | "cuda" | "triton"`` per call, or globally for this
thread through :func:`set_backend` / :func:`use_backend`. ``auto`` prefers the compiled kernels on
the CPU and, on CUDA, Triton when it runs, then the CUDA kernels, then torch.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from typing import Any, Iterator

from lrp_kernels.backends.contract import Backend, device_type
from lrp_kernels.errors import BackendUnavailable, InputError

# name -> (module, attribute) of its Backend value
_LOCATIONS = {
    "torch": ("lrp_kernels.backends.torch", "BACKEND"),
    "cpp": ("lrp_kernels.backends.cpp", "CPP"),
    "cuda": ("lrp_kernels.backends.cpp", "CUDA"),
    "triton": ("lrp_kernels.backends.triton", "BACKEND"),
}
NAMES = tuple(_LOCATIONS)
BACKENDS = ("auto", *NAMES)

_AUTO_ORDER = {
    "cpu": ("cpp", "torch"),
    "cuda": ("triton", "cuda", "torch"),
}

_state = threading.local()


def check_name(name: str) -> None:
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")


def get_backend() -> str:
    """The default backend name of this thread (``"auto"`` unless changed)."""
    return getattr(_state, "name", "auto")


def set_backend(name: str) -> None:
    """Set the default backend for this thread."""
    check_name(name)
    _state.name = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager that sets the default backend and restores the previous one."""
    check_name(name)
    previous = get_backend()
    _state.name = name
    try:
        yield
    finally:
        _state.name = previous


def load(name: str) -> tuple[Backend | None, str | None]:
    """``(backend, None)``, or ``(None, reason)`` when its module cannot be imported."""
    check_name(name)
    module_name, attribute = _LOCATIONS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # not built / not installed
        return None, f"{name} backend cannot be imported ({exc})"
    return getattr(module, attribute), None


def unavailable_reason(name: str, device: Any = "cpu") -> str | None:
    """Why backend ``name`` cannot run on ``device`` (None when it can)."""
    check_name(name)
    if name == "auto":
        return None
    backend, reason = load(name)
    return reason if backend is None else backend.unavailable_reason(device)


def resolve(backend: str | Backend | None, device: Any) -> Backend:
    """The :class:`Backend` to use for tensors on ``device``.

    ``backend``: a name, a :class:`Backend` (returned as it is), or None for this thread's default.
    An explicitly named backend that cannot run raises :class:`BackendUnavailable` with the reason;
    ``auto`` walks the preference list of the device type and ends at torch.
    """
    if isinstance(backend, Backend):
        return backend
    name = backend if backend is not None else get_backend()
    check_name(name)
    if name != "auto":
        reason = unavailable_reason(name, device)
        if reason is not None:
            raise BackendUnavailable(f"backend {name!r} is not available: {reason}")
        return load(name)[0]
    for candidate in _AUTO_ORDER.get(device_type(device), ("torch",)):
        if unavailable_reason(candidate, device) is None:
            return load(candidate)[0]
    return load("torch")[0]


def available_backends(device: Any = "cpu") -> dict[str, str | None]:
    """Map every concrete backend to None (usable on ``device``) or the reason it is not."""
    return {name: unavailable_reason(name, device) for name in NAMES}
