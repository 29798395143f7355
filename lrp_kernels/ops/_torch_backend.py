"""The torch reference backend: every host function of :mod:`lrp_kernels.backend` in eager PyTorch.

These are the references the compiled and Triton kernels are tested against. Math is done in
float32 (float64 inputs stay float64) and results are cast back to the input dtype.
"""

from __future__ import annotations

import torch

devices = ("cpu", "cuda")

GELU_GUARD = 1e-6  # |u| below this uses the limit gelu(u)/u -> 1/2
CHUNK = 1 << 18  # elements per temporary of the in-place stabilizer division


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
    if mean.dtype != x.dtype or x.dtype in (torch.float32, torch.float64):
        return y, _acc(mean.squeeze(-1)), _acc(rstd.squeeze(-1))
    # Half-precision statistics (aten on the CPU rounds them to the input dtype): redo them in float32.
    var, mean = torch.var_mean(x.float(), dim=-1, unbiased=False)
    return y, mean, torch.rsqrt(var + eps)


def layer_norm_backward(grad_y, weight, rstd):
    # LayerNorm's own backward is rstd·(w·g − mean(w·g) − x̂·mean(w·g·x̂)); with σ held constant the
    # x̂ term is absent, which is what aten's fused kernel computes when given x̂ ≡ 0 (input = mean = 0).
    if grad_y.device.type == "cpu" and grad_y.dtype in (torch.float32, torch.float64):
        rstd = rstd.to(grad_y.dtype).unsqueeze(-1)
        zero_mean = torch.zeros_like(rstd)
        grad_x, _, _ = torch.ops.aten.native_layer_norm_backward(
            grad_y, torch.zeros_like(grad_y), grad_y.shape[-1:], zero_mean, rstd, weight, None,
            [True, False, False],
        )
        return grad_x
    g = _acc(grad_y)
    g = g * _acc(weight) if weight is not None else g.clone()
    g.sub_(g.mean(dim=-1, keepdim=True))
    return g.mul_(rstd.unsqueeze(-1).to(g.dtype)).to(grad_y.dtype)


def softmax_forward(scores, mask, scale):
    s = _acc(scores) * scale
    if mask is not None:
        s.add_(mask[:, None, None, :].to(s.dtype))
    return torch.softmax(s, dim=-1).to(scores.dtype)


def softmax_backward(grad_p, probs, factor):
    g = _acc(grad_p)
    p = _acc(probs)
    gp = p * g
    out = gp - p * gp.sum(dim=-1, keepdim=True)
    if factor != 1.0:
        out = out * factor
    return out.to(grad_p.dtype)


def _divide_by_stabilized_abs(out, x, eps):
    """``out /= |x| + ε`` in place, through a temporary of at most :data:`CHUNK` elements (so the
    backward holds no second full-size buffer; strided inputs take one full-size temporary)."""
    if not (out.is_contiguous() and x.is_contiguous()):
        return out.div_(x.abs().add_(eps))
    flat_out, flat_x = out.view(-1), x.view(-1)
    for start in range(0, flat_out.numel(), CHUNK):
        flat_out[start : start + CHUNK].div_(flat_x[start : start + CHUNK].abs().add_(eps))
    return out


def eps_ratio(grad_z, z, eps):
    if eps == 0:
        return grad_z
    # g·z / (z + ε·sign z) = g·|z| / (|z| + ε), bit for bit in IEEE arithmetic: for z < 0 both the
    # numerator and the denominator only change sign, and z = 0 gives 0/ε = 0 either way. No sign
    # tensor is needed: |z|·g in a fresh buffer, divided in place by |z| + ε.
    zf = _acc(z)
    out = zf.abs().mul_(_acc(grad_z))
    return _divide_by_stabilized_abs(out, zf, eps).to(grad_z.dtype)


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
    if eps == 0:
        return gelu_backward(grad_h, u, approximate)
    # GELU(u)/u · u/(u + ε·sign u) = |GELU(u)| / (|u| + ε): GELU(u) = u·Φ(u) has the sign of u. The
    # quotient needs no guard at u → 0 (0/ε = 0; for |u| < 1e-6 it is Φ(u)·|u|/(|u| + ε), within
    # |u| < 1e-6 relative of the guarded ½·u/(u + ε·sign u)).
    uf = _acc(u)
    factor = _divide_by_stabilized_abs(_gelu(uf, approximate).abs_(), uf, eps)
    return factor.mul_(_acc(grad_h)).to(grad_h.dtype)


def _flash_mask(mask, dtype):
    """The additive [B, L] float32 mask as aten's CPU flash attention takes it: [B, 1, 1, L], q's dtype."""
    if mask is None:
        return None
    if torch.finfo(dtype).max < torch.finfo(mask.dtype).max:  # float16: keep padding finite
        mask = mask.clamp(min=torch.finfo(dtype).min)
    return mask.to(dtype)[:, None, None, :]


def _use_flash(q, mode, mask=None):
    """On the CPU the forward is aten's fused attention (the kernel of ``F.scaled_dot_product_attention``):
    bit for bit the plain model's forward, and no [B, H, L, L] tensor is stored. "grad" and
    "attnlrp" take its fused backward (attnlrp's is the plain one scaled); cp_lrp recomputes P.

    aten's fused backward is wrong for a sequence whose keys are all masked (its log-sum-exp
    drops the log L of the uniform row), so such a batch takes the eager path."""
    if q.device.type != "cpu":
        return False
    if mask is None or mode == "cp_lrp":
        return True
    keep = mask > torch.finfo(torch.float32).min / 2
    return bool(keep.any(dim=-1).all())


def attention_forward(q, k, v, mask, scale, mode):
    if _use_flash(q, mode, mask):
        out, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=_flash_mask(mask, q.dtype), scale=scale
        )
        return out, (() if mode == "cp_lrp" else (out, logsumexp))
    scores = torch.matmul(q, k.transpose(-1, -2))
    probs = softmax_forward(scores, mask, scale)
    out = torch.matmul(probs, v)
    return out, (probs,)


def attention_backward(grad_out, q, k, v, mask, scale, mode, saved):
    if _use_flash(q, mode, mask):
        if mode == "cp_lrp":
            probs = softmax_forward(torch.matmul(q, k.transpose(-1, -2)), mask, scale)
            return None, None, torch.matmul(probs.transpose(-1, -2), grad_out)
        out, logsumexp = saved
        grad_q, grad_k, grad_v = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad_out, q, k, v, out, logsumexp, 0.0, False, attn_mask=_flash_mask(mask, q.dtype), scale=scale
        )
        if mode == "attnlrp":  # exact: the factors are powers of two
            grad_q.mul_(0.25)
            grad_k.mul_(0.25)
            grad_v.mul_(0.5)
        return grad_q, grad_k, grad_v
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

