"""The gated MLP rule (``lrp_kernels/ops/gated_mlp.py``): u = act(a) ⊙ b, identity on act, uniform on
the product, fused with the ε-ratio of the two linears into one element-wise pass.

(a) the torch reference's element-wise pass against the rule written out in float64, over odd
shapes, the three activations, ε = 0 and ε > 0, and fp32/fp16/bf16; (b) the op against an explicit
float64 relevance computation (contribution matrices, no autograd), both weight layouts;
(c) every backend that runs here (``helpers.KERNEL_BACKENDS``: cpp, cuda on a GPU, Triton — through
its interpreter without one) against the reference over odd shapes, every activation, ε = 0 / tiny /
large, fp32/fp16/bf16 and strided halves, what none of them covers running the reference itself.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import (  # tests/ops helper
    CPP, DTYPES, ELEMENTWISE_SHAPES, F32, F64, KERNEL_BACKENDS, assert_matches, cpu_isa, cpu_isa_params, grads,
    isa_inputs, noncontiguous, randn, with_special_values,
)

from lrp_kernels.backends.torch import gated_mlp as ref
from lrp_kernels.ops.gated_mlp import lrp_gated_mlp

SHAPES = [(1,), (7,), (3, 33), (2, 5, 129)]
FUNCTIONS = ["gelu", "gelu_tanh", "silu"]
# (atol, rtol) against float64 math on the same rounded inputs: float32 math, one rounding at the end
TOL = {
    torch.float32: (1e-6, 1e-5),  # erf/tanh/sigmoid and two divisions: a few float32 ulp
    torch.float16: (1e-4, 2e-3),  # one float16 rounding step of the output (2^-11) plus float32's
    torch.bfloat16: (1e-3, 1.6e-2),  # one bfloat16 rounding step (2^-8), twice where a product rounds
}
REF_DTYPES = [pytest.param(d, id=str(d).split(".")[1]) for d in TOL]


def _randn(*shape, seed=0, scale=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def _act64(a, fn):
    return F.silu(a) if fn == "silu" else F.gelu(a, approximate="tanh" if fn == "gelu_tanh" else "none")


def _stabilize(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _rule64(g, a, b, fn, eps):
    """s_a = ½ g·b·act(a)/a · a/(a + ε sgn a),  s_b = ½ g·act(a) · b/(b + ε sgn b), in float64."""
    g, a, b = g.double(), a.double(), b.double()
    act = _act64(a, fn)
    ratio = torch.where(a == 0, torch.full_like(a, 0.5), act / torch.where(a == 0, torch.ones_like(a), a))
    s_a = 0.5 * g * b * ratio * (a / _stabilize(a, eps) if eps else 1.0)
    s_b = 0.5 * g * act * (b / _stabilize(b, eps) if eps else 1.0)
    return torch.cat([s_a, s_b], dim=-1)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("dtype", REF_DTYPES)
def test_reference_pass_against_float64_rule(shape, fn, eps, dtype):
    a, b, g = (_randn(*shape, seed=s, scale=2.0, dtype=dtype) for s in (1, 2, 3))
    a.view(-1)[0] = 0.0  # the guard: act(a)/a at a = 0 is its limit ½
    s = ref.backward(g, a, b, fn, eps)
    assert s.dtype == dtype and s.shape == (*shape[:-1], 2 * shape[-1])
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(s.double(), _rule64(g, a, b, fn, eps), atol=atol, rtol=rtol)
    # the forward is act(a)·b of torch: erf-GELU of float32 cancels in 1 + erf(x) for x ≪ 0 (~1e-6 absolute)
    torch.testing.assert_close(ref.forward(a, b, fn).double(), _act64(a.double(), fn) * b.double(),
                               atol=max(atol, 1e-5), rtol=rtol)


def test_reference_reads_strided_halves():
    """a and b as the two halves of one GEMM output (ModernBERT's Wi), not contiguous."""
    z = _randn(4, 3, 2 * 17, dtype=torch.float32)
    a, b = z.chunk(2, dim=-1)
    g = _randn(4, 3, 17, seed=5, dtype=torch.float32)
    for eps in (0.0, 1e-2):  # strided inputs take torch's non-vectorized GELU: float32 ulp, not bits
        expected = ref.backward(g, a.contiguous(), b.contiguous(), "gelu", eps)
        torch.testing.assert_close(ref.backward(g, a, b, "gelu", eps), expected, rtol=1e-6, atol=1e-7)


def _linear_eps64(x, weight, z, r_z, eps):
    """ε-rule R_x_i = Σ_j x_i W_ji R_z_j / (z_j + ε sgn z_j) as a contribution matrix (no autograd)."""
    contributions = torch.einsum("...i,ji->...ji", x, weight)
    return torch.einsum("...ji,...j->...i", contributions, r_z / _stabilize(z, eps))


def _explicit64(x, wa, ba, wb, bb, fn, eps, r_u):
    """Relevance at x: R_a = R_b = ½ R_u (uniform on the product, identity on act), then the ε-rule."""
    a, b = x @ wa.T + ba, x @ wb.T + bb
    return _linear_eps64(x, wa, a, 0.5 * r_u, eps) + _linear_eps64(x, wb, b, 0.5 * r_u, eps)


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.05])
@pytest.mark.parametrize("fused_weight", [True, False], ids=["one-weight", "two-weights"])
def test_op_equals_explicit_float64_relevance(fn, eps, fused_weight):
    hidden, inter = 13, 9
    x = _randn(2, 5, hidden, seed=1).requires_grad_(True)
    wa, wb = _randn(inter, hidden, seed=2) / hidden**0.5, _randn(inter, hidden, seed=3) / hidden**0.5
    ba, bb = 0.1 * _randn(inter, seed=4), 0.1 * _randn(inter, seed=5)
    if fused_weight:
        u = lrp_gated_mlp(x, torch.cat([wa, wb]), torch.cat([ba, bb]), fn, eps)
    else:
        u = lrp_gated_mlp(x, wa, ba, fn, eps, up_weight=wb, up_bias=bb)
    expected_u = _act64(x @ wa.T + ba, fn) * (x @ wb.T + bb)
    torch.testing.assert_close(u, expected_u, rtol=1e-12, atol=1e-12)
    g = _randn(2, 5, inter, seed=6)
    (gx,) = torch.autograd.grad(u, x, g)
    expected = _explicit64(x.detach(), wa, ba, wb, bb, fn, eps, expected_u.detach() * g)
    torch.testing.assert_close(x.detach() * gx, expected, rtol=1e-10, atol=1e-12)


def test_op_conserves_without_biases_and_eps():
    x = _randn(3, 11, seed=1).requires_grad_(True)
    w = _randn(2 * 7, 11, seed=2)
    u = lrp_gated_mlp(x, w, None, "silu", 0.0)
    g = _randn(3, 7, seed=3)
    (gx,) = torch.autograd.grad(u, x, g)
    torch.testing.assert_close((x.detach() * gx).sum(-1), (u.detach() * g).sum(-1), rtol=1e-12, atol=1e-12)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="valid: gelu, gelu_tanh, silu"):
        lrp_gated_mlp(torch.ones(2, 3), torch.ones(4, 3), fn="relu")


# -------------------------------------------------------------------- (c) backends vs reference
def _operands(shape, dtype, device, seed=0):
    """(a, b, g): a with zeros, values under the guard and saturated ones at its start."""
    a = with_special_values(randn(*shape, scale=3.0, seed=seed)).to(device=device, dtype=dtype)
    b = randn(*shape, dtype=dtype, device=device, seed=seed + 1, scale=2.0)
    b.view(-1)[-1:] = 0.0  # b = 0: |b|/(|b| + ε) = 0
    return a, b, randn(*shape, dtype=dtype, device=device, seed=seed + 2)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("fn", FUNCTIONS)
def test_forward(target, dtype, shape, fn):
    a, b, _ = _operands(shape, dtype, target.device)
    assert_matches(target.backend.gated_mlp.forward(a, b, fn), ref.forward(a, b, fn),
                   *target.tol("rounded_twice", dtype))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("eps", [0.0, 1e-6, 0.25])
def test_backward(target, dtype, shape, fn, eps):
    a, b, g = _operands(shape, dtype, target.device)
    got = target.backend.gated_mlp.backward(g, a, b, fn, eps)
    assert got.shape == (*shape[:-1], 2 * shape[-1]) and got.is_contiguous()
    assert_matches(got, ref.backward(g, a, b, fn, eps), *target.tol("elementwise", dtype))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_guard_and_sign_of_zero(target):
    """a = 0: act(a)/a → ½ with ε = 0, |act(a)|/(|a| + ε) = 0 with ε > 0; b = 0: s_b = 0."""
    a = torch.tensor([0.0, 5e-7, 2.0, 1.0], device=target.device)
    b = torch.tensor([4.0, 4.0, 0.0, 1.0], device=target.device)
    g = torch.full((4,), 2.0, device=target.device)
    for fn in FUNCTIONS:
        s = target.backend.gated_mlp.backward(g, a, b, fn, 0.0).cpu()
        assert s[0] == s[1] == 0.5 * 2.0 * 4.0 * 0.5 and s[4] == 0.0  # ½·g·b·½; act(0) = 0
        s = target.backend.gated_mlp.backward(g, a, b, fn, 0.5).cpu()
        assert s[0] == 0.0 and s[6] == 0.0  # 0/(0 + ε); |b| = 0


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("kind", ["halves", "transposed", "row_strided", "col_strided", "expanded"])
def test_strided_inputs(target, kind):
    """a and b as the halves of one projection (ModernBERT's Wi: row stride 2I), or other views."""
    if kind == "halves":
        a, b = randn(4, 6, 2 * 33, device=target.device, scale=3.0).chunk(2, dim=-1)
    else:
        a = noncontiguous(randn(6, 33, device=target.device, scale=3.0), kind)
        b = noncontiguous(randn(6, 33, device=target.device, seed=1), kind)
    g = noncontiguous(randn(*a.shape, device=target.device, seed=2), "row_strided")
    kernels = target.backend.gated_mlp
    for fn in FUNCTIONS:
        assert_matches(kernels.forward(a, b, fn), ref.forward(a, b, fn), *target.tol("rounded_twice", F32))
        for eps in (0.0, 0.1):
            assert_matches(kernels.backward(g, a, b, fn, eps), ref.backward(g, a, b, fn, eps),
                           *target.tol("elementwise", F32))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("fused_weight", [True, False], ids=["one-weight", "two-weights"])
def test_op_on_every_backend_equals_the_reference(target, fused_weight):
    dev = target.device
    x = randn(3, 7, 24, device=dev)
    w, bias = randn(2 * 40, 24, device=dev, seed=1, scale=0.3), randn(2 * 40, device=dev, seed=2)
    g = randn(3, 7, 40, device=dev, seed=3)
    for fn in FUNCTIONS:
        def op(backend):
            if fused_weight:
                return lambda t: lrp_gated_mlp(t, w, bias, fn, 0.1, backend)
            return lambda t: lrp_gated_mlp(t, w[:40], bias[:40], fn, 0.1, backend, w[40:], bias[40:])

        out, (gx,) = grads(op(target.backend), (x,), g)
        out_ref, (gx_ref,) = grads(op(None), (x,), g)
        assert_matches(out, out_ref, *target.tol("rounded_twice", F32))
        assert_matches(gx, gx_ref, 1e-5, 1e-5)  # float32 GEMM of the same s: summation order


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_what_the_kernels_do_not_cover_runs_the_reference(target):
    """float64 and mixed dtypes: bit for bit the reference; an unknown activation: its error."""
    kernels, dev = target.backend.gated_mlp, target.device
    a, b, g = (randn(3, 7, dtype=F64, device=dev, seed=s) for s in range(3))
    assert torch.equal(kernels.forward(a, b, "silu"), ref.forward(a, b, "silu"))
    assert torch.equal(kernels.backward(g, a, b, "gelu", 0.1), ref.backward(g, a, b, "gelu", 0.1))
    assert torch.equal(kernels.backward(g.float(), a.float(), b.half(), "gelu", 0.1),
                       ref.backward(g.float(), a.float(), b.half(), "gelu", 0.1))
    with pytest.raises(ValueError, match="valid: gelu, gelu_tanh, silu"):
        kernels.backward(g.float(), a.float(), b.float(), "relu", 0.1)


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_every_cpu_instruction_set(isa):
    with cpu_isa(isa):
        for dtype, x, g in isa_inputs():
            b = randn(*x.shape, dtype=dtype, seed=5)
            for fn in FUNCTIONS:
                assert_matches(CPP.backend.gated_mlp.forward(x, b, fn), ref.forward(x, b, fn),
                               *CPP.tol("rounded_twice", dtype))
                for eps in (0.0, 0.01):
                    assert_matches(CPP.backend.gated_mlp.backward(g, x, b, fn, eps), ref.backward(g, x, b, fn, eps),
                                   *CPP.tol("elementwise", dtype))
