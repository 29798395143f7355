"""Soft-capped attention scores (Gemma 2's ``attn_logit_softcapping``): S' = c·tanh(S/c) before the
mask and the softmax (``lrp_kernels/ops/attention.py``).

The torch reference against explicit float64 formulations on the same rounded inputs: the forward
and the ``grad`` backward against plain autograd of the capped attention; ``attnlrp`` and ``cp_lrp``
against the relevance passed down op by op (``tests/explicit_lrp.py``'s rules: P·V and Q·Kᵀ uniform,
softmax Taylor, and the identity rule R_S = R_S' of the cap), compared as x ⊙ g per element. Every
backend runs it on the reference.
"""

import pytest
import torch

from explicit_lrp import lrp_attention_value_product, lrp_query_key_product, lrp_softmax_taylor
from lrp_kernels.backends import registry
from lrp_kernels.backends.torch import attention as ref
from lrp_kernels.ops.attention import additive_mask, lrp_attention

F64 = torch.float64
CAP = 1.5  # small enough that the cap bends the scores of these O(1)-variance inputs (|S| reaches ~3)
# (atol, rtol) on the same rounded inputs: float32 math in the reference, float64 here (a few ulp
# per product, ≤ 12 keys); bfloat16 rounds P and the outputs (2^-8 relative per rounding)
TOL = {torch.float32: (2e-6, 1e-5), torch.float64: (1e-12, 1e-10), torch.bfloat16: (2e-2, 2e-2)}
# (B, H, H_kv, L, D, lengths, window, causal)
CASES = [
    (2, 4, 2, 9, 8, (9, 5), None, True),  # causal, grouped heads, right padding
    (2, 2, 2, 8, 6, (8, 8), 3, True),  # a causal window
    (2, 3, 1, 7, 4, (7, 4), None, False),  # bidirectional, padding
]


def _inputs(case, dtype, seed=0):
    batch, heads, kv, length, dim, lengths, window, causal = case
    g = torch.Generator().manual_seed(seed)
    q = (2.0 * torch.randn(batch, heads, length, dim, generator=g, dtype=F64)).to(dtype)
    k = (2.0 * torch.randn(batch, kv, length, dim, generator=g, dtype=F64)).to(dtype)
    v = torch.randn(batch, kv, length, dim, generator=g, dtype=F64).to(dtype)
    valid = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    grad = torch.randn(batch, heads, length, dim, generator=g, dtype=F64) * valid[:, None, :, None]
    return q, k, v, grad.to(dtype), additive_mask(valid), valid


def _keep(case, valid):
    """[B, 1, L, L] bool: the keys each (real) query reads."""
    _, _, _, length, _, _, window, causal = case
    pos = torch.arange(length)
    keep = valid[:, None, None, :].clone()
    if window is not None:
        keep = keep & ((pos[:, None] - pos[None, :]).abs() <= window)
    if causal:
        keep = keep & (pos[:, None] >= pos[None, :])
    return keep


def _explicit(q, k, v, keep, scale):
    """Float64 capped attention with a head map; returns (S, S', P, O, K and V per query head)."""
    heads = q.shape[1]
    head_of = torch.arange(heads) // (heads // k.shape[1])
    kk, vv = k[:, head_of], v[:, head_of]
    s = scale * torch.einsum("bhid,bhjd->bhij", q, kk)
    capped = CAP * torch.tanh(s / CAP)
    probs = torch.softmax(capped.masked_fill(~keep, -torch.inf), dim=-1)
    return s, capped, probs, probs @ vv, kk, vv


def _per_kv_head(r, kv_heads):
    b, h, l, d = r.shape
    return r.view(b, kv_heads, h // kv_heads, l, d).sum(dim=2)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"H{c[1]}kv{c[2]}w{c[6]}{'causal' if c[7] else ''}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["fp32", "fp64", "bf16"])
def test_grad_mode_is_the_plain_gradient_of_capped_attention(case, dtype):
    q, k, v, g, mask, valid = _inputs(case, dtype)
    scale = q.shape[-1] ** -0.5
    out, saved = ref.forward(q, k, v, mask, scale, "grad", case[6], None, case[7], CAP)
    grads = ref.backward(g, q, k, v, mask, scale, "grad", saved, case[6], None, 0.0, case[7], CAP)
    x64 = [t.double().requires_grad_(True) for t in (q, k, v)]
    expected = _explicit(*x64, _keep(case, valid), scale)[3]
    plain = torch.autograd.grad(expected, x64, g.double())
    atol, rtol = TOL[dtype]
    rows = valid[:, None, :, None]
    torch.testing.assert_close(out.double() * rows, expected.detach() * rows, atol=atol, rtol=rtol)
    for got, want in zip(grads, plain):
        torch.testing.assert_close(got.double(), want, atol=atol, rtol=rtol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"H{c[1]}kv{c[2]}w{c[6]}{'causal' if c[7] else ''}")
@pytest.mark.parametrize("mode", ["attnlrp", "cp_lrp"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_lrp_modes_equal_the_relevance_passed_down_op_by_op(case, mode, dtype):
    """x ⊙ g of the op == the explicit relevance of q, k, v: R_O = O ⊙ g_O seeded, then P·V (uniform /
    P constant), the softmax's Taylor rule, the cap's identity rule R_S = R_S', Q·Kᵀ uniform."""
    q, k, v, g, mask, valid = _inputs(case, dtype)
    scale = q.shape[-1] ** -0.5
    out, saved = ref.forward(q, k, v, mask, scale, mode, case[6], None, case[7], CAP)
    gq, gk, gv = ref.backward(g, q, k, v, mask, scale, mode, saved, case[6], None, 0.0, case[7], CAP)
    keep = _keep(case, valid)
    q64, k64, v64 = (t.double() for t in (q, k, v))
    s, capped, probs, o, kk, vv = _explicit(q64, k64, v64, keep, scale)
    r_p, r_v = lrp_attention_value_product(probs, vv, o, o * g.double(), mode)
    kv_heads = k.shape[1]
    atol, rtol = TOL[dtype]
    scale_r = o.abs().max() * g.double().abs().max()  # relevance is O(|O|·|g|) per element
    torch.testing.assert_close(v64 * gv.double(), _per_kv_head(r_v, kv_heads), atol=atol * scale_r, rtol=rtol)
    if mode == "cp_lrp":
        assert gq is None and gk is None
        return
    r_capped = lrp_softmax_taylor(capped, probs, r_p, keep)
    r_s = r_capped  # the identity rule of the element-wise cap
    r_q, r_k = lrp_query_key_product(q64, kk, s, r_s, scale, keep)
    torch.testing.assert_close(q64 * gq.double(), r_q, atol=atol * scale_r, rtol=rtol)
    torch.testing.assert_close(k64 * gk.double(), _per_kv_head(r_k, kv_heads), atol=atol * scale_r, rtol=rtol)


def test_the_cap_changes_the_lrp_rule_not_only_the_forward():
    """Without a cap (c → ∞) the op is plain attention; with one the q gradient of attnlrp is not the
    plain gradient's quarter (the identity rule S'/S differs from the derivative 1 − tanh²)."""
    case = CASES[0]
    q, k, v, g, mask, valid = _inputs(case, torch.float64)
    outs = {c: lrp_attention(q, k, v, mask, None, "attnlrp", causal=True, softcap=c) for c in (CAP, 1e9)}
    plain = lrp_attention(q, k, v, mask, None, "attnlrp", causal=True)
    rows = valid[:, None, :, None]
    torch.testing.assert_close(outs[1e9] * rows, plain * rows, atol=1e-9, rtol=0)
    assert ((outs[CAP] - plain) * rows).abs().max() > 1e-2
    x = [t.clone().requires_grad_(True) for t in (q, k, v)]
    (g_lrp,) = torch.autograd.grad(lrp_attention(*x, mask, None, "attnlrp", causal=True, softcap=CAP), x[0], g)
    (g_grad,) = torch.autograd.grad(lrp_attention(*x, mask, None, "grad", causal=True, softcap=CAP), x[0], g)
    assert (g_lrp - 0.25 * g_grad).abs().max() > 1e-3 * g_grad.abs().max()


@pytest.mark.parametrize("name", ["cpp", "torch"])
def test_every_backend_runs_capped_attention_on_the_reference(name):
    backend, reason = registry.load(name)
    if backend is None or backend.unavailable_reason("cpu") is not None:
        pytest.skip(reason or backend.unavailable_reason("cpu"))
    q, k, v, g, mask, _ = _inputs(CASES[1], torch.float32)
    got = [t.clone().requires_grad_(True) for t in (q, k, v)]
    want = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = lrp_attention(*got, mask, None, "attnlrp", backend, window=3, causal=True, softcap=CAP)
    expected = lrp_attention(*want, mask, None, "attnlrp", None, window=3, causal=True, softcap=CAP)
    assert torch.equal(out, expected)
    for a, b in zip(torch.autograd.grad(out, got, g), torch.autograd.grad(expected, want, g)):
        assert torch.equal(a, b)


def test_bad_softcap_is_refused():
    q, k, v, _, mask, _ = _inputs(CASES[0], torch.float32)
    with pytest.raises(ValueError, match="softcap"):
        lrp_attention(q, k, v, mask, softcap=0.0)
