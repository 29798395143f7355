"""Element-wise activations under the identity rule (``lrp_kernels/ops/activation.py``).

(a) the torch reference against float64 math; (b) the op ``lrp_activation``; (c) every backend
that runs here (``helpers.KERNEL_BACKENDS``) against the torch reference. The GELU fused into a
linear's ε-rule (``gelu_eps_ratio``) is tested with the linear rule, in ``test_linear.py``.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import (  # tests/ops helper
    CPP, DTYPES, ELEMENTWISE_SHAPES, F32, F64, KERNEL_BACKENDS, assert_matches, cpu_isa,
    cpu_isa_params, grads, isa_inputs, noncontiguous, randn, relevance_in_out, with_special_values,
)

from lrp_kernels.backends.contract import ACTIVATIONS
from lrp_kernels.backends.torch import activation as ref
from lrp_kernels.errors import BackendError
from lrp_kernels.ops.activation import lrp_activation

ORDINARY = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "relu": torch.relu,
}


def explicit_factor(x: torch.Tensor, fn: str) -> torch.Tensor:
    """fn(x)/x in float64, its limit where |x| is below the guard (½ for GELU, 1 for tanh); ReLU: x > 0."""
    x = x.double()
    if fn == "relu":
        return (x > 0).double()
    guard, limit = (ref.TANH_GUARD, 1.0) if fn == "tanh" else (ref.GELU_GUARD, 0.5)
    small = x.abs() < guard
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, torch.full_like(x, limit), ORDINARY[fn](safe) / safe)


# ------------------------------------------------------------------- (a) reference vs float64
@pytest.mark.parametrize("fn", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [F64, F32], ids=["fp64", "fp32"])
def test_reference_is_the_ordinary_op_and_the_identity_rule(fn, dtype):
    x = with_special_values(randn(4, 9, 31, dtype=dtype, scale=3.0))
    g = randn(4, 9, 31, dtype=dtype, seed=1)
    assert torch.equal(ref.forward(x, fn), ORDINARY[fn](x))
    got = ref.backward(g, x, fn)
    assert got.dtype == dtype
    expected = g.double() * explicit_factor(x, fn)
    # float32: its own roundings, and torch's float32 erf is off by up to 1.5e-7 absolute (× |g| ≲ 4)
    atol, rtol = (0, 1e-15) if dtype == F64 else (1e-6, 1e-6)
    torch.testing.assert_close(got.double(), expected, atol=atol, rtol=rtol)


def test_reference_gelu_guard_is_the_limit():
    """Below the guard gelu(u)/u is taken as ½; at the guard it is Φ(u), which differs from ½ in float32."""
    guard = torch.tensor(ref.GELU_GUARD, dtype=F32)
    inside = torch.nextafter(guard, torch.tensor(0.0))
    u = torch.stack([torch.tensor(0.0), inside, -inside, guard, -guard])
    out = ref.backward(torch.ones(5), u, "gelu")
    assert out[:3].tolist() == [0.5, 0.5, 0.5]
    assert out[3].item() != 0.5 and out[4].item() != 0.5


def test_reference_rejects_unknown_functions():
    with pytest.raises(ValueError, match="valid"):
        ref.forward(torch.zeros(3), "swish")
    with pytest.raises(ValueError, match="valid"):
        ref.backward(torch.zeros(3), torch.zeros(3), "swish")


# ------------------------------------------------------------------------------------ (b) op
@pytest.mark.parametrize("fn", ["gelu", "gelu_tanh", "tanh", "relu"])
def test_activation_identity_rule_passes_relevance_unchanged(fn):
    x = torch.randn(4, 9, 31, dtype=F64)
    x[0, 0, :3] = torch.tensor([0.0, 1e-9, -1e-9], dtype=F64)  # the guarded region
    r_x, r_y = relevance_in_out(lambda t: lrp_activation(t, fn), x)
    torch.testing.assert_close(r_x, r_y, rtol=1e-6, atol=1e-12)
    assert torch.isfinite(r_x).all()


def test_activation_forward_is_the_ordinary_op():
    x = torch.randn(5, 7)
    assert torch.equal(lrp_activation(x, "gelu"), F.gelu(x))
    assert torch.equal(lrp_activation(x, "gelu_tanh"), F.gelu(x, approximate="tanh"))
    assert torch.equal(lrp_activation(x, "tanh"), torch.tanh(x))
    assert torch.equal(lrp_activation(x, "relu"), torch.relu(x))


def test_unknown_activations_are_rejected():
    with pytest.raises(ValueError, match="valid"):
        lrp_activation(torch.zeros(3), "swish")


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("fn", ACTIVATIONS)
def test_op_on_every_backend_equals_the_reference(target, fn):
    x = with_special_values(randn(3, 7, 40, device=target.device, scale=3.0))
    g = randn(3, 7, 40, device=target.device, seed=1)
    out, (gx,) = grads(lambda t: lrp_activation(t, fn, backend=target.backend), (x,), g)
    out_ref, (gx_ref,) = grads(lambda t: lrp_activation(t, fn), (x,), g)
    atol, rtol = target.tol("elementwise", F32)
    assert_matches(out, out_ref, atol, rtol)
    assert_matches(gx, gx_ref, atol, rtol)


# -------------------------------------------------------------------- (c) backends vs reference
@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("fn", ACTIVATIONS)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_matches_the_reference(target, dtype, shape, fn, direction):
    """``forward(u, fn)`` or ``backward(g, u, fn)`` of the backend's kernel set against the reference's."""
    u = with_special_values(randn(*shape, scale=3.0)).to(device=target.device, dtype=dtype)
    g = randn(*shape, dtype=dtype, device=target.device, seed=1)
    args = (u, fn) if direction == "forward" else (g, u, fn)
    got = getattr(target.backend.activation, direction)(*args)
    assert_matches(got, getattr(ref, direction)(*args), *target.tol("elementwise", dtype))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_gelu_guard_is_the_reference_guard(target):
    """gelu(u)/u is ½ exactly where |u| < the reference's GELU_GUARD (compared in float32) and
    Φ(u) from the guard on: the kernels' guard constant is the reference's."""
    guard = torch.tensor(ref.GELU_GUARD, dtype=F32)
    inside = torch.nextafter(guard, torch.tensor(0.0))
    below = [torch.tensor(v) for v in (0.0, 1e-7, 5e-7, -5e-7, -9e-7)] + [inside, -inside]
    u = torch.stack(below + [guard, -guard, torch.tensor(2e-6)]).to(target.device)
    out = target.backend.activation.backward(torch.ones_like(u), u, "gelu").cpu()
    assert out[: len(below)].tolist() == [0.5] * len(below)
    assert all(v != 0.5 for v in out[len(below):].tolist())
    assert_matches(out, ref.backward(torch.ones(len(u)), u.cpu(), "gelu"), *target.tol("elementwise", F32))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("kind", ["transposed", "row_strided", "col_strided", "expanded"])
def test_strided_inputs(target, kind):
    u = noncontiguous(randn(6, 33, device=target.device, scale=3.0), kind)
    g = noncontiguous(randn(6, 33, device=target.device, seed=1), kind)
    atol, rtol = target.tol("elementwise", F32)
    assert_matches(target.backend.activation.forward(u, "gelu"), ref.forward(u, "gelu"), atol, rtol)
    assert_matches(target.backend.activation.backward(g, u, "gelu_tanh"), ref.backward(g, u, "gelu_tanh"), atol, rtol)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_float64_runs_the_reference(target):
    u = randn(3, 7, dtype=F64, device=target.device)
    for fn in ACTIVATIONS:
        out = target.backend.activation.backward(u, u, fn)
        assert out.dtype == F64
        assert torch.equal(out, ref.backward(u, u, fn))
        assert torch.equal(target.backend.activation.forward(u, fn), ref.forward(u, fn))


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_unknown_names_raise(target):
    """The contract's functions reject an unknown activation like the reference; a GELU kernel
    given an unknown ``approximate`` raises a backend error (never a CLI error)."""
    u = torch.zeros(3, device=target.device)
    with pytest.raises(ValueError, match="valid"):
        target.backend.activation.forward(u, "swish")
    with pytest.raises(ValueError, match="valid"):
        target.backend.activation.backward(u, u, "swish")
    with pytest.raises(BackendError, match="unknown GELU approximat"):
        target.module("activation").gelu_forward(u, "sigmoid")


@pytest.mark.parametrize("target", [t for t in KERNEL_BACKENDS if t.id.startswith("triton")])
def test_triton_shape_mismatch_raises(target):
    u, g = randn(5, device=target.device), randn(5, device=target.device, seed=1)
    with pytest.raises(BackendError, match="same shape"):
        target.backend.activation.backward(g[:4], u, "gelu")


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_every_cpu_instruction_set(isa):
    with cpu_isa(isa):
        for dtype, x, g in isa_inputs():
            atol, rtol = CPP.tol("elementwise", dtype)
            for fn in ("gelu", "gelu_tanh"):
                assert_matches(CPP.backend.activation.forward(x, fn), ref.forward(x, fn), atol, rtol)
                assert_matches(CPP.backend.activation.backward(g, x, fn), ref.backward(g, x, fn), atol, rtol)


def test_explicit_factor_matches_erf():
    """The float64 oracle above: gelu(u)/u = Φ(u) = ½(1 + erf(u/√2))."""
    u = torch.tensor([-3.0, -0.5, 0.25, 2.0], dtype=F64)
    phi = torch.tensor([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in u.tolist()], dtype=F64)
    torch.testing.assert_close(explicit_factor(u, "gelu"), phi, rtol=1e-15, atol=0)
