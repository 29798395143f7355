"""Scaled dot-product attention with the grad / attnlrp / cp_lrp backward rules (``lrp_kernels/ops/attention.py``).

(a) the torch reference against float64 autograd of softmax(Q Kᵀ·scale + mask)·V with each mode's
factors; (b) the op ``lrp_attention``; (c) every backend that runs here
(``helpers.KERNEL_BACKENDS``) against the torch reference — its whole forward/backward — and the
compiled masked-softmax kernels the ``cpp``/``cuda`` attention runs on.
"""

import pytest
import torch
import torch.nn.functional as F

from helpers import (  # tests/ops helper
    ATTENTION_CASES, BF16, COMPILED, CPP, DTYPES, F32, F64, KERNEL_BACKENDS, KEYS, PAD, STRIDED,
    assert_grads_match, assert_matches, attention_case_id, attention_inputs, cpu_isa, cpu_isa_params, grads,
    noncontiguous, padding_mask, randn,
)

from lrp_kernels.backends.contract import ATTENTION_MODES
from lrp_kernels.backends.torch import attention as ref
from lrp_kernels.backends.torch import linear as TORCH_LINEAR
from lrp_kernels.errors import BackendError
from lrp_kernels.ops.attention import additive_mask, lrp_attention

#: the factors of (g_Q, g_K, g_V) against the plain gradient; None: no gradient
FACTORS = {"grad": (1.0, 1.0, 1.0), "attnlrp": (0.25, 0.25, 0.5), "cp_lrp": (None, None, 1.0)}


def float64_autograd(q, k, v, mask, scale, mode, g_out):
    """The rule of ``mode`` from float64 autograd of softmax(Q Kᵀ·scale + mask)·V (P constant for cp_lrp)."""
    leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    scores = leaves[0] @ leaves[1].transpose(-1, -2) * scale
    if mask is not None:
        scores = scores + mask.double()[:, None, None, :]
    probs = torch.softmax(scores, -1)
    if mode == "cp_lrp":
        probs = probs.detach()
    out = probs @ leaves[2]
    plain = torch.autograd.grad(out, leaves, g_out.double(), allow_unused=True)
    return out.detach(), tuple(None if f is None else f * p for f, p in zip(FACTORS[mode], plain))


# ------------------------------------------------------------------- (a) reference vs float64
@pytest.mark.parametrize("case", ATTENTION_CASES, ids=attention_case_id)
@pytest.mark.parametrize("mode", ATTENTION_MODES)
@pytest.mark.parametrize("dtype", [F64, F32], ids=["fp64", "fp32"])
def test_reference_matches_float64_autograd(case, mode, dtype):
    """Both of the reference's paths: aten's fused kernel on the CPU, and the eager one it takes
    for a batch with a fully padded sequence."""
    q, k, v, g, mask, scale = attention_inputs(case, dtype)
    out, saved = ref.forward(q, k, v, mask, scale, mode)
    got = ref.backward(g, q, k, v, mask, scale, mode, saved)
    out64, expected = float64_autograd(q, k, v, mask, scale, mode, g)
    atol, rtol = (1e-12, 1e-10) if dtype == F64 else (2e-6, 1e-5)  # float32 vs float64
    torch.testing.assert_close(out.double(), out64, atol=atol, rtol=rtol)
    for a, e in zip(got, expected):
        if e is None:
            assert a is None
        else:
            assert a.dtype == dtype
            torch.testing.assert_close(a.double(), e, atol=atol, rtol=rtol)


@pytest.mark.parametrize("mode", ATTENTION_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_fully_padded_sequence_attends_uniformly(dtype, mode):
    """softmax over keys that are all padding is uniform (the additive mask's finfo(float32).min
    absorbs the scores), in every dtype and mode: the output is the mean of V."""
    q, k, v, _, mask, scale = attention_inputs((2, 1, 45, 64, (45, 0), "bhld"), dtype, seed=3)
    out, _ = ref.forward(q, k, v, mask, scale, mode)
    mean_v = v[1, 0].double().mean(dim=0).expand(45, 64)
    atol = {F32: 1e-6, torch.float16: 2e-3, BF16: 1.6e-2}[dtype]  # one rounding of the output
    torch.testing.assert_close(out[1, 0].double(), mean_v, rtol=0, atol=atol)


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=attention_case_id)
@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_reference_sdpa_path_matches_float64_autograd(monkeypatch, case, mode):
    """The CUDA path of the reference — F.scaled_dot_product_attention and its autograd backward,
    scaled ¼/¼/½ for attnlrp, g_V only for cp_lrp; the eager path for a fully padded sequence — run
    here on the CPU by declaring the CPU an SDPA device."""
    monkeypatch.setattr(ref, "SDPA_DEVICES", ("cpu", "cuda"))
    q, k, v, g, mask, scale = attention_inputs(case, F32)
    out, saved = ref.forward(q, k, v, mask, scale, mode)
    assert len(saved) == (1 if ref.fully_padded(mask) else 4)  # stored P, or SDPA's graph and leaves
    got = ref.backward(g, q, k, v, mask, scale, mode, saved)
    out64, expected = float64_autograd(q, k, v, mask, scale, mode, g)
    torch.testing.assert_close(out.double(), out64, atol=2e-6, rtol=1e-5)
    # and through the op, whose ctx saves the nested graph
    _, through_op = grads(lambda *a: lrp_attention(*a, mask=mask, scale=scale, mode=mode), (q, k, v), g)
    for a, b, e in zip(got, through_op, expected):
        assert (a is None) == (e is None)
        if e is not None:
            torch.testing.assert_close(a.double(), e, atol=2e-6, rtol=1e-5)  # float32 vs float64
            assert torch.equal(a, b)
        else:
            assert b is None or torch.count_nonzero(b) == 0


def test_fully_padded_is_read_once_per_mask():
    mask = torch.tensor([[0.0, PAD], [PAD, PAD]])
    assert ref.fully_padded(mask) and not ref.fully_padded(None)
    mask[1, 0] = 0.0  # modified in place: read again
    assert not ref.fully_padded(mask)


def test_reference_fuses_unless_a_sequence_is_fully_padded():
    q = torch.zeros(2, 1, 3, 4)
    ragged = torch.tensor([[0.0, 0.0, 0.0], [0.0, PAD, PAD]])
    fully = torch.tensor([[0.0, 0.0, 0.0], [PAD, PAD, PAD]])
    assert ref.uses_fused_kernel(q, "attnlrp", None) and ref.uses_fused_kernel(q, "grad", ragged)
    assert not ref.uses_fused_kernel(q, "attnlrp", fully) and not ref.uses_fused_kernel(q, "grad", fully)
    # cp_lrp too: aten's float16 forward does not give a fully padded row the uniform softmax
    # (test_reference_fully_padded_sequence_attends_uniformly[fp16-cp_lrp] failed with it)
    assert ref.uses_fused_kernel(q, "cp_lrp", ragged) and not ref.uses_fused_kernel(q, "cp_lrp", fully)


@pytest.mark.parametrize("masked", [True, False], ids=["mask", "no_mask"])
def test_reference_softmax_is_float64_softmax(masked):
    scores = randn(3, 2, 5, 9, scale=4.0)
    mask = padding_mask(3, 9) if masked else None
    probs = ref.softmax_forward(scores, mask, 0.125)
    s = scores.double() * 0.125 + (mask.double()[:, None, None, :] if masked else 0)
    torch.testing.assert_close(probs.double(), torch.softmax(s, -1), atol=1e-7, rtol=1e-6)
    grad_p = randn(3, 2, 5, 9, seed=1)
    p = probs.double()
    expected = 0.3 * p * (grad_p.double() - (p * grad_p.double()).sum(-1, keepdim=True))
    torch.testing.assert_close(ref.softmax_backward(grad_p, probs, 0.3).double(), expected, atol=1e-7, rtol=1e-6)


# ------------------------------------------------------------------------------------ (b) op
def _op_inputs(batch=2, heads=3, length=11, dim=8, dtype=F64):
    q, k, v = (torch.randn(batch, heads, length, dim, dtype=dtype) for _ in range(3))
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 6:] = 0
    return q, k, v, additive_mask(mask)


def test_attention_forward_matches_sdpa():
    q, k, v, mask = _op_inputs(dtype=F32)
    out = lrp_attention(q, k, v, mask, mode="attnlrp")
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def _op_relevance(mode):
    q, k, v, mask = _op_inputs()
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = lrp_attention(*leaves, mask, mode=mode)
    g_out = torch.randn_like(out)
    grads_ = torch.autograd.grad(out, leaves, g_out, allow_unused=True)
    return (q, k, v), grads_, out.detach() * g_out


def test_attention_cp_lrp_conserves_through_values_only():
    (q, k, v), (gq, gk, gv), r_out = _op_relevance("cp_lrp")
    assert gq is None and gk is None
    torch.testing.assert_close((v * gv).sum(), r_out.sum(), rtol=1e-10, atol=1e-10)


def test_attention_attnlrp_splits_the_bilinear_products_uniformly():
    (q, k, v), (gq, gk, gv), r_out = _op_relevance("attnlrp")
    # P·V: V receives half of the output relevance.
    torch.testing.assert_close((v * gv).sum(), 0.5 * r_out.sum(), rtol=1e-10, atol=1e-10)
    # Q·Kᵀ: Q and K receive equal halves of the score relevance.
    torch.testing.assert_close((q * gq).sum(), (k * gk).sum(), rtol=1e-10, atol=1e-10)
    (_, _, _), plain, _ = _op_relevance("grad")
    assert not torch.allclose(gq, plain[0])


def test_attention_attnlrp_is_quarter_and_half_of_plain_gradient():
    q, k, v, mask = _op_inputs()
    g_out = torch.randn(q.shape, dtype=q.dtype)
    by_mode = {}
    for mode in ("attnlrp", "grad"):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        by_mode[mode] = torch.autograd.grad(lrp_attention(*leaves, mask, mode=mode), leaves, g_out)
    # With the same P and V, g_V is exactly half; g_Q, g_K are a quarter of a softmax gradient whose
    # upstream g_P is itself halved, i.e. ¼ of the plain ones.
    torch.testing.assert_close(by_mode["attnlrp"][2], 0.5 * by_mode["grad"][2])
    torch.testing.assert_close(by_mode["attnlrp"][0], 0.25 * by_mode["grad"][0])
    torch.testing.assert_close(by_mode["attnlrp"][1], 0.25 * by_mode["grad"][1])


def test_attention_padded_keys_get_no_gradient():
    (q, k, v), (gq, gk, gv), _ = _op_relevance("attnlrp")
    assert torch.equal(gk[1, :, 6:], torch.zeros_like(gk[1, :, 6:]))
    assert torch.equal(gv[1, :, 6:], torch.zeros_like(gv[1, :, 6:]))


@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_attention_with_a_fully_padded_sequence_matches_autograd(mode):
    """A batch item whose keys are all masked gets the uniform softmax, forward and backward."""
    q, k, v, _ = _op_inputs(dtype=F32)
    mask = torch.ones(q.shape[0], q.shape[2], dtype=torch.long)
    mask[1] = 0
    mask = additive_mask(mask)
    g_out = torch.randn(q.shape)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ours = torch.autograd.grad(lrp_attention(*leaves, mask, mode=mode), leaves, g_out, allow_unused=True)
    _, expected = float64_autograd(q, k, v, mask, q.shape[-1] ** -0.5, mode, g_out)
    for got, exp in zip(ours, expected):
        if exp is None:
            assert got is None
        else:
            torch.testing.assert_close(got.double(), exp, rtol=1e-4, atol=1e-5)


def test_unknown_modes_are_rejected():
    q, k, v, mask = _op_inputs()
    with pytest.raises(ValueError, match="valid"):
        lrp_attention(q, k, v, mask, mode="magic")


def test_additive_mask():
    mask = additive_mask(torch.tensor([[1, 1, 0]]))
    assert mask.dtype == F32 and mask.tolist() == [[0.0, 0.0, PAD]]
    assert additive_mask(None) is None


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_op_on_every_backend_equals_the_reference(target, mode):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 21, 32, generator=gen).to(target.device) for _ in range(3))
    mask = additive_mask(torch.tensor([[1] * 21, [1] * 15 + [0] * 6], device=target.device))
    g = torch.randn(2, 2, 21, 32, generator=gen).to(target.device)
    out, got = grads(lambda *a: lrp_attention(*a, mask=mask, mode=mode, backend=target.backend), (q, k, v), g)
    out_ref, expected = grads(lambda *a: lrp_attention(*a, mask=mask, mode=mode), (q, k, v), g)
    atol, rtol = target.tol("attention", F32)
    assert_matches(out, out_ref, atol, rtol)
    assert_grads_match(got, expected, atol, rtol)


# ------------------------------------------------------------ (c) backends: the whole attention
def reference(g, q, k, v, mask, scale, mode):
    """(out, (g_Q, g_K, g_V)) of the torch reference (for a batch with a fully padded sequence: its
    eager formulas, softmax kernel and stored P, in every mode)."""
    out, saved = ref.forward(q, k, v, mask, scale, mode)
    return out, ref.backward(g, q, k, v, mask, scale, mode, saved)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("case", ATTENTION_CASES, ids=attention_case_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_forward_and_backward_match_the_reference(target, case, dtype, mode):
    q, k, v, g, mask, scale = attention_inputs(case, dtype, target.device)
    atol, rtol = target.tol("attention", dtype)
    kernels = target.backend.attention
    out_ref, expected = reference(g, q, k, v, mask, scale, mode)
    out, saved = kernels.forward(q, k, v, mask, scale, mode)
    assert_matches(out, out_ref, atol, rtol)
    if target.family == "triton":
        # FlashAttention style: never the probabilities; cp_lrp saves only the row statistics
        assert all(t.numel() <= q.numel() or t is out for t in saved)
        assert len(saved) == (2 if mode == "cp_lrp" else 3)
    got = kernels.backward(g, q, k, v, mask, scale, mode, saved)
    assert all(a is None or a.dtype == dtype and a.shape == q.shape for a in got)
    assert_grads_match(got, expected, atol, rtol)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_input_eps_is_the_projections_eps_ratio_on_each_gradient(target, dtype, mode):
    """``input_eps``: each gradient times x/(x + ε·sign x) of its input, like the projection's own
    ε-rule on it (the reference applies it after the gradient's rounding, the kernels before)."""
    q, k, v, g, mask, scale = attention_inputs(ATTENTION_CASES[1], dtype, target.device)
    kernels = target.backend.attention
    saved = kernels.forward(q, k, v, mask, scale, mode)[1]
    got = kernels.backward(g, q, k, v, mask, scale, mode, saved, input_eps=0.3)
    _, ref_saved = ref.forward(q, k, v, mask, scale, mode)
    plain = ref.backward(g, q, k, v, mask, scale, mode, ref_saved)
    expected = tuple(None if p is None else TORCH_LINEAR.eps_ratio(p, x, 0.3) for p, x in zip(plain, (q, k, v)))
    atol, rtol = target.tol("attention", dtype)
    assert_grads_match(got, expected, 2 * atol, 2 * rtol)  # two roundings on the reference's side


def test_op_passes_input_eps_and_checks_it():
    q, k, v, g, mask, scale = attention_inputs(ATTENTION_CASES[0], F64)
    _, with_eps = grads(lambda *a: lrp_attention(*a, mask=mask, input_eps=0.2), (q, k, v), g)
    _, plain = grads(lambda *a: lrp_attention(*a, mask=mask), (q, k, v), g)
    for a, p, x in zip(with_eps, plain, (q, k, v)):
        torch.testing.assert_close(a, TORCH_LINEAR.eps_ratio(p, x, 0.2), rtol=0, atol=0)
    with pytest.raises(ValueError, match="input_eps"):
        lrp_attention(q, k, v, input_eps=-1.0)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_attnlrp_is_quarter_and_half_of_plain_gradient_and_padded_keys_get_nothing(target):
    q, k, v, g, mask, scale = attention_inputs((2, 2, 37, 32, (37, 25), "bhld"), F32, target.device, seed=1)
    kernels = target.backend.attention

    def backward(mode):
        _, saved = kernels.forward(q, k, v, mask, scale, mode)
        return kernels.backward(g, q, k, v, mask, scale, mode, saved)

    plain, lrp = backward("grad"), backward("attnlrp")
    torch.testing.assert_close(lrp[0], plain[0] / 4, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(lrp[1], plain[1] / 4, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(lrp[2], plain[2] / 2, rtol=1e-6, atol=1e-7)
    # padded keys of sequence 1 get exactly zero gradient (their probabilities underflow to 0)
    for t in plain[1:]:
        assert torch.count_nonzero(t[1, :, 25:]) == 0
        assert torch.count_nonzero(t[1, :, :25]) > 0


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
def test_fully_padded_sequence_attends_uniformly(target):
    q, k, v, _, mask, scale = attention_inputs((1, 1, 19, 32, (0,), "bhld"), F32, target.device, seed=2)
    out, _ = target.backend.attention.forward(q, k, v, mask, scale, "attnlrp")
    torch.testing.assert_close(out[0, 0], v[0, 0].mean(dim=0).expand(19, 32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_fully_padded_sequence_backward_is_exact(target, mode):
    """Against float64 autograd: the sequence whose keys are all padding attends uniformly, and its
    gradients follow from that like any other row's."""
    q, k, v, g, mask, scale = attention_inputs((2, 1, 45, 64, (45, 0), "bhld"), F32, target.device, seed=3)
    kernels = target.backend.attention
    got = kernels.backward(g, q, k, v, mask, scale, mode, kernels.forward(q, k, v, mask, scale, mode)[1])
    _, exact = float64_autograd(q, k, v, mask, scale, mode, g)
    for a, b in zip(got, exact):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a.double(), b, atol=2e-6, rtol=1e-5)  # float32 vs float64


@pytest.mark.parametrize("target", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_float64_runs_the_reference(target, mode):
    q, k, v, g, mask, scale = attention_inputs(ATTENTION_CASES[0], F64, target.device)
    kernels = target.backend.attention
    out, saved = kernels.forward(q, k, v, mask, scale, mode)
    out_ref, saved_ref = ref.forward(q, k, v, mask, scale, mode)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=0)
    got = kernels.backward(g, q, k, v, mask, scale, mode, saved)
    assert_grads_match(got, ref.backward(g, q, k, v, mask, scale, mode, saved_ref), 0, 0)
    assert got[2].dtype == F64


# ------------------------------------------------------------------ (c) Triton's fused kernels
TRITON = [t for t in KERNEL_BACKENDS if t.id.startswith("triton")]


@pytest.mark.parametrize("target", TRITON)
def test_triton_bad_input_raises_one_line_errors(target):
    q, k, v, g, mask, scale = attention_inputs(ATTENTION_CASES[0], F32, target.device)
    kernels = target.backend.attention
    with pytest.raises(BackendError, match="unknown attention mode"):
        kernels.forward(q, k, v, mask, scale, "softmax")
    with pytest.raises(BackendError, match="mask must have shape"):
        kernels.forward(q, k, v, mask[:, :5], scale, "grad")
    with pytest.raises(BackendError, match="q, k, v must all have shape"):
        kernels.forward(q, k[:, :, :5], v, mask, scale, "grad")
    _, ref_saved = ref.forward(q, k, v, mask, scale, "grad")
    with pytest.raises(BackendError, match="of the Triton forward"):
        kernels.backward(g, q, k, v, mask, scale, "grad", ref_saved)


# ---------------------------------------------- (c) the compiled masked softmax (cpp and cuda)
@pytest.mark.parametrize("target", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keys", KEYS)
@pytest.mark.parametrize("masked", [True, False], ids=["mask", "no_mask"])
def test_softmax_forward(target, dtype, keys, masked):
    scores = randn(3, 2, 5, keys, dtype=dtype, device=target.device, scale=4.0)
    mask = padding_mask(3, keys, target.device) if masked else None
    atol, rtol = target.tol("softmax", dtype)
    probs = target.module("attention").softmax_forward(scores, mask, 0.125)
    assert_matches(probs, ref.softmax_forward(scores, mask, 0.125), atol, rtol)
    if masked:
        uniform = torch.full_like(probs[-1], 1.0 / keys)
        assert_matches(probs[-1], uniform, atol, rtol)
        if keys > 1:
            assert torch.all(probs[1, ..., (keys + 1) // 2 :] == 0)


@pytest.mark.parametrize("target", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keys", KEYS)
def test_softmax_backward(target, dtype, keys):
    probs = ref.softmax_forward(randn(2, 3, 4, keys, device=target.device, scale=3.0), None, 1.0).to(dtype)
    grad_p = randn(2, 3, 4, keys, dtype=dtype, device=target.device, seed=1)
    factor = 0.125 * 0.25  # scale * ½ * ½ of attnlrp
    assert_matches(target.module("attention").softmax_backward(grad_p, probs, factor),
                   ref.softmax_backward(grad_p, probs, factor), *target.tol("softmax", dtype))


@pytest.mark.parametrize("target", COMPILED)
@pytest.mark.parametrize("kind", STRIDED)
def test_softmax_strided_inputs(target, kind):
    kernels = target.module("attention")
    tol = target.tol("softmax", F32)
    scores = noncontiguous(randn(2, 3, 7, 7, device=target.device, scale=3.0), kind)
    mask = noncontiguous(padding_mask(2, 7, target.device), "col_strided")
    assert_matches(kernels.softmax_forward(scores, mask, 0.5), ref.softmax_forward(scores, mask, 0.5), *tol)
    probs = noncontiguous(ref.softmax_forward(randn(2, 3, 7, 7, device=target.device, seed=2), None, 1.0), kind)
    grad_p = noncontiguous(randn(2, 3, 7, 7, device=target.device, seed=3), kind)
    assert_matches(kernels.softmax_backward(grad_p, probs, 0.3), ref.softmax_backward(grad_p, probs, 0.3), *tol)


@pytest.mark.parametrize("target", COMPILED)
def test_softmax_mask_broadcast_over_heads_and_queries(target):
    """Row r of scores [B, H, Lq, Lk] takes mask row r // (H·Lq): a mask that differs per batch
    item only matches the reference when that mapping is right."""
    scores = randn(4, 3, 2, 9, device=target.device)
    mask = torch.zeros(4, 9, device=target.device)
    for b in range(4):
        mask[b, b + 1 :] = PAD
    assert_matches(target.module("attention").softmax_forward(scores, mask, 1.0),
                   ref.softmax_forward(scores, mask, 1.0), *target.tol("softmax", F32))


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_every_cpu_instruction_set(isa):
    kernels = CPP.module("attention")
    with cpu_isa(isa):
        for dtype in (F32, BF16):
            atol, rtol = CPP.tol("softmax", dtype)
            s = randn(3, 2, 4, 129, dtype=dtype, scale=4.0)
            mask = padding_mask(3, 129)
            probs = ref.softmax_forward(s, mask, 0.2)
            assert_matches(kernels.softmax_forward(s, mask, 0.2), probs, atol, rtol)
            gp = randn(3, 2, 4, 129, dtype=dtype, seed=3)
            assert_matches(kernels.softmax_backward(gp, probs, 0.1), ref.softmax_backward(gp, probs, 0.1), atol, rtol)
