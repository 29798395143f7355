"""RMSNorm with 1/rms held constant (``lrp_kernels/ops/rms_norm.py``).

(a) the torch reference against explicit float64 math, over odd shapes and fp32/fp16/bf16; (b) the
op ``lrp_rms_norm`` (relevance passes unchanged, element by element); (c) the other backends
declare the torch reference's kernel set (no kernels of their own yet).
"""

import pytest
import torch

from lrp_kernels.backends import registry
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
    from transformers.models.eurobert.modeling_eurobert import EuroBertRMSNorm

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


@pytest.mark.parametrize("name", ["cpp", "cuda", "triton"])
def test_other_backends_declare_the_reference(name):
    backend, reason = registry.load(name)
    if backend is None:
        pytest.skip(reason)
    assert backend.rms_norm is ref.KERNELS
