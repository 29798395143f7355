"""Attention variants of ``lrp_kernels/ops/attention.py``: sliding window, grouped K/V heads, rotary
positions, and DeBERTa's disentangled attention.

(a) the torch reference (forward and every mode's backward) against an explicit float64 formulation
— rotation matrices, a head map instead of repeat, einsums instead of gathers — whose plain autograd
gradient, scaled by the mode's factors (attnlrp: V ½, Q/K/positions ¼; cp_lrp: V only), is the rule;
over odd shapes, the fused CPU path and the eager one, and fp32/fp16/bf16; (b) the masks; (c) the
Triton kernels of grouped K/V heads, windows and rotary positions against the reference (and what
they still hand to it); the cpp backend's blocked kernels: ``tests/ops/test_attention_blocked.py``.
"""

import contextlib

import pytest
import torch

from helpers import TRITON  # tests/ops helper: imports the Triton backend (interpreted without a GPU) first

from lrp_kernels.backends import registry
from lrp_kernels.backends.torch import attention as ref
from lrp_kernels.errors import BackendError
from lrp_kernels.ops.attention import additive_mask, lrp_attention, lrp_disentangled_attention

F64 = torch.float64
# (atol, rtol) of a reference result against float64 math on the same rounded inputs, O(1) values
TOL = {
    torch.float32: (2e-6, 1e-5),  # float32 softmax and products: a few ulp, summed over ≤ 40 keys
    torch.float16: (2e-3, 2e-3),  # aten's half attention rounds P and the products to float16
    torch.bfloat16: (2e-2, 2e-2),  # …and to bfloat16 (2^-8 relative per rounding, a few roundings)
}
DTYPES = [pytest.param(d, id=str(d).split(".")[1]) for d in TOL]
FACTORS = {"grad": (1.0, 1.0, 1.0), "attnlrp": (0.25, 0.25, 0.5), "cp_lrp": (None, None, 1.0)}
# (B, H, H_kv, L, D, lengths, window): ragged masks, a fully padded sequence (the eager path), a
# window of 0 (each token reads itself only), head dims that are not powers of two
CASES = [
    (2, 4, 2, 11, 6, (11, 7), 3),
    (2, 6, 3, 9, 10, (9, 0), 2),
    (1, 2, 1, 5, 4, None, 0),
    (3, 3, 3, 13, 8, (13, 6, 1), None),
]


def _randn(*shape, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64).to(dtype)


def _rotary(length, dim, theta=50.0):
    inv = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=F64) / dim)
    freqs = torch.arange(length, dtype=F64)[:, None] * inv
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos()[None], emb.sin()[None]


def _rotation_matrices(cos, sin):
    """R_t [L, D, D] with (R_t x)_d = x_d cos_td + rotate_half(x)_d sin_td, written out."""
    dim = cos.shape[-1]
    half = dim // 2
    j = torch.zeros(dim, dim, dtype=F64)
    j[torch.arange(half), torch.arange(half) + half] = -1.0
    j[torch.arange(half) + half, torch.arange(half)] = 1.0
    return torch.diag_embed(cos[0]) + sin[0][:, :, None] * j


def _explicit(q, k, v, lengths, window, cos, sin, causal=False):
    """Float64 attention with rotation matrices, a head map and a band mask (differentiable); with
    ``causal`` a lower-triangular one (query rows of a padded position keep no relevance, so
    only the real rows are compared)."""
    batch, heads, length, dim = q.shape
    rot = _rotation_matrices(cos, sin)
    q, k = torch.einsum("lde,bhle->bhld", rot, q), torch.einsum("lde,bhle->bhld", rot, k)
    head_of = torch.arange(heads) // (heads // k.shape[1])
    scores = torch.einsum("bhid,bhjd->bhij", q, k[:, head_of]) * dim**-0.5
    pos = torch.arange(length)
    keep = torch.ones(batch, 1, length, length, dtype=torch.bool)
    if window is not None:
        keep &= ((pos[:, None] - pos[None, :]).abs() <= window)[None, None]
    if causal:
        keep &= (pos[:, None] >= pos[None, :])[None, None]
    if lengths is not None:
        keep &= (pos[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]
    probs = torch.softmax(scores.masked_fill(~keep, -torch.inf), dim=-1).nan_to_num(0.0)
    return torch.einsum("bhij,bhjd->bhid", probs, v[:, head_of])


def _mask(batch, length, lengths):
    if lengths is None:
        return None
    return additive_mask(torch.arange(length)[None, :] < torch.tensor(lengths)[:, None])


def _inputs(case, dtype):
    batch, heads, kv_heads, length, dim, lengths, window = case
    q = _randn(batch, heads, length, dim, seed=1, dtype=dtype)
    k, v = (_randn(batch, kv_heads, length, dim, seed=s, dtype=dtype) for s in (2, 3))
    g = _randn(batch, heads, length, dim, seed=4, dtype=dtype)
    if lengths is not None:  # padded query rows carry no gradient (nothing reads them)
        g = g * (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None])[:, None, :, None].to(dtype)
    return q, k, v, g, _mask(batch, length, lengths), window, _rotary(length, dim)


def _valid_rows(case):
    batch, _, _, length, _, lengths, _ = case
    if lengths is None:
        return torch.ones(batch, 1, length, 1, dtype=torch.bool)
    return (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None])[:, None, :, None]


def _check_against_explicit_float64(case, mode, dtype, causal: bool) -> None:
    """The reference's output and rule-scaled gradients against autograd of the explicit float64 attention."""
    q, k, v, g, mask, window, (cos, sin) = _inputs(case, dtype)
    rotary = (cos.to(dtype), sin.to(dtype))
    scale = q.shape[-1] ** -0.5
    out, saved = ref.forward(q, k, v, mask, scale, mode, window, rotary, causal=causal)
    grads = ref.backward(g, q, k, v, mask, scale, mode, saved, window, rotary, causal=causal)
    x64 = [t.double().requires_grad_(True) for t in (q, k, v)]
    expected = _explicit(*x64, case[5], window, cos.to(dtype).double(), sin.to(dtype).double(), causal=causal)
    plain = torch.autograd.grad(expected, x64, g.double())
    atol, rtol = TOL[dtype]
    valid = _valid_rows(case)
    torch.testing.assert_close((out.double() * valid), expected.detach() * valid, atol=atol, rtol=rtol)
    for got, want, factor in zip(grads, plain, FACTORS[mode]):
        if factor is None:
            assert got is None
        else:
            assert got.dtype == dtype and got.shape == want.shape
            torch.testing.assert_close(got.double(), factor * want, atol=atol, rtol=rtol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"B{c[0]}H{c[1]}kv{c[2]}L{c[3]}D{c[4]}w{c[6]}")
@pytest.mark.parametrize("mode", list(FACTORS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_against_explicit_float64(case, mode, dtype):
    _check_against_explicit_float64(case, mode, dtype, causal=False)


#: causal attention (decoders): plain, with a causal window (0: each token reads itself only), g = 1..3
CAUSAL_CASES = [
    (2, 4, 2, 11, 6, (11, 7), None),
    (2, 6, 3, 9, 10, (9, 4), 2),
    (1, 2, 2, 7, 4, None, 0),
    (3, 3, 1, 13, 8, (13, 6, 1), 20),
]


@pytest.mark.parametrize("case", CAUSAL_CASES, ids=lambda c: f"B{c[0]}H{c[1]}kv{c[2]}L{c[3]}w{c[6]}")
@pytest.mark.parametrize("mode", list(FACTORS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_causal_reference_against_explicit_float64(case, mode, dtype):
    """Causal (and causal-window) attention: the same rules as every variant, a lower-triangular mask."""
    _check_against_explicit_float64(case, mode, dtype, causal=True)


def test_causal_differs_from_bidirectional_and_ignores_the_future():
    """Changing a later key or value changes nothing at earlier queries (and does without ``causal``)."""
    q, k, v, g, mask, window, rotary = _inputs(CAUSAL_CASES[0], torch.float64)
    k2, v2 = k.clone(), v.clone()
    k2[..., 6:, :] += 1.0
    v2[..., 6:, :] -= 2.0
    outs = [lrp_attention(q, kk, vv, mask, None, "attnlrp", causal=causal) for causal in (True, False)
            for kk, vv in ((k, v), (k2, v2))]
    torch.testing.assert_close(outs[0][..., :6, :], outs[1][..., :6, :], rtol=0, atol=0)
    assert not torch.allclose(outs[2][..., :6, :], outs[3][..., :6, :])


def test_op_matches_reference_and_shared_heads_sum_their_readers():
    """Through the autograd op: the relevance of a shared K/V head is the sum of what its query heads
    give it — the same as the same attention with the heads repeated by hand."""
    q, k, v, g, mask, window, rotary = _inputs(CASES[0], torch.float32)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = lrp_attention(*leaves, mask, None, "attnlrp", window=window, rotary=rotary)
    gq, gk, gv = torch.autograd.grad(out, leaves, g)
    rep = [t.repeat_interleave(2, dim=1).requires_grad_(True) for t in (k, v)]
    out2 = lrp_attention(leaves[0], *rep, mask, None, "attnlrp", window=window, rotary=rotary)
    _, gk2, gv2 = torch.autograd.grad(out2, [leaves[0], *rep], g)
    torch.testing.assert_close(out, out2)
    torch.testing.assert_close(gk, gk2.view(*k.shape[:2], 2, *k.shape[2:]).sum(2))
    torch.testing.assert_close(gv, gv2.view(*v.shape[:2], 2, *v.shape[2:]).sum(2))


def test_rotary_transposed_is_the_transpose_and_conserves():
    """<R x, g> = <x, Rᵀ g> per position: the rule of a bias-free linear map passes relevance unchanged."""
    x, g = _randn(2, 3, 7, 10, seed=1), _randn(2, 3, 7, 10, seed=2)
    rotary = _rotary(7, 10)
    lhs = (ref.apply_rotary(x, rotary) * g).sum(-1)
    rhs = (x * ref.rotary_transposed(g, rotary)).sum(-1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_window_mask_keeps_every_row_nonempty():
    mask = additive_mask(torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0]]))
    dense = ref.dense_mask(mask, 1, 8)
    keep = dense[0, 0] == 0
    assert keep[:3, :3].tolist() == [[True, True, False], [True, True, True], [False, True, True]]
    assert not keep[:, 3:].any()  # no query reads a padded key
    assert keep[3:, :3].all()  # a padded query row reads every unpadded key: never empty
    assert ref.dense_mask(mask, None, 8) is mask


def test_causal_mask_rows_nonempty_and_never_above_the_diagonal():
    """Left padding (decoders): a padded query row ignores the key mask but stays causal."""
    mask = additive_mask(torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]))
    keep = ref.dense_mask(mask, None, 6, causal=True)[:, 0] == 0
    assert not torch.triu(keep, diagonal=1).any()  # j > i never
    assert keep.any(dim=-1).all()  # no empty row
    assert keep[0, 3].tolist() == [False, False, True, True, False, False]  # a real row reads real keys ≤ i
    assert keep[0, 1].tolist() == [True, True, False, False, False, False]  # a padded row reads keys ≤ i
    assert keep[1, 5].tolist() == [True] * 6  # …right padding too
    band = ref.dense_mask(None, 1, 6, causal=True)[0, 0] == 0  # causal window w = 1: i − 1 ≤ j ≤ i
    assert band.long().sum(dim=-1).tolist() == [1, 2, 2, 2, 2, 2] and not torch.triu(band, diagonal=1).any()


def _disentangled_inputs(dtype, batch=2, heads=3, length=10, dim=6, span=4, pos_batch=1):
    q, k, v = (_randn(batch, heads, length, dim, seed=s, dtype=dtype) for s in (1, 2, 3))
    pk, pq = (_randn(pos_batch, heads, 2 * span, dim, seed=s, dtype=dtype) for s in (4, 5))
    pos = torch.arange(length)
    rel = pos[:, None] - pos[None, :]
    bucket = torch.where(rel.abs() > 2, torch.sign(rel) * (2 + (rel.abs() > 5).long()), rel)  # collisions
    index = (bucket + span).clamp(0, 2 * span - 1)
    g = _randn(batch, heads, length, dim, seed=6, dtype=dtype)
    g[1, :, 7:] = 0
    mask = additive_mask(torch.tensor([[1] * length, [1] * 7 + [0] * (length - 7)]))
    return q, k, v, pk, pq, index, mask, g


def _disentangled64(q, k, v, pk, pq, index, mask, scale):
    """S_ij = scale·(q_i·k_j + q_i·pk_δ(i,j) + k_j·pq_δ(i,j)) + mask_j with one-hot δ (no gather)."""
    onehot = torch.nn.functional.one_hot(index, pk.shape[-2]).to(F64)  # [L, L, R]
    c2p = torch.einsum("bhid,bhrd,ijr->bhij", q, pk.expand(q.shape[0], -1, -1, -1), onehot)
    p2c = torch.einsum("bhjd,bhrd,ijr->bhij", k, pq.expand(q.shape[0], -1, -1, -1), onehot)
    scores = (torch.einsum("bhid,bhjd->bhij", q, k) + c2p + p2c) * scale + mask[:, None, None, :].double()
    return torch.softmax(scores, dim=-1) @ v


@pytest.mark.parametrize("mode", list(FACTORS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pos_batch", [1, 2], ids=["shared-positions", "per-example-positions"])
def test_disentangled_reference_against_explicit_float64(mode, dtype, pos_batch):
    q, k, v, pk, pq, index, mask, g = _disentangled_inputs(dtype, pos_batch=pos_batch)
    scale = (3 * q.shape[-1]) ** -0.5
    out, saved = ref.disentangled_forward(q, k, v, pk, pq, index, mask, scale, mode)
    grads = ref.disentangled_backward(g, q, k, v, pk, pq, index, mask, scale, mode, saved, True)
    x64 = [t.double().requires_grad_(True) for t in (q, k, v, pk, pq)]
    expected = _disentangled64(*x64, index, mask, scale)
    plain = torch.autograd.grad(expected, x64, g.double())
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(out.double(), expected.detach(), atol=atol, rtol=rtol)
    q_factor, _, v_factor = FACTORS[mode]
    for got, want, factor in zip(grads, plain, (q_factor, q_factor, v_factor, q_factor, q_factor)):
        if factor is None:
            assert got is None
        else:
            assert got.shape == want.shape
            torch.testing.assert_close(got.double(), factor * want, atol=atol, rtol=rtol)


def test_disentangled_op_without_position_grads_and_single_terms():
    q, k, v, pk, pq, index, mask, g = _disentangled_inputs(F64)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    for pos_key, pos_query in ((pk, None), (None, pq), (pk, pq)):
        out = lrp_disentangled_attention(*leaves, pos_key, pos_query, index, mask, 0.2, "attnlrp")
        grads = torch.autograd.grad(out, leaves, g)
        x64 = [t.detach().requires_grad_(True) for t in leaves]
        zero = torch.zeros_like(pk)
        expected = _disentangled64(*x64, zero if pos_key is None else pk, zero if pos_query is None else pq,
                                   index, mask, 0.2)
        plain = torch.autograd.grad(expected, x64, g)
        torch.testing.assert_close(out, expected)
        for got, want, factor in zip(grads, plain, (0.25, 0.25, 0.5)):
            torch.testing.assert_close(got, factor * want)


def test_cuda_backend_runs_the_variants_on_the_triton_kernels(monkeypatch):
    """The ``cuda`` backend declares its own attention kernel set: a variant (here causal, grouped K/V
    heads, a window) runs the Triton kernels where Triton runs — seen launching, with the Triton
    backend's results — and the torch reference where it does not; plain attention keeps the
    compiled path. No GPU here: the set is called on CPU tensors, which the interpreted Triton
    backend runs (on a GPU, CUDA tensors and compiled kernels)."""
    from lrp_kernels.backends.cpp import attention as cpp_attention

    cuda_backend, reason = registry.load("cuda")
    if cuda_backend is None:
        pytest.skip(reason)
    assert cuda_backend.attention is cpp_attention.CUDA_KERNELS
    assert registry.load("cpp")[0].attention is cpp_attention.KERNELS  # the CPU keeps its own
    if TRITON.backend is None or TRITON.device != "cpu":
        pytest.skip(TRITON.reason or "the routing on CPU tensors needs the interpreted Triton backend")
    kernels = cpp_attention.CUDA_KERNELS
    q, k, v, g, mask, window, rotary = _triton_inputs(CAUSAL_TRITON_CASES[2], torch.float32)
    scale = q.shape[-1] ** -0.5
    with _launches() as names:
        out, saved = kernels.forward(q, k, v, mask, scale, "attnlrp", window, None, True)
        got = kernels.backward(g, q, k, v, mask, scale, "attnlrp", saved, window, None, 0.0, True)
    assert names == ["_attention_forward_kernel", "_attention_backward_dq_kernel", "_attention_backward_dkdv_kernel"]
    tri_out, tri_saved = TRITON.backend.attention.forward(q, k, v, mask, scale, "attnlrp", window, None, True)
    assert torch.equal(out, tri_out)
    want = TRITON.backend.attention.backward(g, q, k, v, mask, scale, "attnlrp", tri_saved, window, None, 0.0, True)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    with _launches() as names:  # plain attention: not a variant, the compiled path as before
        q1, k1, v1 = q, k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
        kernels.backward(g, q1, k1, v1, mask, scale, "grad", kernels.forward(q1, k1, v1, mask, scale, "grad")[1])
    assert names == []
    # Triton does not run here: the module's own host functions (on CUDA tensors the torch reference;
    # on these CPU tensors the blocked CPU kernel)
    monkeypatch.setitem(cpp_attention._TRITON, str(q.device), None)
    with _launches() as names:
        out, saved = kernels.forward(q, k, v, mask, scale, "cp_lrp", window, None, True)
        got = kernels.backward(g, q, k, v, mask, scale, "cp_lrp", saved, window, None, 0.0, True)
    assert names == []
    expected, own_saved = cpp_attention.KERNELS.forward(q, k, v, mask, scale, "cp_lrp", window, None, True)
    assert torch.equal(out, expected)
    want = cpp_attention.KERNELS.backward(g, q, k, v, mask, scale, "cp_lrp", own_saved, window, None, 0.0, True)
    assert torch.equal(got[2], want[2])


@pytest.mark.parametrize("name", ["cpp", "triton"])
def test_backends_run_causal_attention_like_the_reference(name):
    """Causal attention through every backend that runs here (the cpp backend's blocked kernel, Triton's
    kernels or, where it has none, the reference)."""
    backend = TRITON.backend if name == "triton" else registry.load(name)[0]
    if backend is None or backend.unavailable_reason(TRITON.device if name == "triton" else "cpu") is not None:
        pytest.skip(f"{name} does not run here")
    device = TRITON.device if name == "triton" else "cpu"
    q, k, v, g, mask, window, rotary = (None if t is None else (tuple(x.to(device) for x in t) if isinstance(t, tuple)
                                        else t.to(device) if torch.is_tensor(t) else t)
                                        for t in _inputs(CAUSAL_CASES[1], torch.float32))
    scale = q.shape[-1] ** -0.5
    for mode in FACTORS:
        out, saved = backend.attention.forward(q, k, v, mask, scale, mode, window, rotary, True)
        expected, ref_saved = ref.forward(q, k, v, mask, scale, mode, window, rotary, True)
        torch.testing.assert_close(out, expected)
        got = backend.attention.backward(g, q, k, v, mask, scale, mode, saved, window, rotary, 0.0, True)
        want = ref.backward(g, q, k, v, mask, scale, mode, ref_saved, window, rotary, 0.0, True)
        for a, b in zip(got, want):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b)


# ------------------------------------------------------------ (c) the Triton kernels of the variants
#: (B, H, H_kv, L, D, padding, window, rotary): padding per sequence, n > 0 the first n tokens real,
#: −n the first n padding (left padding: the padded rows lie before the band), 0 all padding.
#: L is never a multiple of the interpreter's blocks (16 / 32); the window is below, equal to and
#: above L − 1 (from L − 1 on every key is in the band: no band at all)
TRITON_CASES = [
    (2, 4, 2, 37, 16, (37, 30), None, False),  # g = 2, ragged
    (2, 3, 1, 21, 32, (21, 0), None, False),  # g = 3, a fully padded sequence
    (3, 4, 2, 29, 16, (29, 17, 0), 5, False),  # window < L, g = 2, ragged and fully padded
    (2, 2, 2, 70, 16, (-12, 50), 3, False),  # key and query blocks skipped on both sides of the band
    (1, 2, 2, 40, 16, None, 0, False),  # each token reads itself only
    (1, 2, 1, 19, 16, (19,), 18, False),  # window = L − 1 and g = 2
    (2, 2, 2, 21, 16, (21, 15), None, True),  # rotary
    (2, 6, 2, 37, 16, (-5, 0), 4, True),  # all three, g = 3, left padding, a fully padded sequence
]
#: the cases also run in float16 and bfloat16 (one per variant, the interpreter is slow)
TRITON_16BIT = [0, 2, 6]
#: causal attention (decoders), same fields: left padding (the decoders' usual: the padded rows lie
#: before the real ones, the leading key blocks hold padding only), right padding, fully padded
#: sequences; windows below, at and above L − 1; g = 1..3; rotary; L never a multiple of the blocks
CAUSAL_TRITON_CASES = [
    (2, 4, 2, 37, 16, (-9, 30), None, False),  # g = 2, left and right padding
    (2, 3, 1, 21, 32, (21, 0), None, False),  # g = 3, a fully padded sequence
    (3, 4, 2, 29, 16, (-11, 17, 0), 5, False),  # causal window < L, left / right / full padding
    (2, 2, 2, 70, 16, (-40, 50), 3, False),  # 3 query blocks: leading padded key blocks, both band edges
    (1, 2, 2, 40, 16, None, 0, False),  # each token reads itself only
    (1, 2, 1, 19, 16, (-4,), 18, False),  # window = L − 1 (no band) and g = 2
    (2, 2, 2, 21, 16, (-6, 15), 25, True),  # window > L − 1, rotary
    (2, 6, 2, 37, 16, (-5, 0), 4, True),  # all of them: g = 3, left padding, a fully padded sequence
]
#: the causal cases also run in one 16-bit dtype each (bfloat16: what decoders ship in)
CAUSAL_16BIT = {0: torch.bfloat16, 2: torch.float16, 7: torch.bfloat16}


def _triton_inputs(case, dtype):
    batch, heads, kv_heads, length, dim, padding, window, rotary = case
    device = TRITON.device
    q = _randn(batch, heads, length, dim, seed=1, dtype=dtype).to(device)
    k, v = (_randn(batch, kv_heads, length, dim, seed=s, dtype=dtype).to(device) for s in (2, 3))
    g = _randn(batch, heads, length, dim, seed=4, dtype=dtype).to(device)
    mask = None
    if padding is not None:
        pos = torch.arange(length)
        keep = torch.stack([pos < n if n >= 0 else pos >= -n for n in padding])
        mask = additive_mask(keep).to(device)
    cos, sin = _rotary(length, dim)
    rot = (cos.float().to(device), sin.float().to(device)) if rotary else None
    return q, k, v, g, mask, window, rot


@contextlib.contextmanager
def _launches():
    """The names of the Triton kernels launched inside."""
    names = []
    with TRITON.module("_launch").launch_hook(lambda launch: names.append(launch.kernel.name) and False):
        yield names


def _triton_params(cases, dtypes_of):
    for i, case in enumerate(cases):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            if dtype == torch.float32 or dtype in dtypes_of(i):
                b, h, hkv, length, dim, padding, window, rotary = case
                # float32 runs every case by default; the 16-bit repeats of a variant are slow
                slow = [pytest.mark.slow] if dtype != torch.float32 else []
                yield pytest.param(case, dtype, marks=[*TRITON.param().marks, *slow],
                                   id=f"g{h // hkv}-L{length}-D{dim}-pad{padding}-w{window}-rot{int(rotary)}-"
                                      f"{str(dtype)[6:]}")


def _triton_against_reference(case, dtype, mode, causal=False, reference_dtype=None):
    """Forward and backward of ``mode`` in the kernels (no fallback: each launch is seen) against the
    torch reference — run in ``reference_dtype`` on the same inputs (default: theirs) and rounded to
    ``dtype`` — within the Triton attention rows of ``helpers.TOLERANCES``."""
    q, k, v, g, mask, window, rotary = _triton_inputs(case, dtype)
    kernels, scale = TRITON.backend.attention, q.shape[-1] ** -0.5
    if TRITON.module("attention").runs_reference(q, rotary, causal):
        pytest.skip("rotary positions run the torch reference on this GPU (configs._ROTARY_HEAD_DIMS)")
    with _launches() as names:
        out, saved = kernels.forward(q, k, v, mask, scale, mode, window, rotary, causal)
        got = kernels.backward(g, q, k, v, mask, scale, mode, saved, window, rotary, 0.0, causal)
    dq = [] if mode == "cp_lrp" else ["_attention_backward_dq_kernel"]
    assert names == ["_attention_forward_kernel", *dq, "_attention_backward_dkdv_kernel"]
    xq, xk, xv, xg = (t.to(reference_dtype or dtype) for t in (q, k, v, g))
    expected, ref_saved = ref.forward(xq, xk, xv, mask, scale, mode, window, rotary, causal)
    want = ref.backward(xg, xq, xk, xv, mask, scale, mode, ref_saved, window, rotary, 0.0, causal)
    atol, rtol = TRITON.tol("attention", dtype)
    torch.testing.assert_close(out.float(), expected.to(dtype).float(), atol=atol, rtol=rtol)
    for a, b, x in zip(got, want, (q, k, v)):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == dtype and a.shape == x.shape
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a.float(), b.to(dtype).float(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("case, dtype", list(_triton_params(TRITON_CASES, lambda i: (
    (torch.float16, torch.bfloat16) if i in TRITON_16BIT else ()))))
@pytest.mark.parametrize("mode", list(FACTORS))
def test_triton_kernels_run_the_variants_like_the_reference(case, dtype, mode):
    """Forward and backward of every mode in the kernels against the torch reference. Tolerances: the
    Triton attention rows of ``helpers.TOLERANCES`` (the reference rounds more often: each query
    head's gradient before the sum over its group, g_Q and g_K before they are rotated back;
    measured at most 0.4 of the 16-bit rows, 0.01 of float32's)."""
    _triton_against_reference(case, dtype, mode)


@pytest.mark.parametrize("case, dtype", list(_triton_params(CAUSAL_TRITON_CASES, lambda i: (
    (CAUSAL_16BIT[i],) if i in CAUSAL_16BIT else ()))))
@pytest.mark.parametrize("mode", list(FACTORS))
def test_triton_kernels_run_causal_attention_like_the_reference(case, dtype, mode):
    """Causal attention (with windows, grouped heads, rotary, left/right/full padding) in the kernels
    against the reference's dense causal mask — the padded rows included, which ignore the key mask
    and read every key j ≤ i of their band — within the Triton attention tolerances. The reference
    runs in float32 on the same rounded inputs, rounded once to the dtype: what a kernel that rounds
    once should give (measured at most 0.54 of the float16 row, 0.33 of bfloat16's, 0.04 of
    float32's). In float16 itself its eager path (a fully padded sequence in the batch) rounds P and
    each product to float16 and lands up to 3.0e-3 from float64 math, the kernels 2.2e-3: the two
    then differ by up to 1.12 of the row."""
    _triton_against_reference(case, dtype, mode, causal=True, reference_dtype=torch.float32)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_triton_variants_take_input_eps_and_strided_heads(causal):
    """The ε-ratio of the unrotated inputs after the transposed rotation, on [B, L, H, D] views."""
    q, k, v, g, mask, window, rotary = _triton_inputs(TRITON_CASES[-1], torch.float32)
    q, k, v, g = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v, g))
    kernels, scale = TRITON.backend.attention, q.shape[-1] ** -0.5
    if TRITON.module("attention").runs_reference(q, rotary, causal):
        pytest.skip("rotary positions run the torch reference on this GPU (configs._ROTARY_HEAD_DIMS)")
    with _launches() as names:
        saved = kernels.forward(q, k, v, mask, scale, "attnlrp", window, rotary, causal)[1]
        got = kernels.backward(g, q, k, v, mask, scale, "attnlrp", saved, window, rotary, 0.3, causal)
    assert len(names) == 3
    ref_saved = ref.forward(q, k, v, mask, scale, "attnlrp", window, rotary, causal)[1]
    want = ref.backward(g, q, k, v, mask, scale, "attnlrp", ref_saved, window, rotary, 0.3, causal)
    atol, rtol = TRITON.tol("attention", torch.float32)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=2 * atol, rtol=2 * rtol)  # two roundings on the reference's side


@contextlib.contextmanager
def _rows_read(**tensors):
    """Under Triton's interpreter: ``{(kernel, name, program): positions}`` — the sequence positions
    (row l of a contiguous [1, 1, L, D] tensor) of each named tensor that each program's loads read,
    masked-off lanes excluded. What a kernel loads, not what it computes: a kernel that only masked
    the blocks above the diagonal would read them all the same."""
    import collections

    import numpy as np
    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    spans = {name: (t.data_ptr(), t.numel(), t.element_size(), t.shape[-1]) for name, t in tensors.items()}
    read, current = collections.defaultdict(set), {}
    original = builder.create_masked_load

    def load(ptrs, mask, *args, **kwargs):
        lanes = np.broadcast_to(mask.data, ptrs.data.shape)
        addresses = ptrs.data[lanes].astype(np.int64)
        for name, (base, count, size, dim) in spans.items():
            index = (addresses - base) // size
            inside = index[(addresses >= base) & (index < count)]
            read[(current["kernel"], name, builder.grid_idx[0])].update((inside // dim).tolist())
        return original(ptrs, mask, *args, **kwargs)

    def hook(launch):
        current["kernel"] = launch.kernel.name
        current[launch.kernel.name] = launch.config.kwargs
        return False

    builder.create_masked_load = load
    try:
        with TRITON.module("_launch").launch_hook(hook):
            yield read, current
    finally:
        del builder.create_masked_load


def _up(n, block):
    return -(-n // block) * block


@pytest.mark.parametrize("padding, window", [(None, None), (24, None), (40, 20)],
                         ids=["no-mask", "left-padding", "left-padding-window"])
def test_triton_causal_kernels_never_read_blocks_above_the_diagonal(padding, window):
    """Causal attention, L = 70 (three forward query blocks of the interpreter's 32 rows): each forward
    and dQ program reads no key tile past its last row — nor, with a window, before its band, nor,
    when it holds no padded row, the leading tiles of left padding; each dK/dV program reads no
    query tile before its diagonal (nor past the band, nor past the padded rows when its keys are
    all padding). The bidirectional kernels read every tile: the count would show a kernel that
    only masked."""
    if TRITON.backend is None or TRITON.device != "cpu":
        pytest.skip(TRITON.reason or "counts loads in Triton's interpreter")
    length, dim = 70, 16
    q, k, v, g = (_randn(1, 1, length, dim, seed=s, dtype=torch.float32) for s in range(4))
    mask = None if padding is None else additive_mask(torch.arange(length)[None, :] >= padding)
    first = padding or 0
    kernels, scale = TRITON.backend.attention, dim**-0.5
    for causal in (True, False):
        with _rows_read(q=q, k=k) as (read, blocks):
            saved = kernels.forward(q, k, v, mask, scale, "attnlrp", window, None, causal)[1]
            kernels.backward(g, q, k, v, mask, scale, "attnlrp", saved, window, None, 0.0, causal)
        for kernel, reader in (("_attention_forward_kernel", "k"), ("_attention_backward_dq_kernel", "k")):
            bm, bn = blocks[kernel]["BLOCK_M"], blocks[kernel]["BLOCK_N"]
            for program in range(_up(length, bm) // bm):
                keys = read[(kernel, reader, program)]
                row0, row_end = program * bm, min(program * bm + bm, length)
                if not causal:  # nothing skipped without a mask or a window
                    assert padding or window or keys == set(range(length)), (kernel, program)
                    continue
                lo = max(row0 - window, 0) if window is not None else 0
                if row0 >= first:  # no padded row: the leading padding is skipped too
                    lo = max(lo, first)
                assert keys and min(keys) >= lo // bn * bn, (kernel, program, min(keys))
                assert max(keys) < min(_up(row_end, bn), length), (kernel, program, max(keys))
                assert max(keys) >= row_end - 1  # the diagonal itself is read
        kernel = "_attention_backward_dkdv_kernel"
        bm, bn = blocks[kernel]["BLOCK_M"], blocks[kernel]["BLOCK_N"]
        for program in range(_up(length, bn) // bn):
            rows = read[(kernel, "q", program)]
            col0, col_end = program * bn, min(program * bn + bn, length)
            if not causal:
                assert padding or window or rows == set(range(length)), (kernel, program)
                continue
            hi = length if window is None else min(length, col_end + window)
            if col_end <= first:  # keys of padding only: read by the padded rows alone
                hi = min(hi, _up(first, bm))
            assert rows and min(rows) >= col0 // bm * bm, (kernel, program, min(rows))
            assert max(rows) < hi, (kernel, program, max(rows))


def test_triton_int64_positions_give_the_same_results(monkeypatch):
    """The kernels' int64 sequence positions (WIDE, for head views whose offsets reach 2³¹ elements;
    their launch: tests/backends/test_triton_launch.py) forced on a small causal, windowed, rotary,
    grouped case: the same results as the int32 positions, bit for bit (only the index type differs)."""
    if TRITON.backend is None:
        pytest.skip(TRITON.reason)
    q, k, v, g, mask, window, rotary = _triton_inputs(CAUSAL_TRITON_CASES[-1], torch.float32)
    kernels, scale, module = TRITON.backend.attention, q.shape[-1] ** -0.5, TRITON.module("attention")
    if module.runs_reference(q, rotary, True):
        pytest.skip("rotary positions run the torch reference on this GPU (configs._ROTARY_HEAD_DIMS)")
    results = {}
    for wide in (False, True):
        monkeypatch.setattr(module, "WIDE_ELEMENTS", 0 if wide else 2**31)
        seen = []
        with TRITON.module("_launch").launch_hook(lambda launch: seen.append(launch.constexprs["WIDE"]) and False):
            out, saved = kernels.forward(q, k, v, mask, scale, "attnlrp", window, rotary, True)
            results[wide] = (out, *kernels.backward(g, q, k, v, mask, scale, "attnlrp", saved, window, rotary, 0.0, True))
        assert seen == [wide] * 3
    assert all(torch.equal(a, b) for a, b in zip(results[False], results[True]))


@pytest.mark.parametrize("what", ["rotary-odd-head-dim", "float64"])
def test_triton_hands_the_rest_to_the_reference(what):
    """Rotary positions need a head dim that is a power of two ≥ 16; float64 is the reference's."""
    if TRITON.backend is None:
        pytest.skip(TRITON.reason)
    case = CASES[0] if what == "rotary-odd-head-dim" else (2, 4, 2, 11, 16, (11, 7), 3)
    q, k, v, g, mask, window, rotary = _inputs(case, torch.float32 if what != "float64" else F64)
    q, k, v, g = (t.to(TRITON.device) for t in (q, k, v, g))
    mask = None if mask is None else mask.to(TRITON.device)
    rotary = tuple(t.to(q.dtype).to(TRITON.device) for t in rotary)
    kernels, scale = TRITON.backend.attention, q.shape[-1] ** -0.5
    for mode in FACTORS:
        with _launches() as names:
            out, saved = kernels.forward(q, k, v, mask, scale, mode, window, rotary)
            got = kernels.backward(g, q, k, v, mask, scale, mode, saved, window, rotary)
        assert names == []
        expected, ref_saved = ref.forward(q, k, v, mask, scale, mode, window, rotary)
        assert torch.equal(out, expected)
        want = ref.backward(g, q, k, v, mask, scale, mode, ref_saved, window, rotary)
        assert all(a is b is None or torch.equal(a, b) for a, b in zip(got, want))
    assert kernels.disentangled_forward is ref.disentangled_forward


def test_triton_rejects_bad_variant_arguments():
    if TRITON.backend is None:
        pytest.skip(TRITON.reason)
    q, k, v, g, mask, window, rotary = _triton_inputs(TRITON_CASES[-1], torch.float32)
    kernels, scale = TRITON.backend.attention, q.shape[-1] ** -0.5
    with pytest.raises(BackendError, match="H % H_kv = 0"):
        kernels.forward(q, k[:, :1].expand(-1, 4, -1, -1), v[:, :1].expand(-1, 4, -1, -1), mask, scale, "grad")
    with pytest.raises(BackendError, match="window must be >= 0"):
        kernels.forward(q, k, v, mask, scale, "grad", -1)
    with pytest.raises(BackendError, match="rotary cos and sin must have shape"):
        kernels.forward(q, k, v, mask, scale, "grad", None, (rotary[0][:, :5], rotary[1][:, :5]))
