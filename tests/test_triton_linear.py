"""Triton ε-rule kernels of a linear layer — the stabilizer alone and the fused backward GEMM
(stabilizer, optionally × GELU identity, applied on the operand load) — against the torch reference;
runs through Triton's interpreter on the CPU when there is no GPU (small shapes)."""

import pytest
import torch

from triton_loader import import_triton_backend  # tests/ helper

tk = import_triton_backend()
DEVICE = "cpu" if tk.INTERPRETED else "cuda"

from lrp_kernels.errors import InputError  # noqa: E402
from lrp_kernels.ops import _torch_backend as ref  # noqa: E402

# (dtype, atol, rtol) of the GEMM: outputs are sums of N_out products of O(1) values (|g_x| up to
# ~20). Operand rounding is identical on both sides (the stabilized gradient is cast to the input
# dtype before the product, as the reference's eps_ratio result is); what differs is the float32
# summation order and the final rounding.
GEMM_DTYPES = [
    pytest.param(torch.float32, 1e-4, 1e-5, id="float32"),  # float32: summation order of ≤ 100 terms of size ~10
    # float16: one rounding of the output (2^-10 relative, ≤ 1.6e-2 at 16)
    pytest.param(torch.float16, 2e-2, 2e-3, id="float16"),
    # bfloat16: one rounding of the output (2^-7 relative, ≤ 1.3e-1 at 16)
    pytest.param(torch.bfloat16, 1.3e-1, 1.6e-2, id="bfloat16"),
]
# (leading shape of the tokens, N_out, N_in): ragged against the 32×32×16 interpreter tiles
SHAPES = [((37,), 45, 29), ((2, 9), 64, 96), ((1,), 7, 5)]
RULES = [  # (eps, gelu approximation or None)
    (0.0, None),  # plain gradient GEMM
    (0.1, None),  # ε-rule on load
    (0.0, "none"),  # GELU identity on load
    (0.1, "tanh"),  # GELU identity × ε-rule on load
]


def _rand(shape, dtype, gen, scale=1.0):
    return (torch.randn(shape, generator=gen) * scale).to(dtype).to(DEVICE)


def _inputs(lead, n_out, n_in, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    g = _rand((*lead, n_out), dtype, gen)
    z = _rand((*lead, n_out), dtype, gen, 2.0)
    z.view(-1)[:3] = torch.tensor([0.0, 1e-7, -1e-7])  # sign(0) = +1 and values well inside ε
    w = _rand((n_out, n_in), dtype, gen)
    return g, z, w


def _expected(g, z, w, eps, approximate):
    if approximate is None:
        return torch.matmul(ref.eps_ratio(g, z, eps), w)
    return torch.matmul(ref.gelu_eps_ratio(g, z, eps, approximate), w)


def _close(a, b, atol, rtol):
    assert a.dtype == b.dtype and a.shape == b.shape
    torch.testing.assert_close(a.float().cpu(), b.float().cpu(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("lead, n_out, n_in", SHAPES, ids=str)
@pytest.mark.parametrize("dtype, atol, rtol", GEMM_DTYPES)
@pytest.mark.parametrize("eps, approximate", RULES, ids=str)
def test_linear_backward_matches_rule_then_matmul(lead, n_out, n_in, dtype, atol, rtol, eps, approximate):
    g, z, w = _inputs(lead, n_out, n_in, dtype)
    if approximate is None:
        got = tk.linear_backward(g, z if eps != 0 else None, w, eps)
    else:
        got = tk.linear_backward(g, None, w, eps, gelu_input=z, approximate=approximate)
    _close(got, _expected(g, z, w, eps, approximate), atol, rtol)


def test_linear_backward_strided_operands():
    """Weight given as a transposed view and gradients with a padded row stride."""
    gen = torch.Generator().manual_seed(3)
    w = _rand((29, 45), torch.float32, gen).t()  # [45, 29] with strides (1, 45)
    g = _rand((37, 50), torch.float32, gen)[:, :45]
    z = _rand((37, 50), torch.float32, gen)[:, :45]
    _close(tk.linear_backward(g, z, w, 0.2), _expected(g, z, w, 0.2, None), 1e-4, 1e-5)


@pytest.mark.parametrize("dtype, atol, rtol", [
    pytest.param(torch.float32, 1e-6, 1e-6, id="float32"),  # float32: the same two roundings as the reference
    pytest.param(torch.bfloat16, 0, 1e-2, id="bfloat16"),  # bfloat16: one output rounding, 2^-7 relative
], ids=["float32", "bfloat16"])
def test_eps_ratio_matches_reference(dtype, atol, rtol):
    g, z, _ = _inputs((3, 101), 1, 1, dtype, seed=4)
    got = tk.eps_ratio(g, z, 0.05)
    _close(got, ref.eps_ratio(g, z, 0.05), atol, rtol)
    assert got.view(-1)[0] == 0  # z = 0: 0/(0 + ε) with sign(0) = +1
    assert tk.eps_ratio(g, z, 0.0) is g  # ε = 0 returns the gradient unchanged


def test_float64_is_handed_to_the_reference():
    g, z, w = _inputs((4,), 6, 5, torch.float64)
    torch.testing.assert_close(tk.linear_backward(g, z, w, 0.1), _expected(g, z, w, 0.1, None), atol=0, rtol=0)


def test_bad_input_raises():
    g, z, w = _inputs((4,), 6, 5, torch.float32)
    with pytest.raises(InputError, match="weight must have shape"):
        tk.linear_backward(g, z, w.t(), 0.1)
    with pytest.raises(InputError, match="needs z"):
        tk.linear_backward(g, None, w, 0.1)
    with pytest.raises(InputError, match="dtype"):
        tk.linear_backward(g, z, w.double(), 0.1)
    with pytest.raises(InputError, match="unknown GELU approximation"):
        tk.linear_backward(g, None, w, 0.1, gelu_input=z, approximate="erf")
