"""Backward GEMMs on the live rows of a gradient only (``lrp_kernels/ops/_rows.py``), as the ε-rule of
``lrp_linear`` and the gated MLP rule of ``lrp_gated_mlp`` use them: a gradient with all-zero rows (a
language model explained at a few positions) gives exactly what the full computation gives — the same
rule and GEMM on the live rows, exact zeros on the others — for every backend that runs here."""

import pytest
import torch
from helpers import KERNEL_BACKENDS  # tests/ops helper

from lrp_kernels.ops._rows import live_rows, rowwise
from lrp_kernels.ops.gated_mlp import lrp_gated_mlp
from lrp_kernels.ops.linear import lrp_linear


def _grad_with_dead_rows(shape, dead, seed=1, dtype=torch.float32):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    g.view(-1, shape[-1])[dead] = 0
    return g


def _rows_of(found):
    return list(range(found.start, found.stop)) if isinstance(found, slice) else found.tolist()


def test_live_rows_finds_the_nonzero_rows_over_every_leading_dim():
    g = _grad_with_dead_rows((2, 3, 4), [0, 4, 5])
    assert live_rows(g) == slice(1, 4)  # one run of live rows: a slice (views, no gather)
    assert live_rows(torch.ones(2, 3, 4)) is None  # every row live: the plain path
    assert live_rows(torch.zeros(5)) is None  # one row: nothing to skip
    g.view(-1, 4)[1] = -0.0  # negative zeros are zeros
    assert live_rows(g) == slice(2, 4)
    assert _rows_of(live_rows(torch.zeros(3, 4))) == []
    scattered = _grad_with_dead_rows((2, 5, 4), [0, 3, 4, 8])
    assert live_rows(scattered).tolist() == [1, 2, 5, 6, 7, 9]  # scattered: their indices
    mostly = _grad_with_dead_rows((40, 4), [3, 17])  # scattered and 95 % live: not worth a gather
    assert live_rows(mostly) is None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e-45], ids=["nan", "inf", "-inf", "subnormal"])
def test_a_row_holding_only_a_nan_an_inf_or_a_subnormal_stays_live(value):
    g = torch.zeros(6, 4)
    g[2, 1] = value  # every other row is exactly zero
    assert _rows_of(live_rows(g)) == [2]  # skipped rows would turn a NaN / inf into a silent 0


@pytest.mark.parametrize("dead", [[0, 1, 7, 9], [0, 1, 8, 9], list(range(10))], ids=["scattered", "run", "none live"])
def test_rowwise_equals_the_full_computation_and_zero_elsewhere(dead):
    g = _grad_with_dead_rows((2, 5, 6), dead, dtype=torch.float64)
    z = torch.randn(2, 5, 6, dtype=torch.float64)
    w = torch.randn(6, 3, dtype=torch.float64)
    calls = []

    def rule(g, z):
        calls.append(g.shape[0])
        return (g / z) @ w

    out = rowwise(g, (z,), 3, rule)
    assert sum(calls) == 10 - len(dead)  # the rule ran on the live rows only
    assert not out.view(-1, 3)[dead].any()
    torch.testing.assert_close(out, (g / z) @ w, rtol=1e-12, atol=0)  # float64 GEMMs of other heights


def _backend(target):
    if target is None:
        return None  # the torch reference
    if target.device != "cpu":
        pytest.skip("rows are skipped on CPU tensors only")
    return target.backend


@pytest.mark.parametrize("target", [None, *KERNEL_BACKENDS])
@pytest.mark.parametrize("activation", [None, "gelu"])
def test_linear_backward_skipping_dead_rows_equals_every_row(target, activation):
    backend = _backend(target)
    x = torch.randn(2, 7, 16, dtype=torch.float32, requires_grad=True)
    w, b = torch.randn(24, 16) / 4, torch.randn(24)
    g = _grad_with_dead_rows((2, 7, 24), [0, 3, 4, 5, 6, 13])
    (skipped,) = torch.autograd.grad(lrp_linear(x, w, b, activation=activation, backend=backend), x, g)
    # the same rule on the same rows, a GEMM of other height: equal to float32 GEMM rounding
    torch.testing.assert_close(skipped, _every_row(lambda: lrp_linear(x, w, b, activation=activation,
                                                                     backend=backend), x, g), rtol=1e-5, atol=1e-6)
    assert not skipped.view(-1, 16)[[0, 3, 4, 5, 6, 13]].any()


@pytest.mark.parametrize("target", [None, *KERNEL_BACKENDS])
@pytest.mark.parametrize("fused_weight", [True, False])
def test_gated_mlp_backward_skipping_dead_rows_equals_every_row(target, fused_weight):
    backend = _backend(target)
    x = torch.randn(2, 6, 16, dtype=torch.float32, requires_grad=True)
    if fused_weight:
        kwargs = dict(weight=torch.randn(40, 16) / 4, up_weight=None)
    else:
        kwargs = dict(weight=torch.randn(20, 16) / 4, up_weight=torch.randn(20, 16) / 4)
    g = _grad_with_dead_rows((2, 6, 20), [1, 2, 8, 11])
    (skipped,) = torch.autograd.grad(lrp_gated_mlp(x, fn="silu", backend=backend, **kwargs), x, g)
    expected = _every_row(lambda: lrp_gated_mlp(x, fn="silu", backend=backend, **kwargs), x, g)
    torch.testing.assert_close(skipped, expected, rtol=1e-5, atol=1e-6)  # float32 GEMMs of other heights
    assert not skipped.view(-1, 16)[[1, 2, 8, 11]].any()


def _every_row(forward, x, g):
    """The backward with the row skipping switched off (the path every row takes)."""
    import lrp_kernels.ops._rows as rows

    keep = rows.live_rows
    rows.live_rows = lambda grad: None
    try:
        (grad,) = torch.autograd.grad(forward(), x, g)
    finally:
        rows.live_rows = keep
    return grad
