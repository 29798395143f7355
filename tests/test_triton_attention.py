"""Triton attention (FlashAttention-style forward, AttnLRP / CP-LRP backward) against the torch
reference; runs through Triton's interpreter on the CPU when there is no GPU (small shapes)."""

import pytest
import torch

from triton_loader import import_triton_backend  # tests/ helper

tk = import_triton_backend()
DEVICE = "cpu" if tk.INTERPRETED else "cuda"

import math  # noqa: E402

from lrp_kernels.errors import InputError  # noqa: E402
from lrp_kernels.ops import _torch_backend as ref  # noqa: E402

PAD = torch.finfo(torch.float32).min
MODES = ("grad", "attnlrp", "cp_lrp")

# (dtype, atol, rtol) — the kernel keeps scores, softmax statistics and products in float32 and
# rounds once at the end, while the reference rounds scores, probabilities and each product to the
# input dtype. Measured against float64 math the kernel is the more accurate of the two (bf16 O:
# kernel 4e-3, reference 1.3e-2), so these bounds are the reference's own error plus one rounding.
DTYPES = [
    # float32: same math, only summation order differs (blocked online softmax vs one pass).
    pytest.param(torch.float32, 2e-5, 2e-5, id="float32"),
    # float16: 10-bit mantissa; measured max difference 1e-3 on values up to ~1.
    pytest.param(torch.float16, 2e-3, 2e-3, id="float16"),
    # bfloat16: 7-bit mantissa, 8× coarser than fp16; measured max difference 1.6e-2.
    pytest.param(torch.bfloat16, 2.5e-2, 2e-2, id="bfloat16"),
]

# (B, H, L, D, lengths of the unpadded prefix per batch element or None for no mask, layout)
# lengths 0 = a fully padded sequence; "blhd" = q, k, v are permuted views of [B, L, H, D] tensors.
CASES = [
    (2, 2, 37, 32, (37, 30), "bhld"),  # non-power-of-two L, ragged mask, head dim 32 (MiniLM)
    (2, 1, 45, 64, (45, 0), "blhd"),  # a fully padded sequence, head dim 64 (BERT-base), strided
    (1, 2, 16, 64, None, "bhld"),  # no mask, L equal to one block
    (1, 1, 1, 32, (1,), "bhld"),  # a single token
    (1, 1, 23, 40, (9,), "bhld"),  # head dim that is not a power of two (BLOCK_D > D)
]


def _inputs(case, dtype, seed=0):
    bsz, heads, length, dim, lengths, layout = case
    gen = torch.Generator().manual_seed(seed)

    def tensor():
        shape = (bsz, length, heads, dim) if layout == "blhd" else (bsz, heads, length, dim)
        t = torch.randn(shape, generator=gen).to(dtype).to(DEVICE)
        return t.permute(0, 2, 1, 3) if layout == "blhd" else t

    q, k, v, g = tensor(), tensor(), tensor(), tensor()
    mask = None
    if lengths is not None:
        mask = torch.zeros(bsz, length)
        for b, n in enumerate(lengths):
            mask[b, n:] = PAD
        mask = mask.to(DEVICE)
    return q, k, v, g, mask, 1.0 / math.sqrt(dim)


def _close(actual, expected, atol, rtol):
    torch.testing.assert_close(actual.float().cpu(), expected.float().cpu(), atol=atol, rtol=rtol)


def _eager(g, q, k, v, mask, scale, mode):
    """The contract's formulas with the reference's softmax host functions, in the input dtype."""
    probs = ref.softmax_forward(torch.matmul(q, k.transpose(-1, -2)), mask, scale)
    grad_v = torch.matmul(probs.transpose(-1, -2), g)
    if mode == "cp_lrp":
        return torch.matmul(probs, v), (None, None, grad_v)
    half = 0.5 if mode == "attnlrp" else 1.0
    grad_s = ref.softmax_backward(torch.matmul(g, v.transpose(-1, -2)), probs, scale * half * half)
    grads = (torch.matmul(grad_s, k), torch.matmul(grad_s.transpose(-1, -2), q), grad_v * half)
    return torch.matmul(probs, v), grads


def _reference(g, q, k, v, mask, scale, mode, fully_padded):
    # For grad/attnlrp on the CPU the reference runs aten's fused CPU attention, whose backward is
    # wrong for a sequence whose keys are all padding (off by O(10) against float64 autograd, see
    # test_fully_padded_sequence_backward_is_exact); such cases use the reference's eager formulas.
    if fully_padded:
        return _eager(g, q, k, v, mask, scale, mode)
    out, saved = ref.attention_forward(q, k, v, mask, scale, mode)
    return out, ref.attention_backward(g, q, k, v, mask, scale, mode, saved)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:4])) + f"-{c[4]}-{c[5]}")
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_forward_and_every_mode_match_reference(case, dtype, atol, rtol):
    q, k, v, g, mask, scale = _inputs(case, dtype)
    fully_padded = case[4] is not None and 0 in case[4]
    for mode in MODES:
        ref_out, want = _reference(g, q, k, v, mask, scale, mode, fully_padded)
        out, saved = tk.attention_forward(q, k, v, mask, scale, mode)
        _close(out, ref_out, atol, rtol)
        # never the probabilities: everything saved is at most [B, H, L, D]
        assert all(t.numel() <= q.numel() or t is out for t in saved)
        args = (None, None, None) if mode == "cp_lrp" else (q, k, v)  # how the op calls cp_lrp
        got = tk.attention_backward(g, *args, mask, scale, mode, saved)
        for name, a, b in zip(("g_q", "g_k", "g_v"), got, want):
            if b is None:
                assert a is None, f"{mode}: {name} must be None"
            else:
                assert a.dtype == dtype and a.shape == q.shape
                _close(a, b, atol, rtol)


def test_attnlrp_is_quarter_and_half_of_plain_gradient_and_padded_keys_get_nothing():
    case = (2, 2, 37, 32, (37, 25), "bhld")
    q, k, v, g, mask, scale = _inputs(case, torch.float32, seed=1)

    def backward(mode):
        _, saved = tk.attention_forward(q, k, v, mask, scale, mode)
        return tk.attention_backward(g, q, k, v, mask, scale, mode, saved)

    plain, lrp = backward("grad"), backward("attnlrp")
    torch.testing.assert_close(lrp[0], plain[0] / 4, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(lrp[1], plain[1] / 4, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(lrp[2], plain[2] / 2, rtol=1e-6, atol=1e-7)
    # padded keys of sequence 1 get exactly zero gradient (their probabilities underflow to 0)
    for t in plain[1:]:
        assert torch.count_nonzero(t[1, :, 25:]) == 0
        assert torch.count_nonzero(t[1, :, :25]) > 0


def test_fully_padded_sequence_attends_uniformly_like_the_reference():
    q, k, v, _, mask, scale = _inputs((1, 1, 19, 32, (0,), "bhld"), torch.float32, seed=2)
    out, _ = tk.attention_forward(q, k, v, mask, scale, "attnlrp")
    torch.testing.assert_close(out[0, 0], v[0, 0].mean(dim=0).expand(19, 32), rtol=1e-5, atol=1e-6)


def test_fully_padded_sequence_backward_is_exact():
    """Against float64 autograd of softmax(QKᵀ·scale + mask)·V: the sequence whose keys are all
    padding attends uniformly, and its gradients follow from that like any other row's."""
    q, k, v, g, mask, scale = _inputs((2, 1, 45, 64, (45, 0), "bhld"), torch.float32, seed=3)
    leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    scores = torch.matmul(leaves[0], leaves[1].transpose(-1, -2)) * scale + mask.double()[:, None, None, :]
    out = torch.matmul(torch.softmax(scores, dim=-1), leaves[2])
    exact = torch.autograd.grad(out, leaves, g.double())
    got = tk.attention_backward(g, q, k, v, mask, scale, "grad", tk.attention_forward(q, k, v, mask, scale, "grad")[1])
    for a, b in zip(got, exact):
        torch.testing.assert_close(a.double(), b, atol=2e-6, rtol=1e-5)  # float32 vs float64


def test_float64_is_handed_to_the_reference():
    q, k, v, g, mask, scale = _inputs(CASES[0], torch.float64)
    out, saved = tk.attention_forward(q, k, v, mask, scale, "attnlrp")
    torch.testing.assert_close(out, ref.attention_forward(q, k, v, mask, scale, "attnlrp")[0], rtol=0, atol=0)
    gq, gk, gv = tk.attention_backward(g, q, k, v, mask, scale, "attnlrp", saved)
    assert gq.dtype == torch.float64


def test_bad_input_raises_one_line_errors():
    q, k, v, g, mask, scale = _inputs(CASES[0], torch.float32)
    with pytest.raises(InputError, match="unknown attention mode"):
        tk.attention_forward(q, k, v, mask, scale, "softmax")
    with pytest.raises(InputError, match="mask must have shape"):
        tk.attention_forward(q, k, v, mask[:, :5], scale, "grad")
    with pytest.raises(InputError, match="q, k, v must all have shape"):
        tk.attention_forward(q, k[:, :, :5], v, mask, scale, "grad")
    _, ref_saved = ref.attention_forward(q, k, v, mask, scale, "grad")
    with pytest.raises(InputError, match="of the Triton forward"):
        tk.attention_backward(g, q, k, v, mask, scale, "grad", ref_saved)
