"""The torch reference backend: every host function of :mod:`lrp_kernels.backend` in eager PyTorch.

These are the references the compiled and Triton kernels are tested against. Math is done in
float32 (float64 inputs stay float64) and results are cast back to the input dtype.
"""

from __future__ import annotations

import torch

devices = ("cpu", "cuda")

GELU_GUARD = 1e-6  # |u| below this uses the limit gelu(u)/u -> 1/2


def available() -> str | None:
    return None


def _acc(t: torch.Tensor) -> torch.Tensor:
    """Upcast to the accumulation dtype (float32, or float64 when given float64)."""
    return t if t.dtype == torch.float64 else t.float()


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)`` with sign(0) = 1 — the one stabilizer convention of the project."""
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def layer_norm_forward(x, weight, bias, eps):
    # aten's own LayerNorm: the output is bit-for-bit F.layer_norm's, and it returns mean and 1/σ.
    y, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)
    return y, _acc(mean.squeeze(-1)), _acc(rstd.squeeze(-1))


def layer_norm_backward(grad_y, weight, rstd):
    g = _acc(grad_y)
    if weight is not None:
        g = g * _acc(weight)
    g = g - g.mean(dim=-1, keepdim=True)
    return (g * rstd.unsqueeze(-1).to(g.dtype)).to(grad_y.dtype)


def softmax_forward(scores, mask, scale):
    s = _acc(scores) * scale
    if mask is not None:
        s = s + mask[:, None, None, :].to(s.dtype)
    return torch.softmax(s, dim=-1).to(scores.dtype)


def softmax_backward(grad_p, probs, factor):
    g = _acc(grad_p)
    p = _acc(probs)
    gp = p * g
    out = gp - p * gp.sum(dim=-1, keepdim=True)
    if factor != 1.0:
        out = out * factor
    return out.to(grad_p.dtype)


def eps_ratio(grad_z, z, eps):
    if eps == 0:
        return grad_z
    zf = _acc(z)
    return (_acc(grad_z) * zf / stabilize(zf, eps)).to(grad_z.dtype)


def _gelu(u: torch.Tensor, approximate: str) -> torch.Tensor:
    return torch.nn.functional.gelu(u, approximate=approximate)


def gelu_forward(u, approximate="none"):
    return _gelu(u, approximate)


def _gelu_factor(uf: torch.Tensor, approximate: str) -> torch.Tensor:
    small = uf.abs() < GELU_GUARD
    safe = torch.where(small, torch.ones_like(uf), uf)
    return torch.where(small, torch.full_like(uf, 0.5), _gelu(safe, approximate) / safe)


def gelu_backward(grad_h, u, approximate="none"):
    uf = _acc(u)
    return (_acc(grad_h) * _gelu_factor(uf, approximate)).to(grad_h.dtype)


def gelu_eps_ratio(grad_h, u, eps, approximate="none"):
    uf = _acc(u)
    factor = _gelu_factor(uf, approximate)
    if eps != 0:
        factor = factor * uf / stabilize(uf, eps)
    return (_acc(grad_h) * factor).to(grad_h.dtype)


def attention_forward(q, k, v, mask, scale, mode):
    scores = torch.matmul(q, k.transpose(-1, -2))
    probs = softmax_forward(scores, mask, scale)
    out = torch.matmul(probs, v)
    return out, (probs,)


def attention_backward(grad_out, q, k, v, mask, scale, mode, saved):
    (probs,) = saved
    if mode == "cp_lrp":
        return None, None, torch.matmul(probs.transpose(-1, -2), grad_out)
    half = 0.5 if mode == "attnlrp" else 1.0
    grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
    if half != 1.0:
        grad_v = grad_v * half
    grad_p = torch.matmul(grad_out, v.transpose(-1, -2))
    grad_s = softmax_backward(grad_p, probs, scale * half * half)
    grad_q = torch.matmul(grad_s, k)
    grad_k = torch.matmul(grad_s.transpose(-1, -2), q)
    return grad_q, grad_k, grad_v

