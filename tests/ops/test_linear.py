"""The ε-rule of a linear layer, optionally fused with a GELU's identity rule (``lrp_kernels/ops/linear.py``).

(a) the torch reference against float64 math; (b) the op ``lrp_linear``; (c) every backend that
runs here (``helpers.KERNEL_BACKENDS``) against the torch reference: the element-wise rule
(``eps_ratio``, ``gelu_eps_ratio``) and the op's whole backward (the rule once per element, then
``torch.matmul``) on every backend.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from helpers import (  # tests/ops helper
    CPP, DTYPES, ELEMENTWISE_SHAPES, F32, F64, GEMM_SHAPES, KERNEL_BACKENDS, OP_SHAPES,
    assert_matches, cpu_isa, cpu_isa_params, grads, isa_inputs, noncontiguous, randn, relevance_in_out,
    with_special_values,
)

from lrp_kernels.backends.contract import LinearKernels
from lrp_kernels.backends.torch import BACKEND as TORCH
from lrp_kernels.backends.torch import activation as ref_activation
from lrp_kernels.backends.torch import linear as ref
from lrp_kernels.errors import BackendError
from lrp_kernels.ops.activation import lrp_activation
from lrp_kernels.ops.layer_norm import lrp_layer_norm
from lrp_kernels.ops.linear import lrp_linear

stabilize = ref.stabilize


# ------------------------------------------------------------------- (a) reference vs float64
def test_stabilizer_sign_of_zero_is_positive():
    z = torch.tensor([-2.0, 0.0, 3.0], dtype=F64)
    assert torch.equal(stabilize(z, 0.5), torch.tensor([-2.5, 0.5, 3.5], dtype=F64))


@pytest.mark.parametrize("dtype", [F64, F32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("eps", [1e-6, 0.3])
def test_reference_eps_ratio_is_g_z_over_stabilized_z_bit_for_bit(dtype, eps):
    """g·|z|/(|z| + ε) (what the reference computes) is g·z/(z + ε·sign z) to the last bit."""
    z = with_special_values(randn(5, 77, dtype=dtype, scale=2.0))
    g = randn(5, 77, dtype=dtype, seed=1)
    assert torch.equal(ref.eps_ratio(g, z, eps), g * z / stabilize(z, eps))


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_reference_eps_ratio_in_chunks(layout):
    """More elements than one chunk of the in-place division (and a strided input, in one piece)."""
    n = 2 * ref.CHUNK + 5
    z = with_special_values(randn(n // 5, 5, dtype=F64, scale=2.0))
    g = randn(n // 5, 5, dtype=F64, seed=1)
    if layout == "transposed":
        z, g = noncontiguous(z, "transposed"), noncontiguous(g, "transposed")
    assert torch.equal(ref.eps_ratio(g, z, 0.1), g * z / stabilize(z, 0.1))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("eps", [0.0, 1e-6, 0.25])
def test_reference_gelu_eps_ratio_is_the_two_rules_in_float64(approximate, eps):
    """g · gelu(u)/u · u/(u + ε·sign u), gelu(u)/u → ½ below the guard."""
    u = with_special_values(randn(4, 9, 31, dtype=F64, scale=3.0))
    g = randn(4, 9, 31, dtype=F64, seed=1)
    small = u.abs() < ref_activation.GELU_GUARD
    safe = torch.where(small, torch.ones_like(u), u)
    factor = torch.where(small, torch.full_like(u, 0.5), F.gelu(safe, approximate=approximate) / safe)
    ratio = u / stabilize(u, eps) if eps else 1.0  # ε = 0: no stabilizer (u/u = 1, also at u = 0)
    expected = g * factor * ratio
    got = ref.gelu_eps_ratio(g, u, eps, approximate)
    # below the guard the reference's Φ(u)·|u|/(|u| + ε) is within GELU_GUARD relative of ½·u/(u + ε sign u)
    torch.testing.assert_close(got, expected, rtol=ref_activation.GELU_GUARD, atol=0)
    if eps == 0:
        assert torch.equal(got, ref_activation.gelu_backward(g, u, approximate))


def test_reference_eps_zero_returns_the_gradient_itself():
    g, z = randn(3, 7), randn(3, 7, seed=1)
    assert ref.eps_ratio(g, z, 0.0) is g


# ------------------------------------------------------------------------------------ (b) op
@pytest.mark.parametrize("shape", OP_SHAPES)
def test_linear_forward_is_f_linear_bit_for_bit(shape):
    x = torch.randn(shape)
    w, b = torch.randn(11, shape[-1]), torch.randn(11)
    assert torch.equal(lrp_linear(x, w, b, eps=0.1), F.linear(x, w, b))
    h = lrp_linear(x, w, b, eps=0.1, activation="gelu")
    assert torch.equal(h, F.gelu(F.linear(x, w, b)))


@pytest.mark.parametrize("shape", OP_SHAPES)
def test_linear_eps_zero_without_bias_conserves(shape):
    x = torch.randn(shape, dtype=F64)
    w = torch.randn(13, shape[-1], dtype=F64)
    r_x, r_z = relevance_in_out(lambda t: lrp_linear(t, w, None, eps=0.0), x)
    torch.testing.assert_close(r_x.sum(), r_z.sum(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", OP_SHAPES)
def test_linear_eps_rule_matches_explicit_formula(shape):
    """R_x = x ⊙ Wᵀ(R_z / (z + ε sign z)) with bias and ε > 0: the bias and ε take their share."""
    eps = 0.3
    x = torch.randn(shape, dtype=F64)
    w, b = torch.randn(9, shape[-1], dtype=F64), torch.randn(9, dtype=F64)
    x_leaf = x.clone().requires_grad_(True)
    z = lrp_linear(x_leaf, w, b, eps=eps)
    g_z = torch.randn_like(z)
    (g_x,) = torch.autograd.grad(z, x_leaf, g_z)
    r_z = z.detach() * g_z
    expected = torch.einsum("...i,ji,...j->...i", x, w, r_z / stabilize(z.detach(), eps))
    torch.testing.assert_close(x * g_x, expected, rtol=1e-10, atol=1e-12)
    bias_share = (b * r_z / stabilize(z.detach(), eps)).sum()
    eps_share = (eps * torch.where(z >= 0, 1.0, -1.0).double() * r_z / stabilize(z.detach(), eps)).sum()
    torch.testing.assert_close((x * g_x).sum(), r_z.sum() - bias_share - eps_share, rtol=1e-9, atol=1e-10)


def test_linear_eps_zero_is_plain_gradient():
    x = torch.randn(4, 10, requires_grad=True)
    w, b = torch.randn(6, 10), torch.randn(6)
    g = torch.randn(4, 6)
    (ours,) = torch.autograd.grad(lrp_linear(x, w, b, eps=0.0), x, g)
    (plain,) = torch.autograd.grad(F.linear(x, w, b), x, g)
    torch.testing.assert_close(ours, plain)


@pytest.mark.parametrize("approximate", ["gelu", "gelu_tanh"])
def test_linear_gelu_fused_equals_linear_then_identity_gelu(approximate):
    """The fused GELU-identity × stabilizer pass equals the two rules applied one after the other."""
    x = torch.randn(3, 8, 20, dtype=F64)
    w, b = torch.randn(30, 20, dtype=F64), torch.randn(30, dtype=F64)
    g = torch.randn(3, 8, 30, dtype=F64)
    x1 = x.clone().requires_grad_(True)
    (fused,) = torch.autograd.grad(lrp_linear(x1, w, b, eps=0.01, activation=approximate), x1, g)
    x2 = x.clone().requires_grad_(True)
    y = lrp_activation(lrp_linear(x2, w, b, eps=0.01), approximate)
    (chained,) = torch.autograd.grad(y, x2, g)
    torch.testing.assert_close(fused, chained, rtol=1e-10, atol=1e-12)


def test_linear_gives_no_weight_gradient():
    x = torch.randn(2, 5, requires_grad=True)
    w = torch.randn(3, 5, requires_grad=True)
    lrp_linear(x, w, None).sum().backward()
    assert x.grad is not None and w.grad is None


def test_linear_rejects_unknown_activations():
    with pytest.raises(ValueError, match="valid"):
        lrp_linear(torch.zeros(2, 3), torch.zeros(4, 3), activation="tanh")


@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_op_backward_is_the_rule_once_then_one_matmul(monkeypatch, activation, eps):
    """The backend's element-wise rule runs once per backward (with the GELU input for a fused
    activation), then one ``torch.matmul`` — the GEMM stays a GEMM (ε = 0 without GELU: the rule
    returns the gradient itself)."""
    calls = []

    def eps_ratio(grad_z, z, eps_):
        calls.append(("eps_ratio", eps_))
        return ref.eps_ratio(grad_z, z, eps_)

    def gelu_eps_ratio(grad_h, u, eps_, approximate):
        calls.append(("gelu_eps_ratio", eps_, approximate))
        return ref.gelu_eps_ratio(grad_h, u, eps_, approximate)

    recording = dataclasses.replace(TORCH, name="recording", linear=LinearKernels(eps_ratio, gelu_eps_ratio))
    x, w, b = randn(3, 7, 24, dtype=F64), randn(40, 24, dtype=F64, seed=1), randn(40, dtype=F64, seed=2)
    g = randn(3, 7, 40, dtype=F64, seed=3)
    _, (gx_ref,) = grads(lambda t: lrp_linear(t, w, b, eps=eps, activation=activation), (x,), g)
    matmuls = []
    real_matmul = torch.matmul
    monkeypatch.setattr(torch, "matmul", lambda *a: matmuls.append(1) or real_matmul(*a))
    _, (gx,) = grads(lambda t: lrp_linear(t, w, b, eps=eps, activation=activation, backend=recording), (x,), g)
    assert torch.equal(gx, gx_ref) and len(matmuls) == 1
    approximate = {None: None, "gelu": "none", "gelu_tanh": "tanh"}[activation]
    assert calls == ([("gelu_eps_ratio", eps, approximate)] if approximate else [("eps_ratio", eps)])


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh"])
def test_linear_and_layer_norm_ops_on_every_backend_equal_torch(target, activation):
    """A BERT output block (linear, GELU, LayerNorm) through the ops on the backend vs the reference."""
    gen = torch.Generator().manual_seed(1)
    dev = target.device
    x = torch.randn(3, 7, 24, generator=gen).to(dev)
    w, b = torch.randn(40, 24, generator=gen).to(dev), torch.randn(40, generator=gen).to(dev)
    gamma, beta = torch.randn(40, generator=gen).to(dev), torch.randn(40, generator=gen).to(dev)
    g = torch.randn(3, 7, 40, generator=gen).to(dev)

    def block(backend):
        def run(t):
            h = lrp_linear(t, w, b, eps=0.1, activation=activation, backend=backend)
            return lrp_layer_norm(h, gamma, beta, 1e-5, backend=backend)

        return run

    out, (gx,) = grads(block(target.backend), (x,), g)
    out_ref, (gx_ref,) = grads(block(None), (x,), g)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)  # float32, summation order
    torch.testing.assert_close(gx, gx_ref, atol=1e-4, rtol=1e-5)  # float32 GEMM of 40 terms


# -------------------------------------------------------------------- (c) backends vs reference
@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("eps", [1e-6, 0.01, 1.0])
def test_eps_ratio(target, dtype, shape, eps):
    z = with_special_values(randn(*shape, scale=2.0)).to(device=target.device, dtype=dtype)
    g = randn(*shape, dtype=dtype, device=target.device, seed=1)
    got = target.backend.linear.eps_ratio(g, z, eps)
    assert_matches(got, ref.eps_ratio(g, z, eps), *target.tol("eps_ratio", dtype))
    assert got.view(-1)[0] == 0  # z = 0: 0/(0 + ε) with sign(0) = +1


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_eps_ratio_zero_eps_is_plain_gradient(target):
    g, z = randn(3, 7, device=target.device), randn(3, 7, device=target.device, seed=1)
    assert target.backend.linear.eps_ratio(g, z, 0.0) is g


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("eps", [0.0, 1e-6, 0.25])
def test_gelu_eps_ratio(target, dtype, shape, approximate, eps):
    u = with_special_values(randn(*shape, scale=3.0)).to(device=target.device, dtype=dtype)
    g = randn(*shape, dtype=dtype, device=target.device, seed=1)
    assert_matches(target.backend.linear.gelu_eps_ratio(g, u, eps, approximate),
                   ref.gelu_eps_ratio(g, u, eps, approximate), *target.tol("elementwise", dtype))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_gelu_eps_ratio_guard_and_sign_of_zero(target):
    """gelu(u)/u → ½ at 0 (guarded); the stabilizer treats sign(0) as +1: 0/(0 + ε) = 0."""
    u = torch.tensor([0.0, 5e-7, -5e-7, 2.0], device=target.device)
    g = torch.ones(4, device=target.device)
    fused = target.backend.linear.gelu_eps_ratio(g, u, 0.5, "none").cpu()
    assert fused[0] == 0.0
    expected = 0.5 * (1 + torch.erf(torch.tensor(2.0, dtype=F64) / 2**0.5)).item() * 2.0 / 2.5  # Φ(2)·2/(2 + ε)
    torch.testing.assert_close(fused[3].item(), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("kind", ["transposed", "row_strided", "col_strided", "expanded"])
def test_strided_inputs(target, kind):
    u = noncontiguous(randn(6, 33, device=target.device, scale=3.0), kind)
    g = noncontiguous(randn(6, 33, device=target.device, seed=1), kind)
    kernels = target.backend.linear
    assert_matches(kernels.eps_ratio(g, u, 0.1), ref.eps_ratio(g, u, 0.1), *target.tol("eps_ratio", F32))
    for approximate in ("none", "tanh"):
        assert_matches(kernels.gelu_eps_ratio(g, u, 0.1, approximate), ref.gelu_eps_ratio(g, u, 0.1, approximate),
                       *target.tol("elementwise", F32))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_float64_runs_the_reference(target):
    """float64 is not a kernel dtype: the backend hands it to the torch reference, in float64."""
    u = randn(3, 7, dtype=F64, device=target.device)
    out = target.backend.linear.gelu_eps_ratio(u, u, 0.1, "none")
    assert out.dtype == F64
    assert torch.equal(out, ref.gelu_eps_ratio(u, u, 0.1, "none"))
    assert torch.equal(target.backend.linear.eps_ratio(u, u, 0.1), ref.eps_ratio(u, u, 0.1))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_unknown_approximate_raises_a_backend_error(target):
    u = torch.zeros(3, device=target.device)
    with pytest.raises(BackendError, match="unknown GELU approximat"):
        target.backend.linear.gelu_eps_ratio(u, u, 0.1, "sigmoid")


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_every_cpu_instruction_set(isa):
    with cpu_isa(isa):
        for dtype, x, g in isa_inputs():
            atol, rtol = CPP.tol("elementwise", dtype)
            assert_matches(CPP.backend.linear.eps_ratio(g, x, 0.01), ref.eps_ratio(g, x, 0.01), atol, rtol)
            for approximate in ("none", "tanh"):
                assert_matches(CPP.backend.linear.gelu_eps_ratio(g, x, 0.01, approximate),
                               ref.gelu_eps_ratio(g, x, 0.01, approximate), atol, rtol)


# ------------------------------------------------------------- (c) the whole backward, rule then GEMM
RULES = [  # (eps, GELU approximation or None)
    (0.0, None),  # plain gradient GEMM
    (0.1, None),  # ε-rule
    (0.0, "none"),  # GELU identity
    (0.1, "tanh"),  # GELU identity × ε-rule
]
_ACTIVATION = {None: None, "none": "gelu", "tanh": "gelu_tanh"}


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("lead, n_out, n_in", GEMM_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps, approximate", RULES, ids=str)
def test_op_backward_matches_the_reference(target, lead, n_out, n_in, dtype, eps, approximate):
    """g_x of the op on the backend (its element-wise rule, then ``torch.matmul``) against the
    reference's: the rule's result is rounded to the input dtype before the product on both sides;
    the rule's float32 roundings and the GEMM's summation differ."""
    gen = torch.Generator().manual_seed(0)
    x, g = (torch.randn(shape, generator=gen).to(dtype).to(target.device) for shape in ((*lead, n_in), (*lead, n_out)))
    w = torch.randn(n_out, n_in, generator=gen).to(dtype).to(target.device)
    b = (torch.randn(n_out, generator=gen) * 0.1).to(dtype).to(target.device)

    def op(backend):
        return lambda t: lrp_linear(t, w, b, eps=eps, activation=_ACTIVATION[approximate], backend=backend)

    _, (got,) = grads(op(target.backend), (x,), g)
    _, (want,) = grads(op(None), (x,), g)
    assert_matches(got, want, *target.tol("gemm", dtype))
