"""Decoder sizes through every kernel backend that runs here (``helpers.KERNEL_BACKENDS``): nothing
may assume a hidden size ≤ 1024 or a vocabulary ≤ 250k.

* the row-wise rules (LayerNorm, RMSNorm: forward and backward) on single rows of Gemma 3 27B's
  hidden size (5376), Llama-70B's (8192) and Llama-405B's (16384) — Triton's norms hold a row in
  one block up to ``_norm.MAX_ROW`` and hand longer rows to the torch reference;
* the element-wise rules over a row of logits of Gemma's 262,144-token vocabulary (the ε-ratio of
  the LM head, GELU's identity rule × ε-ratio) and a gated MLP row of Llama-70B's 28,672;
* a launch over more than 2³¹ elements (B·L·V of a batch of logits), recorded on meta tensors: the
  element count reaches the kernel as a Python int (Triton passes it as int64; the kernels' offsets
  are int64 — their compilation for it: ``aot``'s ``elementwise logits`` rows).

Tolerances: the per-rule rows of ``helpers.TOLERANCES`` (float32 math in kernel and reference;
the norms' sums over 16k elements stay within the float32 row's summation-order allowance).
"""

import contextlib

import pytest
import torch
from helpers import BF16, F32, KERNEL_BACKENDS, TRITON, assert_matches, randn  # tests/ops helper

from lrp_kernels.backends.torch import gated_mlp as gated_ref
from lrp_kernels.backends.torch import layer_norm as ln_ref
from lrp_kernels.backends.torch import linear as linear_ref
from lrp_kernels.backends.torch import rms_norm as rms_ref

HIDDEN = [5376, 8192, 16384]
GEMMA_VOCAB = 262144
DTYPES = [pytest.param(F32, id="fp32"), pytest.param(BF16, id="bf16")]


@contextlib.contextmanager
def _launch_names(target):
    """The names of the Triton kernels launched inside (an empty list for the other backends)."""
    names = []
    if target.name != "triton":
        yield names
        return
    with target.module("_launch").launch_hook(lambda launch: names.append(launch.kernel.name) and False):
        yield names


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_norms_at_decoder_widths(target, dtype, hidden):
    dev = target.device
    x = randn(2, hidden, dtype=dtype, device=dev, scale=3.0, shift=0.5)
    g = randn(2, hidden, dtype=dtype, device=dev, seed=1)
    w = randn(hidden, dtype=dtype, device=dev, seed=2, shift=1.0)
    b = randn(hidden, dtype=dtype, device=dev, seed=3)
    with _launch_names(target) as names:
        y, mean, rstd = target.backend.layer_norm.forward(x, w, b, 1e-5)
        gx = target.backend.layer_norm.backward(g, w, rstd)
        ry, rrstd = target.backend.rms_norm.forward(x, w, 1e-6)
        rgx = target.backend.rms_norm.backward(g, w, rrstd)
    if target.name == "triton":  # every one in the kernels, none handed to the reference
        assert names == ["_layer_norm_forward_kernel", "_norm_backward_kernel", "_rms_norm_forward_kernel",
                         "_norm_backward_kernel"]
    y_ref, mean_ref, rstd_ref = ln_ref.forward(x, w, b, 1e-5)
    assert_matches(y, y_ref, *target.tol("layer_norm", dtype))
    assert_matches(mean, mean_ref, *target.tol("statistics", dtype))
    assert_matches(rstd, rstd_ref, *target.tol("statistics", dtype))
    assert_matches(gx, ln_ref.backward(g, w, rstd), *target.tol("layer_norm", dtype))
    ry_ref, rrstd_ref = rms_ref.forward(x, w, 1e-6)
    assert_matches(ry, ry_ref, *target.tol("rounded_twice", dtype))
    assert_matches(rrstd, rrstd_ref, *target.tol("statistics", dtype))
    assert_matches(rgx, rms_ref.backward(g, w, rrstd), *target.tol("elementwise", dtype))


def test_triton_norm_rows_past_one_block_run_the_reference():
    """A row of ``MAX_ROW`` + 1 elements: no launch, the reference's result; ``MAX_ROW`` itself launches."""
    if TRITON.backend is None:
        pytest.skip(TRITON.reason)
    limit = TRITON.module("_norm").MAX_ROW
    for hidden, launches in ((limit + 1, 0), (limit, 2)):
        x = randn(1, hidden, device=TRITON.device, scale=2.0)
        names = []
        with TRITON.module("_launch").launch_hook(lambda launch: names.append(launch.kernel.name) and False):
            y, rstd = TRITON.backend.rms_norm.forward(x, None, 1e-6)
            out = TRITON.backend.layer_norm.forward(x, None, None, 1e-5)
        assert len(names) == launches
        if not launches:
            assert torch.equal(y, rms_ref.forward(x, None, 1e-6)[0])
            assert torch.equal(out[0], ln_ref.forward(x, None, None, 1e-5)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_elementwise_rules_over_a_gemma_vocabulary(target, dtype):
    dev = target.device
    z = randn(1, 2, GEMMA_VOCAB, dtype=dtype, device=dev, scale=4.0)
    g = randn(1, 2, GEMMA_VOCAB, dtype=dtype, device=dev, seed=1)
    got = target.backend.linear.eps_ratio(g, z, 1e-2)
    assert_matches(got, linear_ref.eps_ratio(g, z, 1e-2), *target.tol("eps_ratio", dtype))
    got = target.backend.linear.gelu_eps_ratio(g, z, 1e-2, "tanh")
    assert_matches(got, linear_ref.gelu_eps_ratio(g, z, 1e-2, "tanh"), *target.tol("elementwise", dtype))
    a, up = (randn(1, 28672, dtype=dtype, device=dev, seed=s, scale=2.0) for s in (2, 3))
    gu = randn(1, 28672, dtype=dtype, device=dev, seed=4)
    assert_matches(target.backend.gated_mlp.forward(a, up, "silu"), gated_ref.forward(a, up, "silu"),
                   *target.tol("rounded_twice", dtype))
    assert_matches(target.backend.gated_mlp.backward(gu, a, up, "silu", 1e-6),
                   gated_ref.backward(gu, a, up, "silu", 1e-6), *target.tol("rounded_twice", dtype))


def test_triton_elementwise_launch_past_two_to_the_31_elements():
    """[2, 4100, 262144] logits (2.1·10⁹ elements, meta tensors): one launch per element-wise rule,
    N above 2³¹ − 1 passed whole, the grid covering it on axis 0 (its limit is 2³¹ − 1 programs)."""
    if TRITON.backend is None:
        pytest.skip(TRITON.reason)
    launch_mod = TRITON.module("_launch")
    z = torch.empty(2, 4100, GEMMA_VOCAB, dtype=torch.bfloat16, device="meta")
    n = z.numel()
    assert n > 2**31 - 1  # past int32
    launches = []
    with launch_mod.pretend(90, 227 * 1024), launch_mod.launch_hook(lambda launch: launches.append(launch) or True):
        TRITON.backend.linear.eps_ratio(z, z, 1e-2)
        TRITON.backend.linear.gelu_eps_ratio(z, z, 1e-2, "none")
    assert [launch.args["N"] for launch in launches] == [n, n]
    for launch in launches:
        assert launch.grid[0] * launch.config.kwargs["BLOCK"] >= n and launch.grid[0] < 2**31
