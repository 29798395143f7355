"""The ``cpp`` and ``cuda`` backends: the host functions of :mod:`lrp_kernels.backend` on the compiled
module ``lrp_kernels._C`` (``csrc/`` kernels, ``python/bindings.cpp``).

CPU tensors run the C++/OpenMP kernels, CUDA tensors the CUDA kernels on the current stream. The
kernels take float32, float16 and bfloat16 and compute in float32. Tensors go to the kernels as
data pointers with row strides: an input whose leading dimensions collapse into rows with a
contiguous last dimension (views, expanded tensors) is passed as it is; any other layout is made
contiguous first. Outputs are new contiguous tensors. What the kernels do not cover (float64,
mismatched dtypes or shapes, empty tensors) runs the torch reference of
:mod:`lrp_kernels.ops._torch_backend`, which defines the same math. The GEMMs of attention stay on
``torch.matmul`` around the softmax kernels, unless the reference runs that attention as one fused
aten kernel (then it is used as it is).
"""

from __future__ import annotations

import torch

from lrp_kernels.backend import BackendUnavailable
from lrp_kernels.errors import InputError
from lrp_kernels.ops import _torch_backend as _ref

try:
    from lrp_kernels import _C
except ImportError as exc:  # not built: the package still works with the other backends
    _C = None
    _IMPORT_ERROR: str | None = (
        f"lrp_kernels._C is not built: {exc} (install with a C++17 compiler: pip install -e .)"
    )
else:
    _IMPORT_ERROR = None

_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_APPROXIMATE = {"none": 0, "tanh": 1}


def available() -> str | None:
    """None when the compiled module is importable, otherwise why not."""
    return _IMPORT_ERROR


def has_cuda() -> bool:
    """Whether the compiled module holds the CUDA kernels."""
    return _C is not None and bool(_C.has_cuda())


devices = ("cpu", "cuda") if has_cuda() else ("cpu",)


def _supported(*tensors: torch.Tensor) -> bool:
    """Whether the kernels handle these tensors (else the torch reference runs)."""
    if _C is None:
        raise BackendUnavailable(_IMPORT_ERROR)
    first = tensors[0]
    if first.dtype not in _DTYPE_CODES or first.numel() == 0 or first.dim() == 0:
        return False
    for t in tensors[1:]:
        if t.dtype != first.dtype or t.shape != first.shape or t.device != first.device:
            return False
    if first.device.type == "cuda":
        if not has_cuda():
            raise BackendUnavailable(
                "lrp_kernels._C was built without CUDA (set LRP_KERNELS_CUDA=1 and reinstall)"
            )
        return True
    return first.device.type == "cpu"


def _rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``t`` as a [rows, cols] matrix with a contiguous last dimension, and its row stride.

    No copy when the leading dimensions collapse (``view`` succeeds); a copy otherwise.
    """
    cols = t.shape[-1]
    try:
        m = t.view(-1, cols)
    except RuntimeError:
        m = t.contiguous().view(-1, cols)
    if m.stride(1) != 1 and cols > 1:
        m = m.contiguous()
    return m, m.stride(0)


def _launch(name: str, device: torch.device, *args) -> None:
    """Call ``_C.<name>`` (CPU) or ``_C.<name>_cuda`` with the device index and current stream."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        stream = torch.cuda.current_stream(device).cuda_stream
        getattr(_C, name + "_cuda")(*args, index, stream)
    else:
        getattr(_C, name)(*args)


def _elementwise(name: str, out_like: torch.Tensor, inputs: list[torch.Tensor], *scalars, prefix=()):
    """Run an element-wise kernel ``name(dtype, *prefix, rows, cols, (ptr, stride)..., *scalars,
    out, out_stride)`` over same-shaped inputs; contiguous inputs are treated as one long row."""
    out = torch.empty(out_like.shape, dtype=out_like.dtype, device=out_like.device)
    if all(t.is_contiguous() for t in inputs):
        rows, cols = 1, out.numel()
        pairs = [(t, cols) for t in inputs]
    else:
        cols = out.shape[-1]
        rows = out.numel() // cols
        pairs = [_rows(t) for t in inputs]
    tensor_args = []
    for t, stride in pairs:
        tensor_args += [t.data_ptr(), stride]
    _launch(
        name,
        out.device,
        _DTYPE_CODES[out.dtype],
        *prefix,
        rows,
        cols,
        *tensor_args,
        *scalars,
        out.data_ptr(),
        cols,
    )
    return out


def _approximate_code(approximate: str) -> int:
    try:
        return _APPROXIMATE[approximate]
    except KeyError:
        raise InputError(f"unknown GELU approximate {approximate!r}; valid: 'none', 'tanh'") from None


def _fp32_param(p: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """A LayerNorm parameter as the contiguous float32 vector the kernels read."""
    if p is None:
        return None
    return p.detach().to(device=device, dtype=torch.float32).contiguous()


def layer_norm_forward(x, weight, bias, eps):
    if not _supported(x) or x.shape[-1] == 0:
        return _ref.layer_norm_forward(x, weight, bias, eps)
    xm, x_stride = _rows(x)
    rows, cols = xm.shape
    w = _fp32_param(weight, x.device)
    b = _fp32_param(bias, x.device)
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    mean = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    rstd = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    _launch(
        "layer_norm_forward",
        x.device,
        _DTYPE_CODES[x.dtype],
        rows,
        cols,
        xm.data_ptr(),
        x_stride,
        0 if w is None else w.data_ptr(),
        0 if b is None else b.data_ptr(),
        float(eps),
        y.data_ptr(),
        cols,
        mean.data_ptr(),
        rstd.data_ptr(),
    )
    return y, mean, rstd


def layer_norm_backward(grad_y, weight, rstd):
    if (
        not _supported(grad_y)
        or grad_y.shape[-1] == 0
        or rstd.dtype != torch.float32
        or rstd.numel() * grad_y.shape[-1] != grad_y.numel()
    ):
        return _ref.layer_norm_backward(grad_y, weight, rstd)
    gm, g_stride = _rows(grad_y)
    rows, cols = gm.shape
    w = _fp32_param(weight, grad_y.device)
    r = rstd.to(grad_y.device).reshape(-1).contiguous()
    out = torch.empty(grad_y.shape, dtype=grad_y.dtype, device=grad_y.device)
    _launch(
        "layer_norm_backward",
        grad_y.device,
        _DTYPE_CODES[grad_y.dtype],
        rows,
        cols,
        gm.data_ptr(),
        g_stride,
        0 if w is None else w.data_ptr(),
        r.data_ptr(),
        out.data_ptr(),
        cols,
    )
    return out


def softmax_forward(scores, mask, scale):
    if not _supported(scores) or scores.dim() != 4 or scores.shape[-1] == 0:
        return _ref.softmax_forward(scores, mask, scale)
    batch, heads, lq, lk = scores.shape
    if mask is not None:
        if mask.shape != (batch, lk):
            return _ref.softmax_forward(scores, mask, scale)
        mask = mask.to(device=scores.device, dtype=torch.float32)
        if mask.stride(1) != 1 and lk > 1:
            mask = mask.contiguous()
    sm, s_stride = _rows(scores)
    probs = torch.empty(scores.shape, dtype=scores.dtype, device=scores.device)
    _launch(
        "attention_softmax_forward",
        scores.device,
        _DTYPE_CODES[scores.dtype],
        sm.shape[0],
        lk,
        heads * lq,
        sm.data_ptr(),
        s_stride,
        0 if mask is None else mask.data_ptr(),
        0 if mask is None else mask.stride(0),
        float(scale),
        probs.data_ptr(),
        lk,
    )
    return probs


def softmax_backward(grad_p, probs, factor):
    if not _supported(grad_p, probs) or grad_p.shape[-1] == 0:
        return _ref.softmax_backward(grad_p, probs, factor)
    gm, g_stride = _rows(grad_p)
    pm, p_stride = _rows(probs)
    rows, cols = gm.shape
    out = torch.empty(grad_p.shape, dtype=grad_p.dtype, device=grad_p.device)
    _launch(
        "attention_softmax_backward",
        grad_p.device,
        _DTYPE_CODES[grad_p.dtype],
        rows,
        cols,
        gm.data_ptr(),
        g_stride,
        pm.data_ptr(),
        p_stride,
        float(factor),
        out.data_ptr(),
        cols,
    )
    return out


def eps_ratio(grad_z, z, eps):
    if eps == 0:
        return grad_z
    if not _supported(grad_z, z):
        return _ref.eps_ratio(grad_z, z, eps)
    return _elementwise("linear_eps_ratio", grad_z, [grad_z, z], float(eps))


def gelu_forward(u, approximate="none"):
    code = _approximate_code(approximate)
    if not _supported(u):
        return _ref.gelu_forward(u, approximate)
    return _elementwise("activation_gelu_forward", u, [u], prefix=(code,))


def gelu_backward(grad_h, u, approximate="none"):
    code = _approximate_code(approximate)
    if not _supported(grad_h, u):
        return _ref.gelu_backward(grad_h, u, approximate)
    return _elementwise("activation_gelu_backward", grad_h, [grad_h, u], prefix=(code,))


def gelu_eps_ratio(grad_h, u, eps, approximate="none"):
    code = _approximate_code(approximate)
    if not _supported(grad_h, u):
        return _ref.gelu_eps_ratio(grad_h, u, eps, approximate)
    return _elementwise("linear_gelu_eps_ratio", grad_h, [grad_h, u], float(eps), prefix=(code,))


def _reference_fuses(q, mode, mask) -> bool:
    """Whether the torch reference runs this attention as one fused aten kernel (FlashAttention
    style, no stored probabilities): then it is used as it is, being both faster and leaner than
    matmuls around the softmax kernels. Otherwise (cp_lrp, which needs P; CUDA) the softmax runs
    here."""
    fuses = getattr(_ref, "_use_flash", None)
    return bool(fuses(q, mode, mask)) if fuses is not None else False


def attention_forward(q, k, v, mask, scale, mode):
    if _reference_fuses(q, mode, mask):
        return _ref.attention_forward(q, k, v, mask, scale, mode)
    scores = torch.matmul(q, k.transpose(-1, -2))
    probs = softmax_forward(scores, mask, scale)
    return torch.matmul(probs, v), (probs,)


def attention_backward(grad_out, q, k, v, mask, scale, mode, saved):
    if _reference_fuses(q, mode, mask):
        return _ref.attention_backward(grad_out, q, k, v, mask, scale, mode, saved)
    (probs,) = saved
    grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
    if mode == "cp_lrp":
        return None, None, grad_v
    half = 0.5 if mode == "attnlrp" else 1.0
    if half != 1.0:
        grad_v.mul_(half)
    grad_p = torch.matmul(grad_out, v.transpose(-1, -2))
    grad_s = softmax_backward(grad_p, probs, scale * half * half)
    grad_q = torch.matmul(grad_s, k)
    grad_k = torch.matmul(grad_s.transpose(-1, -2), q)
    return grad_q, grad_k, grad_v
