"""RMSNorm with 1/rms held constant (``lrp_kernels/ops/rms_norm.py``).

(a) the torch reference against explicit float64 math, over odd shapes and fp32/fp16/bf16; (b) the
op ``lrp_rms_norm`` (relevance passes unchanged, element by element); (c) every backend that runs
here (``helpers.KERNEL_BACKENDS``: cpp, cuda on a GPU, Triton — through its interpreter without one)
against the reference, what none of them covers running the reference itself.
"""

import pytest
import torch
from helpers import (  # tests/ops helper
    BF16, CPP, F32, F64, KERNEL_BACKENDS, ROW_SHAPES, STRIDED, assert_matches, assert_row_norm_matches,
    cpu_isa, cpu_isa_params, grads, isa_inputs, randn, with_param_dtypes,
)

from lrp_kernels.backends.torch import rms_norm as ref
from lrp_kernels.ops.rms_norm import lrp_rms_norm

SHAPES = [(1, 1), (3, 7), (2, 5, 33), (4, 385)]
# (atol, rtol) of a reference result in dtype against float64 math on the same (rounded) inputs:
# the reference computes in float32 and rounds once to the output dtype.
TOL = {
    torch.float32: (1e-6, 1e-6),  # a few float32 ulp
    torch.float16: (1e-4, 1e-3),  # one float16 rounding step (2^-11 relative) plus the float32 part
    torch.bfloat16: (1e-3, 8e-3),  # one bfloat16 rounding step (2^-8 relative)
}
DTYPES = [pytest.param(d, id=str(d).split(".")[1]) for d in TOL]


def _randn(*shape, dtype=torch.float64, seed=0, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)


def _rms64(x, eps):
    x = x.double()
    return torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [True, False], ids=["weight", "no-weight"])
def test_reference_forward_and_backward_against_float64(shape, dtype, weighted):
    x = _randn(*shape, dtype=dtype, scale=3.0, shift=0.5)
    w = _randn(shape[-1], dtype=dtype, seed=1, shift=1.0) if weighted else None
    g = _randn(*shape, dtype=dtype, seed=2)
    y, rstd = ref.forward(x, w, 1e-5)
    rms = _rms64(x, 1e-5)
    w64 = 1.0 if w is None else w.double()
    atol, rtol = TOL[dtype]
    assert rstd.dtype == torch.float32 and y.dtype == dtype
    torch.testing.assert_close(rstd.double(), 1 / rms[..., 0], rtol=1e-6, atol=0)
    torch.testing.assert_close(y.double(), w64 * x.double() / rms, atol=atol, rtol=rtol)
    grad = ref.backward(g, w, rstd)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad.double(), w64 * g.double() / rms, atol=atol, rtol=rtol)


def test_forward_is_eurobert_rms_norm():
    transformers = pytest.importorskip("transformers")
    EuroBertRMSNorm = pytest.importorskip("transformers.models.eurobert.modeling_eurobert",
                                          reason="EuroBERT is in transformers from 5.3").EuroBertRMSNorm

    norm = EuroBertRMSNorm(37, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(_randn(37, dtype=torch.float32, seed=3, shift=1.0))
    x = _randn(3, 5, 37, dtype=torch.float32, scale=2.0)
    assert transformers is not None
    assert torch.equal(ref.forward(x, norm.weight, 1e-5)[0], norm(x))


def test_a_float64_input_stays_float64():
    x = _randn(3, 9)
    y, rstd = ref.forward(x, None, 1e-6)
    assert y.dtype == rstd.dtype == torch.float64


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_op_passes_relevance_unchanged_per_element(shape):
    """R_x = x ⊙ g_x equals R_y = y ⊙ g_y element by element: the identity rule, exactly conservative."""
    x = _randn(*shape, scale=2.0).requires_grad_(True)
    w = _randn(shape[-1], seed=1, shift=1.0)
    y = lrp_rms_norm(x, w, 1e-6)
    g = _randn(*shape, seed=2)
    (gx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(x.detach() * gx, y.detach() * g, rtol=1e-12, atol=1e-12)


def test_op_gradient_is_not_the_plain_gradient():
    """The plain gradient carries the −x̂·mean(g·ŷ) term of d(1/rms)/dx; the rule drops it."""
    x = _randn(2, 11, scale=2.0).requires_grad_(True)
    g = _randn(2, 11, seed=2)
    (rule,) = torch.autograd.grad(lrp_rms_norm(x, None, 0.0), x, g)
    (plain,) = torch.autograd.grad(x / _rms64(x, 0.0), x, g)
    assert not torch.allclose(rule, plain)
    assert (x.detach() * plain).sum(-1).abs().max() < 1e-12  # with eps = 0 scale-invariant: Σ x·∂y/∂x·g = 0


# -------------------------------------------------------------------- (c) backends vs reference
EPS = 1e-5  # EuroBERT's


def _weight(kind, hidden, dtype, device):
    """γ in float32 (``w``), in the input dtype (``w_input_dtype``: a half-precision model), or None."""
    if kind == "no_w":
        return None
    return randn(hidden, dtype=dtype if kind == "w_input_dtype" else F32, device=device, seed=1, shift=1.0)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype, weight", with_param_dtypes(["w", "no_w"]))
def test_forward(target, dtype, shape, weight):
    """y and 1/rms. A float32 γ on 16-bit x promotes y to float32 in the reference (``w * y``): that
    case runs the reference itself."""
    x = randn(*shape, dtype=dtype, device=target.device, scale=3.0, shift=0.5)
    w = _weight(weight, shape[-1], dtype, target.device)
    y, rstd = target.backend.rms_norm.forward(x, w, EPS)
    y_ref, rstd_ref = ref.forward(x, w, EPS)
    assert rstd.dtype == F32 and rstd.shape == shape[:-1]
    assert_matches(y, y_ref, *target.tol("rounded_twice" if w is not None else "elementwise", dtype))
    assert_matches(rstd, rstd_ref, *target.tol("statistics", dtype))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype, weight", with_param_dtypes(["w", "no_w"]))
def test_backward(target, dtype, shape, weight):
    g = randn(*shape, dtype=dtype, device=target.device)
    w = _weight(weight, shape[-1], dtype, target.device)
    rstd = randn(*shape[:-1], device=target.device, seed=2).abs() + 0.5
    assert_matches(target.backend.rms_norm.backward(g, w, rstd), ref.backward(g, w, rstd),
                   *target.tol("elementwise", dtype))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("kind", [*STRIDED, "expanded"])
def test_strided_inputs(target, kind):
    w = randn(33, device=target.device, seed=1)
    assert_row_norm_matches(target.backend.rms_norm, ref, (w, EPS), kind, target.tol("elementwise", F32),
                            target.device)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_op_on_every_backend_equals_the_reference(target):
    x = randn(3, 7, 40, device=target.device, scale=3.0, shift=0.5)
    w = randn(40, device=target.device, seed=1)
    g = randn(3, 7, 40, device=target.device, seed=3)
    out, (gx,) = grads(lambda t: lrp_rms_norm(t, w, EPS, backend=target.backend), (x,), g)
    out_ref, (gx_ref,) = grads(lambda t: lrp_rms_norm(t, w, EPS), (x,), g)
    assert_matches(out, out_ref, *target.tol("elementwise", F32))
    assert_matches(gx, gx_ref, *target.tol("elementwise", F32))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_what_the_kernels_do_not_cover_runs_the_reference(target):
    """float64; a float32 γ on bfloat16 x (promoted output); γ of another length (broadcast by the
    reference); an rstd that does not cover the rows or is not float32: bit for bit the reference."""
    kernels, dev = target.backend.rms_norm, target.device
    x64 = randn(3, 10, dtype=F64, device=dev, seed=7)
    for got, expected in zip(kernels.forward(x64, None, EPS), ref.forward(x64, None, EPS)):
        assert got.dtype == F64 and torch.equal(got, expected)
    x16 = randn(3, 10, dtype=BF16, device=dev, seed=8)
    w32 = randn(10, device=dev, seed=9)
    y, _ = kernels.forward(x16, w32, EPS)
    assert y.dtype == F32 and torch.equal(y, ref.forward(x16, w32, EPS)[0])
    w1 = randn(1, device=dev, seed=10)
    assert torch.equal(kernels.forward(x16.float(), w1, EPS)[0], ref.forward(x16.float(), w1, EPS)[0])
    g = randn(3, 5, 33, device=dev)
    rstd64 = randn(3, 5, dtype=F64, device=dev, seed=1).abs() + 0.5
    assert torch.equal(kernels.backward(g, None, rstd64), ref.backward(g, None, rstd64))
    assert torch.equal(kernels.backward(g, w1, rstd64.float()), ref.backward(g, w1, rstd64.float()))
    rstd_short = randn(3, device=dev, seed=2).abs() + 0.5
    assert torch.equal(kernels.backward(g[:, :1], None, rstd_short[:, None]),
                       ref.backward(g[:, :1], None, rstd_short[:, None]))


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_every_cpu_instruction_set(isa):
    """The CPU kernels of every instruction set compiled in (and supported here) against the reference."""
    w = randn(770, seed=2)
    with cpu_isa(isa):
        for dtype, x, g in isa_inputs():
            y, rstd = CPP.backend.rms_norm.forward(x, w.to(dtype), EPS)
            y_ref, rstd_ref = ref.forward(x, w.to(dtype), EPS)
            assert_matches(y, y_ref, *CPP.tol("rounded_twice", dtype))
            assert_matches(rstd, rstd_ref, *CPP.tol("statistics", dtype))
            assert_matches(CPP.backend.rms_norm.backward(g, w, rstd), ref.backward(g, w, rstd),
                           *CPP.tol("elementwise", dtype))
