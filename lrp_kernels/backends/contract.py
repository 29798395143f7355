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
* ``window`` of attention: None (global) or w ≥ 0, query i reads key j only when |i − j| ≤ w (a padded
  query row reads every unpadded key instead, so that no row is empty; it carries no relevance).
* ``causal`` of attention (decoders): query i reads key j only when j ≤ i — with a ``window`` also
  i − j ≤ w (a causal sliding window: Mistral's ``sliding_window`` s is w = s − 1). A padded query row
  of a causal attention ignores the key mask instead (it reads every key j ≤ i in the band, itself
  at least), so that no row is empty and nothing above the diagonal is ever read; it carries no
  relevance. A kernel skips the key blocks above the diagonal (and outside the band); it never
  builds the [L, L] mask.
* Soft-capped attention scores (Gemma 2, c·tanh(S/c)) are not part of the kernel sets: the op
  (``ops/attention.py``) runs them on the torch reference, whose ``forward``/``backward`` take a
  last argument ``softcap`` (None: no cap) that no other backend declares.
* ``rotary`` of attention: None or ``(cos, sin)``, each ``[B | 1, L, D]``; applied to q and k on load
  (``x·cos + rotate_half(x)·sin``, math in float32); the gradients returned are those of the
  un-rotated q and k.
* Grouped K/V heads: k and v may have H_kv heads with H % H_kv = 0; query head h reads K/V head
  h // (H / H_kv), and the gradient of a shared head is the sum over its query heads.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

Tensor = torch.Tensor

#: element-wise functions of the activation rule (``ops/activation.py``)
ACTIVATIONS = ("gelu", "gelu_tanh", "tanh", "relu")
#: backward rules of attention (``ops/attention.py``)
ATTENTION_MODES = ("grad", "attnlrp", "cp_lrp")
#: activations of the gated MLP rule (``ops/gated_mlp.py``): GeGLU and SwiGLU
GATED_ACTIVATIONS = ("gelu", "gelu_tanh", "silu")


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
class RMSNormKernels:
    """RMSNorm with 1/rms held constant (``ops/rms_norm.py``).

    ``forward(x[..., H], weight[H] | None, eps) -> (y, rstd[...] f32)`` with y = w · x/rms(x);
    ``backward(grad_y[..., H], weight[H] | None, rstd[...] f32) -> rstd · w · g``.
    """

    forward: Callable[[Tensor, Optional[Tensor], float], "tuple[Tensor, Tensor]"]
    backward: Callable[[Tensor, Optional[Tensor], Tensor], Tensor]


@dataclass(frozen=True)
class GatedMLPKernels:
    """The gating product u = act(a) ⊙ b of a GeGLU / SwiGLU (``ops/gated_mlp.py``), element-wise.

    ``forward(a, b, fn) -> act(a) · b`` (``fn`` one of :data:`GATED_ACTIVATIONS`);
    ``backward(grad_u, a, b, fn, eps) -> s [..., 2I]``, the input of the backward GEMM of the two
    linears that made a and b, in one pass: ``s[..., :I] = ½·g·b·act(a)/a · a/(a + ε·sign a)`` and
    ``s[..., I:] = ½·g·act(a) · b/(b + ε·sign b)`` (identity rule on act, uniform rule on the product,
    ε-rule of the linears). a and b may be strided views (the two halves of one GEMM's output).
    """

    forward: Callable[[Tensor, Tensor, str], Tensor]
    backward: Callable[[Tensor, Tensor, Tensor, str, float], Tensor]


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

    ``forward(q [B, H, L, D], k, v [B, H_kv, L, D], mask [B, L] | None, scale, mode, window=None,
    rotary=None, causal=False) -> (out [B, H, L, D], saved)`` where ``saved`` is a tuple of tensors
    the same backend's backward reads;
    ``backward(grad_out, q, k, v, mask, scale, mode, saved, window=None, rotary=None, input_eps=0.0,
    causal=False) -> (g_q, g_k, g_v)``, g_q = g_k = None for ``cp_lrp``; with ``input_eps`` > 0 each gradient comes
    back multiplied by the ε-ratio ``x/(x + ε·sign x)`` of its input — the rule of the linears that
    produced q, k, v, applied here once per element so that their own backward is a plain GEMM.

    DeBERTa's disentangled attention, S = scale·(Q Kᵀ + c2p + p2c) with c2p_ij = Q_i·P^K_δ(i,j) and
    p2c_ij = K_j·P^Q_δ(i,j):
    ``disentangled_forward(q, k, v [B, H, L, D], pos_key, pos_query [B | 1, H, R, D] | None,
    rel_index [L, L] int64 in [0, R), mask, scale, mode) -> (out, saved)``;
    ``disentangled_backward(grad_out, q, k, v, pos_key, pos_query, rel_index, mask, scale, mode,
    saved, position_grads) -> (g_q, g_k, g_v, g_pos_key, g_pos_query)`` — the position gradients
    only when ``position_grads`` (else None), with pos_key's / pos_query's shape.
    """

    forward: Callable[..., "tuple[Tensor, tuple[Tensor, ...]]"]
    backward: Callable[..., "tuple[Optional[Tensor], Optional[Tensor], Tensor]"]
    disentangled_forward: Callable[..., "tuple[Tensor, tuple[Tensor, ...]]"]
    disentangled_backward: Callable[..., "tuple[Optional[Tensor], ...]"]


#: the rules every backend declares a kernel set for (the fields of :class:`Backend` after its header)
RULES = ("linear", "layer_norm", "activation", "attention", "rms_norm", "gated_mlp")


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
    rms_norm: RMSNormKernels
    gated_mlp: GatedMLPKernels

    @classmethod
    def of_package(cls, name: str, devices: tuple[str, ...], why_unavailable, package: str, **kernels) -> "Backend":
        """The backend whose kernel set for each rule is ``<package>.<rule>.KERNELS``, except the rules
        given in ``kernels`` (a backend without kernels of its own for a rule passes the torch
        reference's here, explicitly)."""
        for rule in RULES:
            if rule not in kernels:
                kernels[rule] = importlib.import_module(f"{package}.{rule}").KERNELS
        return cls(name, devices, why_unavailable, **kernels)

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
