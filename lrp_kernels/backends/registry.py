"""The registry of backends and the choice of one per call.

Backends are imported lazily (importing Triton or the compiled module costs time and may fail);
a backend that cannot be imported is reported unavailable with the import error as the reason.
Selection: ``backend="auto" | "torch" | "cpp" | "cuda" | "triton"`` per call, or globally for this
thread through :func:`set_backend` / :func:`use_backend`. ``auto`` follows :data:`AUTO_RULES`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import threading
from typing import Any, Iterator

import torch

from lrp_kernels.backends.contract import RULES, Backend, device_type
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

#: What ``auto`` runs, per device type: backends in order of preference, each with the dtypes it is
#: taken for (None: every dtype). The first one that runs here takes its dtypes, the next one that
#: runs the rest (:func:`routed`), down to one that takes every dtype; torch is the last resort.
#: Triton on CUDA only for 16-bit tensors: its float32 ``tl.dot`` is IEEE float32 on the FMA units
#: (no tensor cores; torch's default, no TF32), so float32 goes to cuBLAS and SDPA, and every config
#: ``auto`` may pick for bfloat16/float16 compiles without register spills for sm_80 and sm_90
#: (asserted for exactly these dtypes by tests/backends/test_triton_compile.py). Whether Triton beats
#: torch(SDPA) end to end in bfloat16 is what ``benchmarks/gpu_check.sh`` decides on a GPU.
AUTO_RULES: dict[str, tuple[tuple[str, tuple | None], ...]] = {
    "cpu": (("cpp", None), ("torch", None)),
    "cuda": (("triton", (torch.bfloat16, torch.float16)), ("cuda", None), ("torch", None)),
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
    return _auto(device)


def _auto(device: Any) -> Backend:
    """The backend of :data:`AUTO_RULES` for ``device`` (routed by dtype where the first one that
    runs takes only some dtypes)."""
    chain = [(name, dtypes) for name, dtypes in AUTO_RULES.get(device_type(device), ())
             if unavailable_reason(name, device) is None]
    backend = load("torch")[0]
    for name, dtypes in reversed(chain):
        backend = load(name)[0] if dtypes is None else routed(load(name)[0], frozenset(dtypes), backend)
    return backend


@functools.lru_cache(maxsize=None)
def routed(primary: Backend, dtypes: frozenset, rest: Backend) -> Backend:
    """A backend that runs ``primary``'s kernels on tensors of ``dtypes`` and ``rest``'s on the
    others, chosen per call by the dtype of the call's first tensor (the data: ``x``, ``grad_out``,
    ``q``…), so a forward and its backward always land on the same backend."""
    def route(rule: str):
        ours, theirs = getattr(primary, rule), getattr(rest, rule)

        def pick(field):
            a, b = getattr(ours, field.name), getattr(theirs, field.name)
            return lambda *args, **kwargs: (a if _first_dtype(args) in dtypes else b)(*args, **kwargs)

        return dataclasses.replace(ours, **{f.name: pick(f) for f in dataclasses.fields(ours)})

    names = "/".join(sorted(str(d).replace("torch.", "") for d in dtypes))
    return Backend(
        name=f"{primary.name} ({names}) + {rest.name}",
        devices=tuple(d for d in primary.devices if d in rest.devices),
        why_unavailable=lambda: primary.why_unavailable() or rest.why_unavailable(),
        **{rule: route(rule) for rule in RULES},
    )


def _first_dtype(args) -> torch.dtype | None:
    return next((a.dtype for a in args if isinstance(a, torch.Tensor)), None)


def available_backends(device: Any = "cpu") -> dict[str, str | None]:
    """Map every concrete backend to None (usable on ``device``) or the reason it is not."""
    return {name: unavailable_reason(name, device) for name in NAMES}
