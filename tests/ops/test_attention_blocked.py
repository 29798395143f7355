"""The blocked (flash-style) CPU attention of the ``cpp`` backend (``csrc/attention.cpp``) against the
torch reference, for every mode × variant of the contract.

Variants: key padding on the right, on the left, none and a fully padded sequence; a window below, at
(L − 1) and above L, and of 0; causal attention with and without a window; 1–4 query heads per K/V
head; rotary positions; lengths that are not multiples of the kernel's 64-row blocks and head dims
that are not multiples of its 16-float packing. The reference builds the [L, L] mask of these rules;
the kernel never does (``test_blocked_memory_is_linear`` measures it in a fresh process).
"""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import BF16, CPP, F16, F32, cpu_isa, cpu_isa_params  # tests/ops helper

from lrp_kernels.backends.torch import attention as ref
from lrp_kernels.backends.torch import linear as torch_linear
from lrp_kernels.ops.attention import additive_mask, lrp_attention

MODES = ("grad", "attnlrp", "cp_lrp")
pytestmark = pytest.mark.skipif(CPP.reason is not None, reason=str(CPP.reason))

#: (B, H, H_kv, L, D, padding, window, causal, rotary): padding per sequence, n > 0 the first n tokens
#: real, −n the first n padding (left padding), 0 all padding; None no mask
CASES = [
    (2, 4, 4, 67, 64, (67, 40), None, False, False),  # right padding, one head per K/V head
    (2, 4, 2, 131, 32, (-20, 131), 5, False, True),  # left padding, window < L, rotary, g = 2
    (3, 6, 2, 130, 16, (130, 77, 0), 129, False, False),  # window = L − 1, a fully padded sequence, g = 3
    (1, 4, 1, 200, 40, None, 300, False, True),  # no mask, window > L, g = 4, D not a multiple of 16
    (2, 4, 4, 129, 64, (129, 0), 10, False, False),  # window with a fully padded sequence: uniform rows
    (1, 2, 2, 65, 64, (65,), 0, False, False),  # window 0: each token reads itself
    (2, 4, 2, 95, 64, (95, 60), None, True, True),  # causal, rotary
    (2, 3, 3, 150, 24, (-30, 150), 7, True, False),  # causal window, left padding
    (2, 2, 1, 70, 8, (70, 0), 0, True, False),  # causal window 0, a fully padded sequence (causal: not uniform)
    (2, 8, 2, 77, 16, (77, 1), None, False, False),  # a one-token sequence, g = 4
]
#: the cases also run in bfloat16 and float16
HALF_CASES = [0, 1, 4, 6, 7]
#: (atol, rtol) against the reference per dtype. float32: online softmax over 64-key blocks and
#: float32 sums in another order (the reference: aten's fused kernel or eager matmuls), the sum over
#: a K/V head's query heads done before rounding — measured ≤ 2e-6 absolute on values of O(1)-O(10),
#: 0.4 of this row. 16-bit: the reference rounds P to the dtype before P·V and rounds each query
#: head's g_K, g_V (and g_Q, g_K before the rotation back) before it sums or rotates them; the
#: kernel rounds once — a few 16-bit steps on the largest entries (one bfloat16 step is 2^-8
#: relative): measured 3.1e-2 (bfloat16) and 3.9e-3 (float16) absolute, ≤ 0.7 of these rows.
TOL = {F32: (5e-6, 1e-5), BF16: (4e-2, 2e-2), F16: (5e-3, 4e-3)}


def _rotary(length, dim, dtype):
    inv = 1.0 / 50.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    freqs = torch.arange(length, dtype=torch.float64)[:, None] * inv
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos()[None].to(dtype), emb.sin()[None].to(dtype)


def _mask(length, padding):
    if padding is None:
        return None
    pos = torch.arange(length)
    return additive_mask(torch.stack([pos < n if n >= 0 else pos >= -n for n in padding]))


def inputs(case, dtype, seed=0, layout="blhd"):
    """q, k, v, g (q and g as [B, L, H, D] views unless ``layout`` is "bhld"), mask, window, rotary, causal."""
    batch, heads, kv_heads, length, dim, padding, window, causal, rotary = case
    gen = torch.Generator().manual_seed(seed)

    def heads_of(n):
        shape = (batch, length, n, dim) if layout == "blhd" else (batch, n, length, dim)
        t = torch.randn(shape, generator=gen).to(dtype)
        return t.transpose(1, 2) if layout == "blhd" else t

    q, k, v, g = heads_of(heads), heads_of(kv_heads), heads_of(kv_heads), heads_of(heads)
    return q, k, v, g, _mask(length, padding), window, _rotary(length, dim, dtype) if rotary else None, causal


def case_id(case):
    b, h, hkv, length, dim, padding, window, causal, rotary = case
    return f"g{h // hkv}-L{length}-D{dim}-pad{padding}-w{window}-{'causal' if causal else 'bidir'}{'-rot' if rotary else ''}"


def params():
    for i, case in enumerate(CASES):
        for dtype in (F32, BF16, F16):
            if dtype == F32 or i in HALF_CASES:
                yield pytest.param(case, dtype, id=f"{case_id(case)}-{str(dtype)[6:]}")


def run(kernels, q, k, v, g, mask, window, rotary, causal, mode, input_eps=0.0):
    scale = q.shape[-1] ** -0.5
    out, saved = kernels.forward(q, k, v, mask, scale, mode, window, rotary, causal)
    grads = kernels.backward(g, q, k, v, mask, scale, mode, saved, window, rotary, input_eps, causal)
    return out, saved, grads


def assert_close(got, want, dtype):
    atol, rtol = TOL[dtype]
    assert (got is None) == (want is None)
    if got is not None:
        assert got.dtype == want.dtype and got.shape == want.shape
        torch.testing.assert_close(got.float(), want.float(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("case, dtype", list(params()))
@pytest.mark.parametrize("mode", MODES)
def test_blocked_matches_the_reference(case, dtype, mode):
    q, k, v, g, mask, window, rotary, causal = inputs(case, dtype)
    out, saved, grads = run(CPP.backend.attention, q, k, v, g, mask, window, rotary, causal, mode)
    expected, _, want = run(ref.KERNELS, q, k, v, g, mask, window, rotary, causal, mode)
    assert_close(out, expected, dtype)
    for a, b in zip(grads, want):
        assert_close(a, b, dtype)
    # flash style: the output and the float32 log-sum-exp per row (cp_lrp: only the latter)
    batch, heads, length, _ = q.shape
    assert [tuple(t.shape) for t in saved] == [(batch, heads, length)] * (mode == "cp_lrp") or (
        mode != "cp_lrp" and saved[0] is out and tuple(saved[1].shape) == (batch, heads, length))
    # laid out as [B, L, H, D] memory: merging heads is a view
    assert out.transpose(1, 2).is_contiguous()


def test_fully_padded_sequence_is_uniform_over_every_key():
    """Without causal, a sequence without a real key reads all L keys uniformly, window or not — as
    softmax of the reference's all-equal finfo.min scores gives."""
    q, k, v, g, mask, window, rotary, causal = inputs(CASES[4], F32)
    out, _ = CPP.backend.attention.forward(q, k, v, mask, q.shape[-1] ** -0.5, "attnlrp", window)
    torch.testing.assert_close(out[1], v[1].mean(dim=1, keepdim=True).expand_as(out[1]), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", [CASES[1], CASES[6], CASES[2]], ids=case_id)
def test_input_eps_after_the_rotation_back(case, mode):
    """``input_eps``: the ε-ratio of the unrotated inputs, applied to the gradients once they are
    rotated back (by the glue with rotary positions, fused into the kernel's stores without)."""
    q, k, v, g, mask, window, rotary, causal = inputs(case, F32, seed=1)
    _, _, got = run(CPP.backend.attention, q, k, v, g, mask, window, rotary, causal, mode, input_eps=0.3)
    _, _, plain = run(ref.KERNELS, q, k, v, g, mask, window, rotary, causal, mode)
    for a, p, x in zip(got, plain, (q, k, v)):
        assert_close(a, None if p is None else torch_linear.eps_ratio(p, x, 0.3), F32)


@pytest.mark.parametrize("layout", ["bhld", "qkv"])
def test_strided_inputs(layout):
    """Contiguous heads, and q, k, v as the unbound thirds of one [B, L, 3, H, D] projection
    (ModernBERT's Wqkv): read in place through their strides."""
    case = CASES[6]
    q, k, v, g, mask, window, rotary, causal = inputs(case, F32, layout="bhld")
    if layout == "qkv":
        qkv = torch.stack([t.transpose(1, 2) for t in (q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1))], 2)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(dim=2))
    for mode in MODES:
        out, _, grads = run(CPP.backend.attention, q, k, v, g, mask, window, rotary, causal, mode)
        expected, _, want = run(ref.KERNELS, q, k, v, g, mask, window, rotary, causal, mode)
        assert_close(out, expected, F32)
        for a, b in zip(grads, want):
            assert_close(a, b, F32)


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_every_cpu_instruction_set(isa):
    """The register tiles differ per instruction set (4×64, 3×32, 2×16 floats)."""
    for case in (CASES[2], CASES[7]):
        q, k, v, g, mask, window, rotary, causal = inputs(case, F32, seed=2)
        expected, _, want = run(ref.KERNELS, q, k, v, g, mask, window, rotary, causal, "attnlrp")
        with cpu_isa(isa):
            out, _, grads = run(CPP.backend.attention, q, k, v, g, mask, window, rotary, causal, "attnlrp")
        assert_close(out, expected, F32)
        for a, b in zip(grads, want):
            assert_close(a, b, F32)


def test_cpp_runs_every_variant_in_its_kernels(monkeypatch):
    """No variant is handed to the reference on the CPU (float64 is)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the torch reference ran")

    monkeypatch.setattr(ref, "forward", refuse)
    monkeypatch.setattr(ref, "backward", refuse)
    for case in CASES:
        q, k, v, g, mask, window, rotary, causal = inputs(case, F32)
        for mode in MODES:
            run(CPP.backend.attention, q, k, v, g, mask, window, rotary, causal, mode)
    q, k, v, g, mask, window, rotary, causal = inputs(CASES[0], torch.float64)
    with pytest.raises(AssertionError, match="reference ran"):
        run(CPP.backend.attention, q, k, v, g, mask, window, rotary, causal, "grad")


def test_through_the_op_shared_heads_sum_their_readers():
    """Through ``lrp_attention``: a shared K/V head's gradient is the sum over its query heads, as
    with the heads repeated by hand."""
    q, k, v, g, mask, window, rotary, causal = inputs(CASES[1], F32)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = lrp_attention(*leaves, mask, None, "attnlrp", CPP.backend, window=window, rotary=rotary)
    gq, gk, gv = torch.autograd.grad(out, leaves, g)
    rep = [t.repeat_interleave(2, dim=1).requires_grad_(True) for t in (k, v)]
    out2 = lrp_attention(leaves[0], *rep, mask, None, "attnlrp", CPP.backend, window=window, rotary=rotary)
    _, gk2, gv2 = torch.autograd.grad(out2, [leaves[0], *rep], g)
    torch.testing.assert_close(out, out2)
    torch.testing.assert_close(gk, gk2.view(*k.shape[:2], 2, *k.shape[2:]).sum(2), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gv, gv2.view(*v.shape[:2], 2, *v.shape[2:]).sum(2), atol=1e-6, rtol=1e-5)


def test_kernel_rejects_bad_sizes():
    from lrp_kernels import _C

    with pytest.raises(ValueError, match="multiple of kv_heads"):
        _C.attention_blocked_forward(0, 1, 3, 2, 4, 8, *([0] * 12), 0, 0, -1, 0, 1.0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="unknown mode"):
        _C.attention_blocked_backward(0, 7, 1, 2, 2, 4, 8, *([0] * 20), 0, 0, 0, -1, 0, 1.0, 0.0, *([0] * 12))


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys, torch
    from lrp_kernels.backends.registry import load
    from lrp_kernels.ops.attention import additive_mask
    length, dim, mode, window, causal = int(sys.argv[1]), 16, sys.argv[2], None, False
    torch.manual_seed(0)
    q, k, v, g = (torch.randn(1, 1, length, dim) for _ in range(4))
    mask = additive_mask(torch.arange(length)[None] < length - 5)
    kernels = load("cpp")[0].attention
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out, saved = kernels.forward(q, k, v, mask, 0.25, mode, window, None, causal)
    grads = kernels.backward(g, q, k, v, mask, 0.25, mode, saved, window, None, 0.0, causal)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"kib": after - before}))
""")


@pytest.mark.parametrize("mode", ["attnlrp", "cp_lrp"])
def test_blocked_memory_is_linear(mode):
    """Forward and backward of one global head at L = 8,192 in a fresh process: the peak resident
    memory grows by far less than one [L, L] float32 matrix (256 MiB). Linear terms: q, k, v, g
    and their gradients are 0.5 MiB each, the packed copies and float32 accumulators a few MiB."""
    run_ = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, "8192", mode], capture_output=True, text=True,
                          timeout=300)
    assert run_.returncode == 0, run_.stderr
    grown_mib = json.loads(run_.stdout.strip().splitlines()[-1])["kib"] / 1024
    assert grown_mib < 32, f"peak memory grew by {grown_mib:.0f} MiB"


def _dense64(q, k, v, g, mask, window, rotary, causal, mode):
    """Float64 autograd of softmax(QKᵀ·scale + the dense [L, L] mask)·V, with the mode's factors."""
    heads = q.shape[1]
    leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    rot = None if rotary is None else tuple(t.double() for t in rotary)
    qq, kk = ref.apply_rotary(leaves[0], rot), ref.repeat_kv(ref.apply_rotary(leaves[1], rot), heads)
    dense = ref.dense_mask(mask, window, q.shape[-2], causal=causal)
    scores = qq @ kk.transpose(-1, -2) * q.shape[-1] ** -0.5
    if dense is not None:
        scores = scores + (dense if dense.dim() == 4 else dense[:, None, None, :]).double()
    probs = torch.softmax(scores, dim=-1)
    if mode == "cp_lrp":
        probs = probs.detach()
    out = probs @ ref.repeat_kv(leaves[2], heads)
    grads = torch.autograd.grad(out, leaves, g.double(), allow_unused=True)
    factors = {"grad": (1, 1, 1), "attnlrp": (0.25, 0.25, 0.5), "cp_lrp": (None, None, 1)}[mode]
    return out.detach(), [None if f is None else f * t for f, t in zip(factors, grads)]


@pytest.mark.parametrize("sdpa", [False, True], ids=["aten-cpu", "sdpa"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[6], CASES[7]], ids=case_id)
def test_reference_chunked_path_equals_the_dense_mask(monkeypatch, case, mode, sdpa):
    """The reference runs windows and causal attention in chunks of 64 query rows here (each with its
    key slice and its block of the mask, no [L, L] tensor): the same as float64 attention under the
    whole dense mask, on both of its fused paths (aten's CPU kernel; SDPA, CUDA's path, run here)."""
    monkeypatch.setattr(ref, "CHUNK_ELEMENTS", 1)
    if sdpa:
        monkeypatch.setattr(ref, "SDPA_DEVICES", ("cpu", "cuda"))
    q, k, v, g, mask, window, rotary, causal = inputs(case, F32)
    assert len(ref.chunks(mask, window, causal, 1, q.shape[-2])) > 1
    out, _, grads = run(ref.KERNELS, q, k, v, g, mask, window, rotary, causal, mode)
    out64, want = _dense64(q, k, v, g, mask, window, rotary, causal, mode)
    torch.testing.assert_close(out.double(), out64, atol=2e-6, rtol=1e-5)  # float32 vs float64
    for a, b in zip(grads, want):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)  # float32 vs float64, sums of ≤ 150 terms
