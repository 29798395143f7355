"""Per-rule tests of the LRP ops: the forward is the ordinary op, the backward conserves relevance
as its rule says, and ε behaves as the one stabilizer convention z + ε·sign(z) (sign(0) = 1) says."""

import pytest
import torch
import torch.nn.functional as F

from lrp_kernels.ops import _torch_backend as tb
from lrp_kernels.ops.activation import lrp_activation
from lrp_kernels.ops.attention import additive_mask, lrp_attention
from lrp_kernels.ops.layer_norm import lrp_layer_norm
from lrp_kernels.ops.linear import lrp_linear

SHAPES = [(1, 1, 7), (2, 5, 33), (3, 17, 64)]


def relevance_in_out(fn, x, *args):
    """(x ⊙ g_x, y ⊙ g_y) for a random upstream g_y: the relevance in and out of one op."""
    x = x.clone().requires_grad_(True)
    y = fn(x, *args)
    g_y = torch.randn_like(y)
    (g_x,) = torch.autograd.grad(y, x, g_y)
    return x.detach() * g_x, y.detach() * g_y


def test_stabilizer_sign_of_zero_is_positive():
    z = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    assert torch.equal(tb.stabilize(z, 0.5), torch.tensor([-2.5, 0.5, 3.5], dtype=torch.float64))


@pytest.mark.parametrize("shape", SHAPES)
def test_linear_forward_is_f_linear_bit_for_bit(shape):
    x = torch.randn(shape)
    w, b = torch.randn(11, shape[-1]), torch.randn(11)
    assert torch.equal(lrp_linear(x, w, b, eps=0.1), F.linear(x, w, b))
    h = lrp_linear(x, w, b, eps=0.1, activation="gelu")
    assert torch.equal(h, F.gelu(F.linear(x, w, b)))


@pytest.mark.parametrize("shape", SHAPES)
def test_linear_eps_zero_without_bias_conserves(shape):
    x = torch.randn(shape, dtype=torch.float64)
    w = torch.randn(13, shape[-1], dtype=torch.float64)
    r_x, r_z = relevance_in_out(lambda t: lrp_linear(t, w, None, eps=0.0), x)
    torch.testing.assert_close(r_x.sum(), r_z.sum(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
def test_linear_eps_rule_matches_explicit_formula(shape):
    """R_x = x ⊙ Wᵀ(R_z / (z + ε sign z)) with bias and ε > 0: the bias and ε take their share."""
    eps = 0.3
    x = torch.randn(shape, dtype=torch.float64)
    w, b = torch.randn(9, shape[-1], dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    x_leaf = x.clone().requires_grad_(True)
    z = lrp_linear(x_leaf, w, b, eps=eps)
    g_z = torch.randn_like(z)
    (g_x,) = torch.autograd.grad(z, x_leaf, g_z)
    r_z = z.detach() * g_z
    expected = torch.einsum("...i,ji,...j->...i", x, w, r_z / tb.stabilize(z.detach(), eps))
    torch.testing.assert_close(x * g_x, expected, rtol=1e-10, atol=1e-12)
    bias_share = (b * r_z / tb.stabilize(z.detach(), eps)).sum()
    eps_share = (eps * torch.where(z >= 0, 1.0, -1.0).double() * r_z / tb.stabilize(z.detach(), eps)).sum()
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
    x = torch.randn(3, 8, 20, dtype=torch.float64)
    w, b = torch.randn(30, 20, dtype=torch.float64), torch.randn(30, dtype=torch.float64)
    g = torch.randn(3, 8, 30, dtype=torch.float64)
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


@pytest.mark.parametrize("fn", ["gelu", "gelu_tanh", "tanh"])
def test_activation_identity_rule_passes_relevance_unchanged(fn):
    x = torch.randn(4, 9, 31, dtype=torch.float64)
    x[0, 0, :3] = torch.tensor([0.0, 1e-9, -1e-9], dtype=torch.float64)  # the guarded region
    r_x, r_y = relevance_in_out(lambda t: lrp_activation(t, fn), x)
    torch.testing.assert_close(r_x, r_y, rtol=1e-6, atol=1e-12)
    assert torch.isfinite(r_x).all()


def test_activation_forward_is_the_ordinary_op():
    x = torch.randn(5, 7)
    assert torch.equal(lrp_activation(x, "gelu"), F.gelu(x))
    assert torch.equal(lrp_activation(x, "gelu_tanh"), F.gelu(x, approximate="tanh"))
    assert torch.equal(lrp_activation(x, "tanh"), torch.tanh(x))


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_forward_bit_for_bit_and_identity_rule_conserves(shape):
    hidden = shape[-1]
    x = torch.randn(shape, dtype=torch.float64) * 3 + 1
    w = torch.randn(hidden, dtype=torch.float64)
    assert torch.equal(lrp_layer_norm(x, w, None, 1e-5), F.layer_norm(x, (hidden,), w, None, 1e-5))
    r_x, r_y = relevance_in_out(lambda t: lrp_layer_norm(t, w, None, 1e-5), x)
    torch.testing.assert_close(r_x.sum(-1), r_y.sum(-1), rtol=1e-9, atol=1e-9)


def test_layer_norm_backward_treats_sigma_as_constant():
    x = torch.randn(3, 16, dtype=torch.float64)
    w, b = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    g = torch.randn(3, 16, dtype=torch.float64)
    x1 = x.clone().requires_grad_(True)
    (ours,) = torch.autograd.grad(lrp_layer_norm(x1, w, b, 1e-6), x1, g)
    x2 = x.clone().requires_grad_(True)
    sigma = torch.sqrt(x2.var(-1, unbiased=False, keepdim=True) + 1e-6).detach()
    (expected,) = torch.autograd.grad((x2 - x2.mean(-1, keepdim=True)) / sigma * w + b, x2, g)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


def _attention_inputs(batch=2, heads=3, length=11, dim=8, dtype=torch.float64):
    q, k, v = (torch.randn(batch, heads, length, dim, dtype=dtype) for _ in range(3))
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 6:] = 0
    return q, k, v, additive_mask(mask)


def test_attention_forward_matches_sdpa():
    q, k, v, mask = _attention_inputs(dtype=torch.float32)
    out = lrp_attention(q, k, v, mask, mode="attnlrp")
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def _attention_relevance(mode):
    q, k, v, mask = _attention_inputs()
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = lrp_attention(*leaves, mask, mode=mode)
    g_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, g_out, allow_unused=True)
    return (q, k, v), grads, out.detach() * g_out


def test_attention_cp_lrp_conserves_through_values_only():
    (q, k, v), (gq, gk, gv), r_out = _attention_relevance("cp_lrp")
    assert gq is None and gk is None
    torch.testing.assert_close((v * gv).sum(), r_out.sum(), rtol=1e-10, atol=1e-10)


def test_attention_attnlrp_splits_the_bilinear_products_uniformly():
    (q, k, v), (gq, gk, gv), r_out = _attention_relevance("attnlrp")
    # P·V: V receives half of the output relevance.
    torch.testing.assert_close((v * gv).sum(), 0.5 * r_out.sum(), rtol=1e-10, atol=1e-10)
    # Q·Kᵀ: Q and K receive equal halves of the score relevance.
    torch.testing.assert_close((q * gq).sum(), (k * gk).sum(), rtol=1e-10, atol=1e-10)
    (_, _, _), plain, _ = _attention_relevance("grad")
    assert not torch.allclose(gq, plain[0])


def test_attention_attnlrp_is_quarter_and_half_of_plain_gradient():
    q, k, v, mask = _attention_inputs()
    g_out = torch.randn(q.shape, dtype=q.dtype)
    grads = {}
    for mode in ("attnlrp", "grad"):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        grads[mode] = torch.autograd.grad(lrp_attention(*leaves, mask, mode=mode), leaves, g_out)
    # With the same P and V, g_V is exactly half; g_Q, g_K are a quarter of a softmax gradient whose
    # upstream g_P is itself halved, i.e. ¼ of the plain ones.
    torch.testing.assert_close(grads["attnlrp"][2], 0.5 * grads["grad"][2])
    torch.testing.assert_close(grads["attnlrp"][0], 0.25 * grads["grad"][0])
    torch.testing.assert_close(grads["attnlrp"][1], 0.25 * grads["grad"][1])


def test_attention_padded_keys_get_no_gradient():
    (q, k, v), (gq, gk, gv), _ = _attention_relevance("attnlrp")
    assert torch.equal(gk[1, :, 6:], torch.zeros_like(gk[1, :, 6:]))
    assert torch.equal(gv[1, :, 6:], torch.zeros_like(gv[1, :, 6:]))


@pytest.mark.parametrize("mode", ["grad", "attnlrp", "cp_lrp"])
def test_attention_with_a_fully_padded_sequence_matches_autograd(mode):
    """A batch item whose keys are all masked gets the uniform softmax, forward and backward."""
    q, k, v, _ = _attention_inputs(dtype=torch.float32)
    mask = torch.ones(q.shape[0], q.shape[2], dtype=torch.long)
    mask[1] = 0
    mask = additive_mask(mask)
    g_out = torch.randn(q.shape)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ours = torch.autograd.grad(lrp_attention(*leaves, mask, mode=mode), leaves, g_out, allow_unused=True)
    ref = [t.double().requires_grad_(True) for t in (q, k, v)]
    probs = torch.softmax(ref[0] @ ref[1].transpose(-1, -2) * q.shape[-1] ** -0.5 + mask.double()[:, None, None, :], -1)
    if mode == "cp_lrp":
        probs = probs.detach()
    expected = torch.autograd.grad(probs @ ref[2], ref, g_out.double(), allow_unused=True)
    factors = {"grad": (1, 1, 1), "attnlrp": (0.25, 0.25, 0.5), "cp_lrp": (None, None, 1)}[mode]
    for got, exp, f in zip(ours, expected, factors):
        if f is None:
            assert got is None
        else:
            torch.testing.assert_close(got.double(), f * exp, rtol=1e-4, atol=1e-5)


def test_unknown_modes_and_activations_are_rejected():
    q, k, v, mask = _attention_inputs()
    with pytest.raises(ValueError, match="valid"):
        lrp_attention(q, k, v, mask, mode="magic")
    with pytest.raises(ValueError, match="valid"):
        lrp_activation(q, "swish")
