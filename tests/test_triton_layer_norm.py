"""Triton LayerNorm kernels (row-wise forward; backward with σ held constant) against the torch
reference; runs through Triton's interpreter on the CPU when there is no GPU (small shapes)."""

import pytest
import torch

from triton_loader import import_triton_backend  # tests/ helper

tk = import_triton_backend()
DEVICE = "cpu" if tk.INTERPRETED else "cuda"

from lrp_kernels.errors import InputError  # noqa: E402
from lrp_kernels.ops import _torch_backend as ref  # noqa: E402

# (dtype, atol, rtol): both sides compute in float32 and round once to the output dtype, so
# 16-bit results may differ by one unit in the last place where float32 sums straddle a rounding
# boundary; values are O(1)-O(10) (γ, β ~ N(0, 1)).
DTYPES = [
    pytest.param(torch.float32, 1e-5, 1e-5, id="float32"),  # float32: summation order only
    # float16: 1 ulp = 2^-10 relative (~1e-3), ≤ 8e-3 absolute near 8
    pytest.param(torch.float16, 1e-2, 2e-3, id="float16"),
    # bfloat16: 1 ulp = 2^-7 relative (~7.8e-3), ≤ 6e-2 absolute near 8
    pytest.param(torch.bfloat16, 6e-2, 1.6e-2, id="bfloat16"),
]
# leading dims × H: non-power-of-two H (37, 384+1), a single row, H larger than one warp's share
SHAPES = [(3, 37), (2, 5, 64), (1, 1, 7), (4, 385)]


def _rand(shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(dtype).to(DEVICE)


def _close(a, b, atol, rtol):
    torch.testing.assert_close(a.float().cpu(), b.float().cpu(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_forward_and_backward_match_reference(shape, dtype, atol, rtol, affine):
    h = shape[-1]
    x = _rand(shape, dtype, 0) * 3 + 1  # non-zero mean, non-unit variance
    w = _rand((h,), dtype, 1) if affine else None
    b = _rand((h,), dtype, 2) if affine else None
    g = _rand(shape, dtype, 3)
    y, mean, rstd = tk.layer_norm_forward(x, w, b, 1e-5)
    y_ref, mean_ref, rstd_ref = ref.layer_norm_forward(x, w, b, 1e-5)
    assert y.dtype == dtype and y.shape == x.shape
    assert mean.dtype == rstd.dtype == torch.float32 and mean.shape == shape[:-1]
    _close(y, y_ref, atol, rtol)
    # statistics are float32 for every dtype (the reference, aten's native_layer_norm, rounds them to
    # the input dtype on the CPU), so they are checked tightly against float32 math on the same x
    xf = x.float()
    torch.testing.assert_close(mean, xf.mean(-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rstd, torch.rsqrt(xf.var(-1, unbiased=False) + 1e-5), atol=1e-5, rtol=1e-5)
    # the backward gets the same rstd on both sides
    _close(tk.layer_norm_backward(g, w, rstd), ref.layer_norm_backward(g, w, rstd), atol, rtol)


def test_strided_rows_and_mean_removal():
    x = _rand((6, 48), torch.float32, 4)[:, :40]  # row stride 48, length 40
    g = _rand((40, 6), torch.float32, 5).t()  # transposed: last dim not contiguous
    w = _rand((40,), torch.float32, 6)
    y, _, rstd = tk.layer_norm_forward(x, w, None, 1e-5)
    y_ref, _, rstd_ref = ref.layer_norm_forward(x, w, None, 1e-5)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    gx = tk.layer_norm_backward(g, w, rstd)
    torch.testing.assert_close(gx, ref.layer_norm_backward(g, w, rstd_ref), atol=1e-5, rtol=1e-5)
    # the rule's output has zero mean per row (β absorbs the centering's share)
    torch.testing.assert_close(gx.sum(-1), torch.zeros(6, device=gx.device), atol=1e-5, rtol=0)


def test_float64_is_handed_to_the_reference():
    x = _rand((3, 10), torch.float64, 7)
    y, mean, rstd = tk.layer_norm_forward(x, None, None, 1e-5)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, ref.layer_norm_forward(x, None, None, 1e-5)[0], atol=0, rtol=0)


def test_bad_parameter_shapes_raise():
    x = _rand((2, 10), torch.float32, 8)
    with pytest.raises(InputError, match="weight must have shape"):
        tk.layer_norm_forward(x, torch.ones(9, device=DEVICE), None, 1e-5)
    with pytest.raises(InputError, match="rstd must have shape"):
        tk.layer_norm_backward(x, None, torch.ones(3, device=DEVICE))
