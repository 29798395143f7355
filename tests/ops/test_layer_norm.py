"""LayerNorm with 1/σ held constant (``lrp_kernels/ops/layer_norm.py``).

(a) the torch reference against float64 math; (b) the op ``lrp_layer_norm``; (c) every backend
that runs here (``helpers.KERNEL_BACKENDS``) against the torch reference.
"""

import pytest
import torch
import torch.nn.functional as F

from helpers import (  # tests/ops helper
    BF16, COMPILED, CPP, F32, F64, KERNEL_BACKENDS, OP_SHAPES, ROW_SHAPES, STRIDED, assert_matches, assert_row_norm_matches,
    cpu_isa, cpu_isa_params, grads, isa_inputs, randn, relevance_in_out, with_param_dtypes,
)

from lrp_kernels.backends.torch import layer_norm as ref
from lrp_kernels.errors import BackendError
from lrp_kernels.ops.layer_norm import lrp_layer_norm

EPS = 1e-12  # BERT's


# ------------------------------------------------------------------- (a) reference vs float64
@pytest.mark.parametrize("shape", OP_SHAPES, ids=str)
def test_reference_forward_is_aten_layer_norm_with_float64_statistics(shape):
    x = randn(*shape, dtype=F64, scale=3.0, shift=1.0)
    w, b = randn(shape[-1], dtype=F64, seed=1), randn(shape[-1], dtype=F64, seed=2)
    y, mean, rstd = ref.forward(x, w, b, 1e-5)
    assert torch.equal(y, F.layer_norm(x, shape[-1:], w, b, 1e-5))
    var, mu = torch.var_mean(x, dim=-1, unbiased=False)
    assert mean.dtype == rstd.dtype == F64
    torch.testing.assert_close(mean, mu, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rstd, (var + 1e-5).rsqrt(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, BF16], ids=["fp16", "bf16"])
def test_reference_statistics_of_half_inputs_are_float32(dtype):
    """aten on the CPU rounds half-precision statistics to the input dtype; the reference redoes them."""
    x = randn(4, 37, dtype=dtype, scale=3.0, shift=100.0)  # a large mean: rounding it would show
    _, mean, rstd = ref.forward(x, None, None, 1e-5)
    var, mu = torch.var_mean(x.double(), dim=-1, unbiased=False)
    assert mean.dtype == rstd.dtype == F32
    torch.testing.assert_close(mean.double(), mu, rtol=1e-6, atol=0)  # float32 sums of ≤ 37 terms
    torch.testing.assert_close(rstd.double(), (var + 1e-5).rsqrt(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("shape", OP_SHAPES, ids=str)
@pytest.mark.parametrize("with_weight", [True, False], ids=["w", "no_w"])
@pytest.mark.parametrize("dtype", [F64, F32], ids=["fp64", "fp32"])
def test_reference_backward_is_the_sigma_constant_rule(shape, with_weight, dtype):
    """rstd · (γ⊙g − mean_H(γ⊙g)), written out in float64."""
    g = randn(*shape, dtype=dtype)
    w = randn(shape[-1], dtype=dtype, seed=1) if with_weight else None
    rstd = randn(*shape[:-1], dtype=F32 if dtype == F32 else F64, seed=2).abs() + 0.5
    wg = g.double() * (w.double() if with_weight else 1.0)
    expected = (wg - wg.mean(-1, keepdim=True)) * rstd.double()[..., None]
    got = ref.backward(g, w, rstd)
    assert got.dtype == dtype
    atol, rtol = (1e-12, 1e-12) if dtype == F64 else (1e-6, 1e-5)  # float32: its own rounding
    torch.testing.assert_close(got.double(), expected, atol=atol, rtol=rtol)


# ------------------------------------------------------------------------------------ (b) op
@pytest.mark.parametrize("shape", OP_SHAPES, ids=str)
def test_layer_norm_forward_bit_for_bit_and_identity_rule_conserves(shape):
    hidden = shape[-1]
    x = torch.randn(shape, dtype=F64) * 3 + 1
    w = torch.randn(hidden, dtype=F64)
    assert torch.equal(lrp_layer_norm(x, w, None, 1e-5), F.layer_norm(x, (hidden,), w, None, 1e-5))
    r_x, r_y = relevance_in_out(lambda t: lrp_layer_norm(t, w, None, 1e-5), x)
    torch.testing.assert_close(r_x.sum(-1), r_y.sum(-1), rtol=1e-9, atol=1e-9)


def test_layer_norm_backward_treats_sigma_as_constant():
    x = torch.randn(3, 16, dtype=F64)
    w, b = torch.randn(16, dtype=F64), torch.randn(16, dtype=F64)
    g = torch.randn(3, 16, dtype=F64)
    x1 = x.clone().requires_grad_(True)
    (ours,) = torch.autograd.grad(lrp_layer_norm(x1, w, b, 1e-6), x1, g)
    x2 = x.clone().requires_grad_(True)
    sigma = torch.sqrt(x2.var(-1, unbiased=False, keepdim=True) + 1e-6).detach()
    (expected,) = torch.autograd.grad((x2 - x2.mean(-1, keepdim=True)) / sigma * w + b, x2, g)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_op_on_every_backend_equals_the_reference(target):
    x = randn(3, 7, 40, device=target.device, scale=3.0, shift=1.0)
    w, b = randn(40, device=target.device, seed=1), randn(40, device=target.device, seed=2)
    g = randn(3, 7, 40, device=target.device, seed=3)
    out, (gx,) = grads(lambda t: lrp_layer_norm(t, w, b, 1e-5, backend=target.backend), (x,), g)
    out_ref, (gx_ref,) = grads(lambda t: lrp_layer_norm(t, w, b, 1e-5), (x,), g)
    atol, rtol = target.tol("layer_norm", F32)
    assert_matches(out, out_ref, atol, rtol)
    assert_matches(gx, gx_ref, atol, rtol)


# -------------------------------------------------------------------- (c) backends vs reference
@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype, affine", with_param_dtypes(["wb", "w", "none"]))
def test_forward(target, dtype, shape, affine):
    """y, mean and 1/σ. γ, β are float32 (what the compiled glue converts them to) or, for
    ``wb_input_dtype``, in the input dtype (a half-precision model)."""
    hidden = shape[-1]
    x = randn(*shape, dtype=dtype, device=target.device, scale=3.0, shift=1.0)  # mean ≠ 0, var ≠ 1
    p_dtype = dtype if affine == "wb_input_dtype" else F32
    w = randn(hidden, dtype=p_dtype, device=target.device, seed=1) if affine != "none" else None
    b = randn(hidden, dtype=p_dtype, device=target.device, seed=2) if affine in ("wb", "wb_input_dtype") else None
    y, mean, rstd = target.backend.layer_norm.forward(x, w, b, EPS)
    y_ref, mean_ref, rstd_ref = ref.forward(x, w, b, EPS)
    if hidden == 1:
        # Degenerate size: mean = x, var = 0, rstd = 1/sqrt(eps) = 1e6 and y = b exactly. The
        # reference (aten's native_layer_norm) computes y = x*(rstd*w) + (b - mean*rstd*w), which
        # cancels to ~1e6 ulp(x) here, so the exact values are the reference for this size.
        mean_ref = x.float().squeeze(-1)
        rstd_ref = torch.full_like(mean_ref, 1e6)
        y_ref = torch.zeros_like(y_ref) if b is None else b.expand_as(x).to(dtype).clone()
    assert mean.dtype == rstd.dtype == F32 and mean.shape == shape[:-1]
    assert_matches(y, y_ref, *target.tol("layer_norm", dtype))
    # mean and 1/σ are float32 statistics whatever the input dtype: against the reference's, and
    # against float32 math on the same x
    assert_matches(mean, mean_ref, *target.tol("statistics", dtype))
    assert_matches(rstd, rstd_ref, *target.tol("statistics", dtype))
    xf = x.float()
    torch.testing.assert_close(mean, xf.mean(-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rstd, torch.rsqrt(xf.var(-1, unbiased=False) + EPS), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype, weight", with_param_dtypes(["w", "no_w"]))
def test_backward(target, dtype, shape, weight):
    g = randn(*shape, dtype=dtype, device=target.device)
    p_dtype = dtype if weight == "w_input_dtype" else F32
    w = randn(shape[-1], dtype=p_dtype, device=target.device, seed=1) if weight != "no_w" else None
    rstd = randn(*shape[:-1], device=target.device, seed=2).abs() + 0.5
    assert_matches(target.backend.layer_norm.backward(g, w, rstd), ref.backward(g, w, rstd),
                   *target.tol("layer_norm", dtype))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("kind", STRIDED)
def test_strided_inputs(target, kind):
    w, b = randn(33, device=target.device, seed=1), randn(33, device=target.device, seed=2)
    assert_row_norm_matches(target.backend.layer_norm, ref, (w, b, 1e-5), kind, target.tol("layer_norm", F32),
                            target.device)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_strided_rows_and_mean_removal(target):
    """Rows with a padded stride in, a transposed gradient: the rule's output has zero mean per
    row (β absorbs the centering's share)."""
    kernels = target.backend.layer_norm
    x = randn(6, 48, device=target.device, seed=4)[:, :40]  # row stride 48, length 40
    g = randn(40, 6, device=target.device, seed=5).t()  # transposed: last dim not contiguous
    w = randn(40, device=target.device, seed=6)
    y, _, rstd = kernels.forward(x, w, None, 1e-5)
    y_ref, _, rstd_ref = ref.forward(x, w, None, 1e-5)
    assert_matches(y, y_ref, 1e-5, 1e-5)  # float32, summation order
    gx = kernels.backward(g, w, rstd)
    assert_matches(gx, ref.backward(g, w, rstd_ref), 1e-5, 1e-5)
    torch.testing.assert_close(gx.sum(-1), torch.zeros(6, device=gx.device), atol=1e-5, rtol=0)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_float64_runs_the_reference(target):
    x = randn(3, 10, dtype=F64, device=target.device, seed=7)
    y, mean, rstd = target.backend.layer_norm.forward(x, None, None, 1e-5)
    assert y.dtype == F64
    torch.testing.assert_close(y, ref.forward(x, None, None, 1e-5)[0], atol=0, rtol=0)
    g = randn(3, 10, dtype=F64, device=target.device, seed=8)
    assert torch.equal(target.backend.layer_norm.backward(g, None, rstd), ref.backward(g, None, rstd))


@pytest.mark.parametrize("target", [t for t in KERNEL_BACKENDS if t.id.startswith("triton")])
def test_triton_bad_parameter_shapes_raise(target):
    x = randn(2, 10, device=target.device, seed=8)
    with pytest.raises(BackendError, match="weight must have shape"):
        target.backend.layer_norm.forward(x, torch.ones(9, device=target.device), None, 1e-5)
    with pytest.raises(BackendError, match="rstd must have shape"):
        target.backend.layer_norm.backward(x, None, torch.ones(3, device=target.device))


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_every_cpu_instruction_set(isa):
    """The CPU kernels of every instruction set compiled in (and supported here) against the reference."""
    w = randn(770, seed=2)
    with cpu_isa(isa):
        for dtype, x, g in isa_inputs():
            atol, rtol = CPP.tol("layer_norm", dtype)
            for a, e in zip(CPP.backend.layer_norm.forward(x, w, w, 1e-5), ref.forward(x, w, w, 1e-5)):
                assert_matches(a, e, atol, max(rtol, 1e-5))
            rstd = ref.forward(x, w, w, 1e-5)[2]
            assert_matches(CPP.backend.layer_norm.backward(g, w, rstd), ref.backward(g, w, rstd), atol, rtol)


@pytest.mark.parametrize("target", COMPILED)
def test_compiled_glue_falls_back_on_mismatched_statistics(target):
    """An rstd that does not cover the rows (or is not float32) takes the reference, not the kernel."""
    g = randn(3, 5, 33, device=target.device)
    rstd = randn(3, 5, dtype=F64, device=target.device, seed=1).abs() + 0.5
    assert torch.equal(target.backend.layer_norm.backward(g, None, rstd), ref.backward(g, None, rstd))
