"""The Triton backend as a whole: availability, dispatch, the lead's autograd ops running on the
Triton host functions, and end-to-end attributions equal to the torch backend's (tiny random model,
through Triton's interpreter on the CPU when there is no GPU)."""

import pytest
import torch

from triton_loader import import_triton_backend  # tests/ helper

tk = import_triton_backend()
DEVICE = "cpu" if tk.INTERPRETED else "cuda"

from lrp_kernels import attribute, backend  # noqa: E402
from lrp_kernels.models import BertClassifier  # noqa: E402
from lrp_kernels.models.config import ModelConfig  # noqa: E402
from lrp_kernels.ops import _torch_backend as ref  # noqa: E402
from lrp_kernels.ops.attention import additive_mask, lrp_attention  # noqa: E402
from lrp_kernels.ops.layer_norm import lrp_layer_norm  # noqa: E402
from lrp_kernels.ops.linear import lrp_linear  # noqa: E402

CONTRACT = (
    "layer_norm_forward", "layer_norm_backward", "eps_ratio", "gelu_forward", "gelu_backward",
    "gelu_eps_ratio", "attention_forward", "attention_backward",
)


def test_available_and_dispatched():
    assert tk.available() is None
    assert DEVICE in tk.devices
    name, module = backend.resolve("triton", DEVICE)
    assert name == "triton" and module is tk
    for fn in CONTRACT + ("linear_backward",):
        assert backend.host_function(tk, fn) is getattr(tk, fn)
    # the fused attention never forms probabilities: the softmax host functions stay the reference's
    assert backend.host_function(tk, "softmax_forward") is ref.softmax_forward


def _grads(fn, inputs, upstream):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out, leaves, upstream, allow_unused=True)


@pytest.mark.parametrize("mode", ["attnlrp", "cp_lrp", "grad"])
def test_attention_op_on_triton_equals_torch(mode):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 21, 32, generator=gen).to(DEVICE) for _ in range(3))
    mask = additive_mask(torch.tensor([[1] * 21, [1] * 15 + [0] * 6], device=DEVICE))
    g = torch.randn(2, 2, 21, 32, generator=gen).to(DEVICE)
    out_t, grads_t = _grads(lambda *a: lrp_attention(*a, mask=mask, mode=mode, impl=tk), (q, k, v), g)
    out_r, grads_r = _grads(lambda *a: lrp_attention(*a, mask=mask, mode=mode, impl=ref), (q, k, v), g)
    torch.testing.assert_close(out_t, out_r, atol=2e-5, rtol=2e-5)  # float32: summation order only
    for a, b in zip(grads_t, grads_r):
        if b is None or mode == "cp_lrp" and not b.abs().sum():
            assert a is None or not a.abs().sum()
        else:
            torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh"])
def test_linear_and_layer_norm_ops_on_triton_equal_torch(activation):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, 24, generator=gen).to(DEVICE)
    w, b = torch.randn(40, 24, generator=gen).to(DEVICE), torch.randn(40, generator=gen).to(DEVICE)
    gamma, beta = torch.randn(40, generator=gen).to(DEVICE), torch.randn(40, generator=gen).to(DEVICE)
    g = torch.randn(3, 7, 40, generator=gen).to(DEVICE)

    def block(impl):
        def run(t):
            h = lrp_linear(t, w, b, eps=0.1, activation=activation, impl=impl)
            return lrp_layer_norm(h, gamma, beta, 1e-5, impl=impl)

        return run

    out_t, (gx_t,) = _grads(block(tk), (x,), g)
    out_r, (gx_r,) = _grads(block(ref), (x,), g)
    torch.testing.assert_close(out_t, out_r, atol=1e-5, rtol=1e-5)  # float32, summation order
    torch.testing.assert_close(gx_t, gx_r, atol=1e-4, rtol=1e-5)  # float32 GEMM of 40 terms


@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp", "lrp_epsilon"])
def test_attribute_on_triton_equals_torch(method):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=96, max_position_embeddings=32)
    model = BertClassifier(config).eval().to(DEVICE)
    ids = torch.randint(1, 50, (2, 11), device=DEVICE)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # ragged batch
    got = attribute(model, ids, mask, method=method, backend="triton")
    want = attribute(model, ids, mask, method=method, backend="torch")
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-5)
    # float32 through one layer: kernel vs reference summation orders; relevance is measured in
    # units of the explained logit (for lrp_epsilon on a random model it is almost all absorbed)
    scale = want.logits.abs().max().item()
    torch.testing.assert_close(got.scores, want.scores, atol=1e-5 * scale, rtol=1e-4)
    assert torch.count_nonzero(got.scores[1, 7:]) == 0
