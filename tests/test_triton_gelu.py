"""Triton GELU kernels (forward, identity rule, identity rule fused with the ε-stabilizer) against
the torch reference; runs through Triton's interpreter on the CPU when there is no GPU."""

import pytest
import torch

from triton_loader import import_triton_backend  # tests/ helper

tk = import_triton_backend()
DEVICE = "cpu" if tk.INTERPRETED else "cuda"

import math  # noqa: E402

from lrp_kernels.errors import InputError  # noqa: E402
from lrp_kernels.ops import _torch_backend as ref  # noqa: E402

# (dtype, atol, rtol): both sides compute in float32 and round once to the output dtype; the kernel
# evaluates gelu(u)/u = Φ(u) directly where the reference divides gelu(u) by u, a few float32 ulps.
DTYPES = [
    pytest.param(torch.float32, 2e-6, 1e-5, id="float32"),  # float32: a few ulps of values up to ~10 (Φ vs gelu(u)/u)
    pytest.param(torch.float16, 1e-3, 2e-3, id="float16"),  # float16: one rounding step, 2^-10 relative
    pytest.param(torch.bfloat16, 1e-2, 1.6e-2, id="bfloat16"),  # bfloat16: one rounding step, 2^-7 relative
]
SHAPES = [(1000,), (3, 17, 29), (1,)]  # ragged tails against the 256-element interpreter block
APPROX = ["none", "tanh"]


def _inputs(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(shape, generator=gen) * 4
    flat = u.view(-1)
    # exact zero, values inside the |u| < 1e-6 guard, and saturated tails
    special = torch.tensor([0.0, 5e-7, -5e-7, 12.0, -12.0, 1e-3])[: flat.numel()]
    flat[: special.numel()] = special
    g = torch.randn(shape, generator=gen)
    return u.to(dtype).to(DEVICE), g.to(dtype).to(DEVICE)


def _close(a, b, atol, rtol):
    assert a.dtype == b.dtype and a.shape == b.shape
    torch.testing.assert_close(a.float().cpu(), b.float().cpu(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_forward_and_rules_match_reference(shape, dtype, atol, rtol, approximate):
    u, g = _inputs(shape, dtype)
    _close(tk.gelu_forward(u, approximate), ref.gelu_forward(u, approximate), atol, rtol)
    _close(tk.gelu_backward(g, u, approximate), ref.gelu_backward(g, u, approximate), atol, rtol)
    for eps in (0.0, 0.25):
        _close(tk.gelu_eps_ratio(g, u, eps, approximate), ref.gelu_eps_ratio(g, u, eps, approximate), atol, rtol)


def test_identity_rule_guard_and_sign_of_zero():
    u = torch.tensor([0.0, 5e-7, -5e-7, 2.0], device=DEVICE)
    g = torch.ones(4, device=DEVICE)
    # gelu(u)/u → ½ at 0 (guarded); the stabilizer treats sign(0) as +1: 0/(0 + ε) = 0
    torch.testing.assert_close(tk.gelu_backward(g, u)[:3].cpu(), torch.full((3,), 0.5), atol=0, rtol=0)
    fused = tk.gelu_eps_ratio(g, u, 0.5).cpu()
    assert fused[0] == 0.0
    expected = 0.5 * (1 + math.erf(2.0 / math.sqrt(2.0))) * 2.0 / 2.5  # Φ(2) · 2/(2 + ε)
    torch.testing.assert_close(fused[3].item(), expected, atol=1e-6, rtol=1e-6)


def test_non_contiguous_inputs():
    u, g = _inputs((8, 12), torch.float32, seed=1)
    ut, gt = u.t(), g.t()
    _close(tk.gelu_eps_ratio(gt, ut, 0.1), ref.gelu_eps_ratio(gt, ut, 0.1), 2e-6, 1e-5)


def test_bad_input_raises():
    u, g = _inputs((5,), torch.float32)
    with pytest.raises(InputError, match="unknown GELU approximation"):
        tk.gelu_forward(u, "erf")
    with pytest.raises(InputError, match="same shape"):
        tk.gelu_backward(g[:4], u)
