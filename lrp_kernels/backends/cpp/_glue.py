"""Torch glue of the ``cpp`` and ``cuda`` backends around the compiled module ``lrp_kernels._C``.

``_C`` (``csrc/`` kernels bound by ``python/bindings.cpp``) takes raw data pointers, sizes, row
strides and a dtype code; CPU tensors run the C++/OpenMP kernels, CUDA tensors the CUDA kernels on
the current stream of the tensors' device. Tensors go to the kernels as data pointers with row
strides: an input whose leading dimensions collapse into rows with a contiguous last dimension
(views, expanded tensors) is passed as it is; any other layout is made contiguous first. Outputs
are new contiguous tensors.
"""

from __future__ import annotations

import torch

from lrp_kernels.errors import BackendError, BackendUnavailable

try:
    from lrp_kernels import _C
except ImportError as exc:  # not built: the package still works with the other backends
    _C = None
    _IMPORT_ERROR: str | None = (
        f"lrp_kernels._C is not built: {exc} (install with a C++17 compiler: pip install -e .)"
    )
else:
    _IMPORT_ERROR = None

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_APPROXIMATE = {"none": 0, "tanh": 1}


def why_unavailable() -> str | None:
    """None when the compiled module is importable, otherwise why not."""
    return _IMPORT_ERROR


def why_cuda_unavailable() -> str | None:
    """None when the compiled module holds the CUDA kernels, otherwise why not."""
    if _C is None:
        return _IMPORT_ERROR
    if not has_cuda():
        return "lrp_kernels._C was built without CUDA (set LRP_KERNELS_CUDA=1 and reinstall)"
    return None


def has_cuda() -> bool:
    """Whether the compiled module holds the CUDA kernels."""
    return _C is not None and bool(_C.has_cuda())


def supported(*tensors: torch.Tensor) -> bool:
    """Whether the kernels handle these tensors (else the torch reference runs)."""
    if _C is None:
        raise BackendUnavailable(_IMPORT_ERROR)
    first = tensors[0]
    if first.dtype not in DTYPE_CODES or first.numel() == 0 or first.dim() == 0:
        return False
    for t in tensors[1:]:
        if t.dtype != first.dtype or t.shape != first.shape or t.device != first.device:
            return False
    if first.device.type == "cuda":
        reason = why_cuda_unavailable()
        if reason is not None:
            raise BackendUnavailable(reason)
        return True
    return first.device.type == "cpu"


def rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
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


def launch(name: str, device: torch.device, *args) -> None:
    """Call ``_C.<name>`` (CPU) or ``_C.<name>_cuda`` with the device index and current stream."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        stream = torch.cuda.current_stream(device).cuda_stream
        getattr(_C, name + "_cuda")(*args, index, stream)
    else:
        getattr(_C, name)(*args)


def elementwise(name: str, out_like: torch.Tensor, inputs: list[torch.Tensor], *scalars, prefix=()):
    """Run an element-wise kernel ``name(dtype, *prefix, rows, cols, (ptr, stride)..., *scalars,
    out, out_stride)`` over same-shaped inputs; contiguous inputs are treated as one long row."""
    out = torch.empty(out_like.shape, dtype=out_like.dtype, device=out_like.device)
    if all(t.is_contiguous() for t in inputs):
        n_rows, cols = 1, out.numel()
        pairs = [(t, cols) for t in inputs]
    else:
        cols = out.shape[-1]
        n_rows = out.numel() // cols
        pairs = [rows(t) for t in inputs]
    tensor_args = []
    for t, stride in pairs:
        tensor_args += [t.data_ptr(), stride]
    launch(
        name,
        out.device,
        DTYPE_CODES[out.dtype],
        *prefix,
        n_rows,
        cols,
        *tensor_args,
        *scalars,
        out.data_ptr(),
        cols,
    )
    return out


def approximate_code(approximate: str) -> int:
    try:
        return _APPROXIMATE[approximate]
    except KeyError:
        raise BackendError(f"unknown GELU approximate {approximate!r}; valid: 'none', 'tanh'") from None


def fp32_param(p: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """A LayerNorm or RMSNorm parameter as the contiguous float32 vector the kernels read."""
    if p is None:
        return None
    return p.detach().to(device=device, dtype=torch.float32).contiguous()


def norm_backward(name: str, grad_y: torch.Tensor, weight: torch.Tensor | None, rstd: torch.Tensor):
    """Run a norm's backward kernel ``name(dtype, rows, cols, grad_y, g_stride, weight, rstd, out,
    out_stride)`` (LayerNorm, RMSNorm: 1/σ or 1/rms per row in float32, γ in float32), or return None
    where the kernels do not cover the tensors and the caller runs the reference: float64 or empty
    rows, an rstd that is not float32 or does not cover the rows, a γ of another length."""
    if (
        not supported(grad_y)
        or grad_y.shape[-1] == 0
        or rstd.dtype != torch.float32
        or rstd.numel() * grad_y.shape[-1] != grad_y.numel()
        or (weight is not None and weight.shape != grad_y.shape[-1:])
    ):
        return None
    gm, g_stride = rows(grad_y)
    n_rows, cols = gm.shape
    w = fp32_param(weight, grad_y.device)
    r = rstd.to(grad_y.device).reshape(-1).contiguous()
    out = torch.empty(grad_y.shape, dtype=grad_y.dtype, device=grad_y.device)
    launch(name, grad_y.device, DTYPE_CODES[grad_y.dtype], n_rows, cols, gm.data_ptr(), g_stride,
           0 if w is None else w.data_ptr(), r.data_ptr(), out.data_ptr(), cols)
    return out
