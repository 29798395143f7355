"""The contract every backend implements, as code.

A backend is one :class:`Backend` value: its name, the device types it runs on, a function that
says why it cannot run here (or None), and one kernel set per rule. A kernel set is a small frozen
dataclass of *host functions* — functions on torch tensors that run the element-wise and row-wise
parts of one rule's forward and backward (the GEMMs stay on ``torch.matmul``: cuBLAS on CUDA). The math of each rule is stated once, in ``lrp_kernels/ops/<rule>.py``;
the torch backend (``backends/torch/<rule>.py``) is the reference every other backend is tested
against. Every field is required: a backend that has no kernel of its own for a rule passes the
torch reference's kernel set explicitly, so nothing is found by duck typing.

Shared conventions of the host functions:

* Math in float32 (float64 inputs stay float64), results in the input dtype unless stated.
* The one stabilizer: ``z + ε·sign(z)`` with sign(0) = 1 (``backends.torch.linear.stabilize``).
* ``approximate`` of GELU is ``"none"`` (erf) or ``"tanh"``; ``fn`` of an activation is one of
  :data:`ACTIVATIONS`.
* ``mask`` of attention is additive, ``[B, L]`` float32: 0 at tokens, ``finfo(float32).min`` at padding.
* ``mode`` of attention is one of :data:`ATTENTION_MODES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

Tensor = torch.Tensor

#: element-wise functions of the activation rule (``ops/activation.py``)
ACTIVATIONS = ("gelu", "gelu_tanh", "tanh", "relu")
#: backward rules of attention (``ops/attention.py``)
ATTENTION_MODES = ("grad", "attnlrp", "cp_lrp")


@dataclass(frozen=True)
class LinearKernels:
    """The ε-rule of a linear layer (``ops/linear.py``).

    ``eps_ratio(grad_z, z, eps) -> grad_z · z/(z + ε·sign z)``; ε = 0 returns ``grad_z`` unchanged.
    ``gelu_eps_ratio(grad_h, u, eps, approximate) -> grad_h · gelu(u)/u · u/(u + ε·sign u)``: the
    identity rule of a GELU fused with the stabilizer of the linear that produced ``u``. Each is
    applied once per element; the op then multiplies by the weight with ``torch.matmul``.
    """

    eps_ratio: Callable[[Tensor, Tensor, float], Tensor]
    gelu_eps_ratio: Callable[[Tensor, Tensor, float, str], Tensor]


@dataclass(frozen=True)
class LayerNormKernels:
    """LayerNorm with 1/σ held constant (``ops/layer_norm.py``).

    ``forward(x[..., H], weight[H] | None, bias[H] | None, eps) -> (y, mean[...] f32, rstd[...] f32)``;
    ``backward(grad_y[..., H], weight[H] | None, rstd[...] f32) -> rstd · (w·g − mean_H(w·g))``.
    """

    forward: Callable[[Tensor, Optional[Tensor], Optional[Tensor], float], "tuple[Tensor, Tensor, Tensor]"]
    backward: Callable[[Tensor, Optional[Tensor], Tensor], Tensor]


@dataclass(frozen=True)
class ActivationKernels:
    """Element-wise activations under the identity rule (``ops/activation.py``).

    ``forward(x, fn) -> fn(x)``; ``backward(grad_y, x, fn) -> grad_y · fn(x)/x`` (guarded at x ≈ 0
    by the limit; ReLU: its gradient).
    """

    forward: Callable[[Tensor, str], Tensor]
    backward: Callable[[Tensor, Tensor, str], Tensor]


@dataclass(frozen=True)
class AttentionKernels:
    """Scaled dot-product attention with three backward rules (``ops/attention.py``).

    ``forward(q, k, v [B, H, L, D], mask [B, L] | None, scale, mode) -> (out [B, H, L, D], saved)``
    where ``saved`` is a tuple of tensors the same backend's backward reads;
    ``backward(grad_out, q, k, v, mask, scale, mode, saved, input_eps=0.0) -> (g_q, g_k, g_v)``,
    g_q = g_k = None for ``cp_lrp``; with ``input_eps`` > 0 each gradient comes back multiplied by
    the ε-ratio ``x/(x + ε·sign x)`` of its input — the rule of the linears that produced q, k, v,
    applied here once per element so that their own backward is a plain GEMM.
    """

    forward: Callable[..., "tuple[Tensor, tuple[Tensor, ...]]"]
    backward: Callable[..., "tuple[Optional[Tensor], Optional[Tensor], Tensor]"]


@dataclass(frozen=True)
class Backend:
    """One backend: where it runs, whether it can run here, and its kernels for every rule."""

    name: str
    devices: tuple[str, ...]
    why_unavailable: Callable[[], Optional[str]]
    linear: LinearKernels
    layer_norm: LayerNormKernels
    activation: ActivationKernels
    attention: AttentionKernels

    def unavailable_reason(self, device: Any = "cpu") -> Optional[str]:
        """Why this backend cannot run on ``device`` (None when it can)."""
        reason = self.why_unavailable()
        if reason is not None:
            return reason
        kind = device_type(device)
        if kind not in self.devices:
            return f"the {self.name} backend does not run on {kind} tensors (it runs on: {', '.join(self.devices)})"
        if kind == "cuda" and not torch.cuda.is_available():
            return "no CUDA device is available on this machine"
        return None

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, devices={self.devices})"


def device_type(device: Any) -> str:
    """``"cpu"`` / ``"cuda"`` / … of a torch.device, a tensor or a device string."""
    if isinstance(device, torch.Tensor):
        return device.device.type
    return getattr(device, "type", str(device).split(":")[0])
