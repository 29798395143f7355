"""Backend selection for the LRP ops.

Every op in :mod:`lrp_kernels.ops` has a forward (the ordinary op) and a backward (the LRP rule in
the gradient×input form). The element-wise and row-wise parts of those are *host functions* that a
backend provides; the GEMMs stay on ``torch.matmul`` unless a backend provides a whole fused op.

A backend is a module (or any object) with these attributes, all taking and returning torch
tensors. Each may be missing; a missing one falls back to the torch reference for that op.

================================  =====================================================================
host function                     contract (all math in float32, results in the input dtype unless said)
================================  =====================================================================
``layer_norm_forward``            ``(x[..., H], weight[H], bias[H], eps) -> (y, mean[...] f32, rstd[...] f32)``
``layer_norm_backward``           ``(grad_y[..., H], weight[H], rstd[...] f32) -> grad_x``;
                                  ``grad_x = rstd * (w*g - mean_H(w*g))`` (σ held constant)
``softmax_forward``               ``(scores[B, H, Lq, Lk], mask[B, Lk] f32 additive or None, scale)
                                  -> probs = softmax(scores*scale + mask[:, None, None, :])``
``softmax_backward``              ``(grad_p, probs, factor) -> factor * p * (grad_p - sum_k(p*grad_p))``
``eps_ratio``                     ``(grad_z, z, eps) -> grad_z * z / (z + eps*sign(z))``, sign(0)=1;
                                  eps == 0 returns grad_z unchanged
``gelu_forward``                  ``(u, approximate) -> gelu(u)``; approximate in {"none", "tanh"}
``gelu_backward``                 ``(grad_h, u, approximate) -> grad_h * gelu(u)/u`` (identity rule;
                                  the factor is 0.5 where ``|u| < 1e-6``)
``gelu_eps_ratio``                ``(grad_h, u, eps, approximate) -> gelu_backward(...) * ratio(u, eps)``:
                                  the identity rule of a GELU fused with the ε-stabilizer of the
                                  linear that produced ``u`` (its output feeds the GELU)
``attention_forward``             ``(q, k, v [B, H, L, D], mask[B, L] f32 or None, scale, mode)
                                  -> (out[B, H, L, D], saved: tuple of tensors)``
``attention_backward``            ``(grad_out, q, k, v, mask, scale, mode, saved) -> (gq, gk, gv)``;
                                  gq/gk are None for mode "cp_lrp"
================================  =====================================================================

Modes of attention: ``"grad"`` (plain gradient), ``"attnlrp"`` (softmax keeps its gradient, the
bilinear products split uniformly: V gets ½ and Q, K get ¼ of the plain gradient; Achtibat et al.
2024), ``"cp_lrp"`` (probabilities are constants, everything flows through V; Ali et al. 2022).

A backend also has ``available() -> str | None`` (None when usable, otherwise the reason) and
``devices``: the device types it runs on.

Selection: ``backend="auto" | "torch" | "cpp" | "cuda" | "triton"`` per call, or globally through
:func:`set_backend` / :func:`use_backend`. ``auto`` prefers the compiled kernels on the CPU and, on
CUDA, Triton when installed, then the CUDA kernels, then torch.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from types import ModuleType
from typing import Any, Iterator

BACKENDS = ("auto", "torch", "cpp", "cuda", "triton")

# name -> module path of the backend implementation; imported lazily.
_MODULES = {
    "torch": "lrp_kernels.ops._torch_backend",
    "cpp": "lrp_kernels._cpp_backend",
    "cuda": "lrp_kernels._cpp_backend",
    "triton": "lrp_kernels.triton",
}

_AUTO_ORDER = {
    "cpu": ("cpp", "torch"),
    "cuda": ("triton", "cuda", "torch"),
}

_state = threading.local()


class BackendUnavailable(RuntimeError):
    """A backend was requested explicitly but cannot run here."""


def _check_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")


def get_backend() -> str:
    """The global default backend name (``"auto"`` unless changed)."""
    return getattr(_state, "name", "auto")


def set_backend(name: str) -> None:
    """Set the default backend for this thread."""
    _check_name(name)
    _state.name = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager that sets the default backend and restores the previous one."""
    _check_name(name)
    previous = get_backend()
    _state.name = name
    try:
        yield
    finally:
        _state.name = previous


def _load(name: str) -> tuple[ModuleType | None, str | None]:
    """Import a backend module; return (module, None) or (None, reason)."""
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError as exc:  # not built / not installed
        return None, f"{name} backend cannot be imported ({exc})"
    reason = module.available() if hasattr(module, "available") else None
    if reason is None and name == "cuda" and not getattr(module, "has_cuda", lambda: False)():
        reason = "the compiled extension was built without CUDA (set LRP_KERNELS_CUDA=1 and reinstall)"
    return (module, None) if reason is None else (None, reason)


def _device_type(device: Any) -> str:
    return getattr(device, "type", str(device).split(":")[0])


def unavailable_reason(name: str, device: Any = "cpu") -> str | None:
    """Why backend ``name`` cannot run on ``device`` (None when it can)."""
    _check_name(name)
    if name == "auto":
        return None
    module, reason = _load(name)
    if module is None:
        return reason
    dev = _device_type(device)
    devices = getattr(module, "devices", ("cpu", "cuda"))
    if callable(devices):
        devices = devices()
    if name == "cuda":
        devices = ("cuda",)
    elif name == "cpp":
        devices = ("cpu",)
    if dev not in devices:
        return f"the {name} backend does not run on {dev} tensors (it runs on: {', '.join(devices)})"
    return None


def resolve(backend: str | None, device: Any) -> tuple[str, Any]:
    """Return ``(name, module)`` of the backend to use for tensors on ``device``.

    An explicitly requested backend that cannot run raises :class:`BackendUnavailable` with the
    reason; ``auto`` walks the preference list of the device type and ends at torch.
    """
    name = backend if backend is not None else get_backend()
    _check_name(name)
    dev = _device_type(device)
    if name != "auto":
        reason = unavailable_reason(name, device)
        if reason is not None:
            raise BackendUnavailable(f"backend {name!r} is not available: {reason}")
        return name, _load(name)[0]
    for candidate in _AUTO_ORDER.get(dev, ("torch",)):
        if unavailable_reason(candidate, device) is None:
            return candidate, _load(candidate)[0]
    return "torch", _load("torch")[0]


def host_function(module: Any, fn_name: str):
    """The backend's implementation of ``fn_name``, or the torch reference if it has none."""
    fn = getattr(module, fn_name, None)
    if fn is None:
        fn = getattr(importlib.import_module(_MODULES["torch"]), fn_name)
    return fn


def available_backends(device: Any = "cpu") -> dict[str, str | None]:
    """Map every concrete backend to None (usable on ``device``) or the reason it is not."""
    return {name: unavailable_reason(name, device) for name in BACKENDS if name != "auto"}
