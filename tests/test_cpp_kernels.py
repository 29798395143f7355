"""The compiled kernels (``lrp_kernels._C`` through ``lrp_kernels._cpp_backend``) against the torch
reference host functions of ``lrp_kernels.ops._torch_backend``.

Every kernel is checked for float32, float16 and bfloat16, hidden sizes that are not multiples of
8 or 16, sequence lengths 1 … 513, fully padded rows and non-contiguous inputs; on the CPU for
every instruction set compiled in, on CUDA when a GPU is present (those tests skip otherwise).
"""

from __future__ import annotations

import pytest
import torch

from lrp_kernels import _cpp_backend as cpp
from lrp_kernels.backend import resolve
from lrp_kernels.errors import InputError
from lrp_kernels.ops import _torch_backend as ref

NOT_BUILT = cpp.available()
needs_ext = pytest.mark.skipif(NOT_BUILT is not None, reason=str(NOT_BUILT))
HAS_GPU = torch.cuda.is_available() and cpp.has_cuda()

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA device and a CUDA build of _C"),
        ],
    ),
]

# (dtype, atol, rtol). Kernel and reference both compute in float32 and round once to the output
# dtype, so the outputs differ by the float32 discrepancy, or by one rounding step of the output
# dtype where that discrepancy straddles a rounding boundary.
DTYPES = [
    # float32: summation order (vectorized partial sums vs torch's cascade sums) and the kernels'
    # polynomial exp/erf (a few ulp; torch's own CPU erf is off by up to 1.5e-7) -> ~1e-6 abs.
    pytest.param(torch.float32, 1e-5, 1e-5, id="fp32"),
    # float16: one ulp is at most 2^-10 (9.8e-4) of the value; atol covers subnormal outputs.
    pytest.param(torch.float16, 1e-5, 1e-3, id="fp16"),
    # bfloat16: one ulp is at most 2^-7 (7.8e-3) of the value.
    pytest.param(torch.bfloat16, 1e-5, 8e-3, id="bf16"),
]

HIDDEN = [1, 7, 33, 384, 770]  # not multiples of 8/16 (1, 7, 33, 770) and MiniLM's 384
KEYS = [1, 7, 64, 129, 513]  # sequence lengths 1 … 513
MIN = torch.finfo(torch.float32).min


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.device == expected.device
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol)


def randn(*shape, dtype=torch.float32, device="cpu", seed=0, scale=1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)


def with_special_values(u: torch.Tensor) -> torch.Tensor:
    """Put zeros, |u| < 1e-6 (the GELU guard), ±eps-sized and large values into u."""
    flat = u.reshape(-1)
    special = torch.tensor([0.0, -0.0, 3e-7, -5e-7, 1e-6, -1e-6, 1e-3, -1e-3, 8.0, -8.0, 30.0, -30.0])
    n = min(flat.numel(), special.numel())
    flat[:n] = special[:n].to(u.dtype)
    return u


def noncontiguous(t: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as t, laid out as a transposed, row-strided or column-strided view."""
    if kind == "transposed":  # last dim not contiguous: copied by the glue
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "row_strided":  # rows further apart than their length: passed as it is
        wide = torch.zeros(*t.shape[:-1], t.shape[-1] + 5, dtype=t.dtype, device=t.device)
        wide[..., : t.shape[-1]] = t
        return wide[..., : t.shape[-1]]
    if kind == "col_strided":  # every other element
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        return wide[..., ::2]
    raise ValueError(kind)


# ------------------------------------------------------------------------------------ build
def test_extension_is_built():
    """The suite expects `pip install -e .` to have built the module (a missing build fails here
    once; the kernel tests below then skip)."""
    assert NOT_BUILT is None, NOT_BUILT


@needs_ext
def test_backend_resolves_to_compiled_module():
    name, module = resolve("cpp", "cpu")
    assert name == "cpp" and module is cpp
    assert "cpu" in cpp.devices
    assert resolve("auto", "cpu")[0] == "cpp"


# -------------------------------------------------------------------------------- LayerNorm
@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("lead", [(1,), (3, 5)], ids=["1row", "3x5rows"])
@pytest.mark.parametrize("affine", ["wb", "w", "none"])
def test_layer_norm_forward(device, dtype, atol, rtol, hidden, lead, affine):
    x = randn(*lead, hidden, dtype=dtype, device=device, scale=2.0) + 0.5
    w = randn(hidden, device=device, seed=1) if affine != "none" else None
    b = randn(hidden, device=device, seed=2) if affine == "wb" else None
    y, mean, rstd = cpp.layer_norm_forward(x, w, b, 1e-12)
    y_ref, mean_ref, rstd_ref = ref.layer_norm_forward(x, w, b, 1e-12)
    if hidden == 1:
        # Degenerate size: mean = x, var = 0, rstd = 1/sqrt(eps) = 1e6 and y = b exactly. The
        # reference (aten's native_layer_norm) computes y = x*(rstd*w) + (b - mean*rstd*w), which
        # cancels to ~1e6 ulp(x) here, so the exact values are the reference for this size.
        mean_ref = x.float().squeeze(-1)
        rstd_ref = torch.full_like(mean_ref, 1e6)
        y_ref = torch.zeros_like(y_ref) if b is None else b.expand_as(x).to(dtype).clone()
    assert_matches(y, y_ref, atol, rtol)
    # mean and 1/std are float32 statistics whatever the input dtype: float32 tolerance
    assert_matches(mean, mean_ref, 1e-6, 1e-5)
    assert_matches(rstd, rstd_ref, 1e-6, 1e-5)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("with_weight", [True, False], ids=["w", "no_w"])
def test_layer_norm_backward(device, dtype, atol, rtol, hidden, with_weight):
    g = randn(3, 5, hidden, dtype=dtype, device=device)
    w = randn(hidden, device=device, seed=1) if with_weight else None
    rstd = randn(3, 5, device=device, seed=2).abs() + 0.5
    assert_matches(cpp.layer_norm_backward(g, w, rstd), ref.layer_norm_backward(g, w, rstd), atol, rtol)


@needs_ext
@pytest.mark.parametrize("kind", ["transposed", "row_strided", "col_strided"])
def test_layer_norm_noncontiguous(kind):
    x = noncontiguous(randn(4, 6, 33, scale=3.0), kind)
    w, b = randn(33, seed=1), randn(33, seed=2)
    for a, e in zip(cpp.layer_norm_forward(x, w, b, 1e-5), ref.layer_norm_forward(x, w, b, 1e-5)):
        assert_matches(a, e, 1e-5, 1e-5)  # float32, see DTYPES
    g = noncontiguous(randn(4, 6, 33, seed=3), kind)
    rstd = randn(4, 6, seed=4).abs() + 0.5
    assert_matches(cpp.layer_norm_backward(g, w, rstd), ref.layer_norm_backward(g, w, rstd), 1e-5, 1e-5)


# ---------------------------------------------------------------------------------- softmax
def padding_mask(batch: int, keys: int, device) -> torch.Tensor:
    """Additive fp32 key mask: batch 0 unmasked, batch 1 with its second half padded, the last
    batch fully padded (its rows must come out uniform, as torch.softmax gives)."""
    mask = torch.zeros(batch, keys, device=device)
    mask[1, (keys + 1) // 2 :] = MIN
    mask[-1, :] = MIN
    return mask


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("keys", KEYS)
@pytest.mark.parametrize("masked", [True, False], ids=["mask", "no_mask"])
def test_softmax_forward(device, dtype, atol, rtol, keys, masked):
    scores = randn(3, 2, 5, keys, dtype=dtype, device=device, scale=4.0)
    mask = padding_mask(3, keys, device) if masked else None
    probs = cpp.softmax_forward(scores, mask, 0.125)
    assert_matches(probs, ref.softmax_forward(scores, mask, 0.125), atol, rtol)
    if masked:
        uniform = torch.full_like(probs[-1], 1.0 / keys)
        assert_matches(probs[-1], uniform, atol, rtol)
        if keys > 1:
            assert torch.all(probs[1, ..., (keys + 1) // 2 :] == 0)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("keys", KEYS)
def test_softmax_backward(device, dtype, atol, rtol, keys):
    probs = ref.softmax_forward(randn(2, 3, 4, keys, device=device, scale=3.0), None, 1.0).to(dtype)
    grad_p = randn(2, 3, 4, keys, dtype=dtype, device=device, seed=1)
    factor = 0.125 * 0.25  # scale * ½ * ½ of attnlrp
    assert_matches(
        cpp.softmax_backward(grad_p, probs, factor), ref.softmax_backward(grad_p, probs, factor), atol, rtol
    )


@needs_ext
@pytest.mark.parametrize("kind", ["transposed", "row_strided", "col_strided"])
def test_softmax_noncontiguous(kind):
    scores = noncontiguous(randn(2, 3, 7, 7, scale=3.0), kind)
    mask = noncontiguous(padding_mask(2, 7, "cpu"), "col_strided")
    assert_matches(cpp.softmax_forward(scores, mask, 0.5), ref.softmax_forward(scores, mask, 0.5), 1e-5, 1e-5)
    probs = noncontiguous(ref.softmax_forward(randn(2, 3, 7, 7, seed=2), None, 1.0), kind)
    grad_p = noncontiguous(randn(2, 3, 7, 7, seed=3), kind)
    assert_matches(cpp.softmax_backward(grad_p, probs, 0.3), ref.softmax_backward(grad_p, probs, 0.3), 1e-5, 1e-5)


@needs_ext
def test_softmax_mask_broadcast_over_heads_and_queries():
    """Row r of scores [B, H, Lq, Lk] takes mask row r // (H·Lq): a mask that differs per batch
    item only matches the reference when that mapping is right."""
    scores = randn(4, 3, 2, 9)
    mask = torch.zeros(4, 9)
    for b in range(4):
        mask[b, b + 1 :] = MIN
    assert_matches(cpp.softmax_forward(scores, mask, 1.0), ref.softmax_forward(scores, mask, 1.0), 1e-5, 1e-5)


# -------------------------------------------------------------------------------- eps_ratio
ELEMENTWISE_SHAPES = [(1,), (7,), (3, 33), (2, 5, 770), (4, 384)]


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("eps", [1e-6, 0.01, 1.0])
def test_eps_ratio(device, dtype, atol, rtol, shape, eps):
    z = with_special_values(randn(*shape, scale=2.0)).to(device=device, dtype=dtype)
    g = randn(*shape, dtype=dtype, device=device, seed=1)
    assert_matches(cpp.eps_ratio(g, z, eps), ref.eps_ratio(g, z, eps), atol, rtol)


@needs_ext
def test_eps_ratio_zero_eps_is_plain_gradient():
    g, z = randn(3, 7), randn(3, 7, seed=1)
    assert cpp.eps_ratio(g, z, 0.0) is g


# ------------------------------------------------------------------------------------- GELU
@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_forward(device, dtype, atol, rtol, shape, approximate):
    u = with_special_values(randn(*shape, scale=3.0)).to(device=device, dtype=dtype)
    assert_matches(cpp.gelu_forward(u, approximate), ref.gelu_forward(u, approximate), atol, rtol)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_backward(device, dtype, atol, rtol, shape, approximate):
    u = with_special_values(randn(*shape, scale=3.0)).to(device=device, dtype=dtype)
    g = randn(*shape, dtype=dtype, device=device, seed=1)
    assert_matches(cpp.gelu_backward(g, u, approximate), ref.gelu_backward(g, u, approximate), atol, rtol)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("eps", [0.0, 1e-6, 0.25])
def test_gelu_eps_ratio(device, dtype, atol, rtol, shape, approximate, eps):
    u = with_special_values(randn(*shape, scale=3.0)).to(device=device, dtype=dtype)
    g = randn(*shape, dtype=dtype, device=device, seed=1)
    assert_matches(
        cpp.gelu_eps_ratio(g, u, eps, approximate), ref.gelu_eps_ratio(g, u, eps, approximate), atol, rtol
    )


@needs_ext
def test_gelu_guard_gives_one_half():
    u = torch.tensor([0.0, 1e-7, -9e-7, 2e-6])
    g = torch.ones(4)
    out = cpp.gelu_backward(g, u, "none")
    assert out[:3].tolist() == [0.5, 0.5, 0.5]
    assert out[3].item() != 0.5


@needs_ext
def test_gelu_guard_is_the_reference_guard():
    """The C++/CUDA kernels' guard (kGeluGuard, csrc/kernels.h) is the torch reference's GELU_GUARD,
    as both compare in float32 (the reference's ``|u| < GELU_GUARD`` on a float32 tensor rounds the
    Python float to float32)."""
    as_float32 = torch.tensor(ref.GELU_GUARD, dtype=torch.float32).item()
    assert cpp._C.GELU_GUARD == as_float32

KERNELS = [  # csrc/kernels.h, LRP_KERNEL_LIST: one name per rule
    "linear_eps_ratio", "linear_gelu_eps_ratio", "layer_norm_forward", "layer_norm_backward",
    "activation_gelu_forward", "activation_gelu_backward", "attention_softmax_forward",
    "attention_softmax_backward", "cast",
]


@needs_ext
def test_bindings_are_the_kernel_list():
    """Every kernel is bound under its name (and name + ``_cuda`` in a CUDA build), nothing else."""
    bound = {n for n in dir(cpp._C) if callable(getattr(cpp._C, n)) and not n.startswith("_")}
    utilities = {"has_cuda", "cpu_isa", "supported_cpu_isas", "set_cpu_isa", "num_threads"}
    cuda = {k + "_cuda" for k in KERNELS} if cpp.has_cuda() else set()
    assert bound == set(KERNELS) | cuda | utilities


@needs_ext
def test_bindings_reject_negative_sizes():
    x = torch.zeros(2, 3)
    for size, (rows, cols) in {"rows": (-1, 3), "cols": (2, -1)}.items():
        with pytest.raises(ValueError, match=f"{size} must be non-negative"):
            cpp._C.linear_eps_ratio(0, rows, cols, x.data_ptr(), 3, x.data_ptr(), 3, 0.1, x.data_ptr(), 3)
    with pytest.raises(ValueError, match="n must be non-negative"):
        cpp._C.cast(0, 0, -1, x.data_ptr(), x.data_ptr())

@needs_ext
@pytest.mark.parametrize("kind", ["transposed", "row_strided", "col_strided", "expanded"])
def test_elementwise_noncontiguous(kind):
    if kind == "expanded":  # stride-0 rows: read in place
        u = randn(1, 33, scale=3.0).expand(6, 33)
        g = randn(6, 33, seed=1)
    else:
        u = noncontiguous(randn(6, 33, scale=3.0), kind)
        g = noncontiguous(randn(6, 33, seed=1), kind)
    # float32 tolerances, see DTYPES
    assert_matches(cpp.eps_ratio(g, u, 0.1), ref.eps_ratio(g, u, 0.1), 1e-5, 1e-5)
    assert_matches(cpp.gelu_forward(u, "none"), ref.gelu_forward(u, "none"), 1e-5, 1e-5)
    assert_matches(cpp.gelu_backward(g, u, "tanh"), ref.gelu_backward(g, u, "tanh"), 1e-5, 1e-5)
    assert_matches(cpp.gelu_eps_ratio(g, u, 0.1, "none"), ref.gelu_eps_ratio(g, u, 0.1, "none"), 1e-5, 1e-5)


@needs_ext
def test_gelu_unknown_approximate_is_input_error():
    with pytest.raises(InputError, match="approximate"):
        cpp.gelu_forward(torch.zeros(3), "sigmoid")


@needs_ext
def test_float64_runs_the_reference():
    """float64 is not a kernel dtype: the glue hands it to the torch reference, in float64."""
    u = randn(3, 7).double()
    out = cpp.gelu_eps_ratio(u, u, 0.1, "none")
    assert out.dtype == torch.float64
    assert torch.equal(out, ref.gelu_eps_ratio(u, u, 0.1, "none"))


# ---------------------------------------------------------------------- attention host functions
@needs_ext
@pytest.mark.parametrize("mode", ["attnlrp", "cp_lrp", "grad"])
def test_attention_host_functions(mode):
    """Whichever way the backend runs attention (its softmax kernels around matmuls, or the
    reference's fused kernel), forward and backward agree with the reference. Fully padded batch
    items are left out: aten's fused CPU attention, which the reference may use, does not give
    them the uniform softmax (the softmax tests cover them)."""
    q, k, v = (randn(3, 3, 9, 8, seed=s) for s in range(3))
    mask = torch.zeros(3, 9)
    mask[1, 5:] = MIN
    mask[2, 1:] = MIN
    out, saved = cpp.attention_forward(q, k, v, mask, 8**-0.5, mode)
    out_ref, saved_ref = ref.attention_forward(q, k, v, mask, 8**-0.5, mode)
    assert_matches(out, out_ref, 1e-5, 1e-5)  # float32, see DTYPES
    grad_out = randn(3, 3, 9, 8, seed=4)
    grads = cpp.attention_backward(grad_out, q, k, v, mask, 8**-0.5, mode, saved)
    grads_ref = ref.attention_backward(grad_out, q, k, v, mask, 8**-0.5, mode, saved_ref)
    for a, e in zip(grads, grads_ref):
        if e is None:
            assert a is None
        else:
            assert_matches(a, e, 1e-5, 1e-5)


# --------------------------------------------------------------- instruction sets, conversions
@pytest.fixture
def isa_restore():
    if NOT_BUILT is not None:
        pytest.skip(NOT_BUILT)
    previous = cpp._C.cpu_isa()
    yield
    cpp._C.set_cpu_isa(previous)


@needs_ext
@pytest.mark.parametrize("isa", ["base", "avx2", "avx512"])
def test_every_instruction_set(isa, isa_restore):
    if NOT_BUILT is None and isa not in cpp._C.supported_cpu_isas():
        pytest.skip(f"{isa} not compiled in or not supported by this CPU")
    cpp._C.set_cpu_isa(isa)
    assert cpp._C.cpu_isa() == isa
    for dtype, atol, rtol in [(torch.float32, 1e-5, 1e-5), (torch.bfloat16, 1e-5, 8e-3)]:  # see DTYPES
        x = randn(5, 770, dtype=dtype, scale=3.0)
        g = randn(5, 770, dtype=dtype, seed=1)
        w = randn(770, seed=2)
        for a, e in zip(cpp.layer_norm_forward(x, w, w, 1e-5), ref.layer_norm_forward(x, w, w, 1e-5)):
            assert_matches(a, e, atol, max(rtol, 1e-5))
        rstd = ref.layer_norm_forward(x, w, w, 1e-5)[2]
        assert_matches(cpp.layer_norm_backward(g, w, rstd), ref.layer_norm_backward(g, w, rstd), atol, rtol)
        s = randn(3, 2, 4, 129, dtype=dtype, scale=4.0)
        mask = padding_mask(3, 129, "cpu")
        probs = ref.softmax_forward(s, mask, 0.2)
        assert_matches(cpp.softmax_forward(s, mask, 0.2), probs, atol, rtol)
        gp = randn(3, 2, 4, 129, dtype=dtype, seed=3)
        assert_matches(cpp.softmax_backward(gp, probs, 0.1), ref.softmax_backward(gp, probs, 0.1), atol, rtol)
        assert_matches(cpp.eps_ratio(g, x, 0.01), ref.eps_ratio(g, x, 0.01), atol, rtol)
        for approx in ("none", "tanh"):
            assert_matches(cpp.gelu_forward(x, approx), ref.gelu_forward(x, approx), atol, rtol)
            assert_matches(
                cpp.gelu_eps_ratio(g, x, 0.01, approx), ref.gelu_eps_ratio(g, x, 0.01, approx), atol, rtol
            )


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    out = torch.empty(t.shape, dtype=dtype, device=t.device)
    codes = cpp._DTYPE_CODES
    if t.device.type == "cuda":
        cpp._C.cast_cuda(codes[t.dtype], codes[dtype], t.numel(), t.data_ptr(), out.data_ptr(),
                         t.device.index, torch.cuda.current_stream(t.device).cuda_stream)
    else:
        cpp._C.cast(codes[t.dtype], codes[dtype], t.numel(), t.data_ptr(), out.data_ptr())
    return out


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_conversions_match_torch_bit_for_bit(device, half, isa_restore):
    """The kernels' own float16/bfloat16 conversions: every 16-bit pattern widened, and float32
    patterns (random, plus rounding ties, overflow, subnormals, inf, NaN) narrowed, equal torch's."""
    isas = cpp._C.supported_cpu_isas() if device == "cpu" else [None]
    every = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).view(half).to(device)
    gen = torch.Generator().manual_seed(0)
    bits = torch.randint(-(1 << 31), (1 << 31) - 1, (1 << 18,), generator=gen, dtype=torch.int64)
    floats = bits.to(torch.int32).view(torch.float32)
    edges = torch.tensor(
        [0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e9, 6.1e-5, 5.96e-8, 2.98e-8, 1e-40, 1.0 + 2**-11,
         1.0 + 3 * 2**-11, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 3.3895e38, float("inf"), -float("inf"), float("nan")]
    )
    floats = torch.cat([floats, edges, -edges]).to(device)
    for isa in isas:
        if isa is not None:
            cpp._C.set_cpu_isa(isa)
        wide = _cast(every, torch.float32)
        expected = every.float()
        assert torch.equal(wide.isnan(), expected.isnan())
        finite = ~expected.isnan()
        assert torch.equal(wide[finite].view(torch.int32), expected[finite].view(torch.int32)), isa
        narrow = _cast(floats, half)
        expected = floats.to(half)
        assert torch.equal(narrow.isnan(), expected.isnan())
        finite = ~expected.isnan()
        assert torch.equal(narrow[finite].view(torch.int16), expected[finite].view(torch.int16)), isa


# ------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def minilm(minilm_dir):
    import warnings

    from lrp_kernels.models import load_pretrained

    torch.manual_seed(0)  # the checkpoint has no classifier head: a seeded random one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_pretrained(minilm_dir, num_labels=2)


def padded_batch(batch: int, length: int, seed: int = 0):
    """Random word pieces between [CLS] and [SEP], every example shorter than the previous one."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    ids[:, 0] = 101
    for i in range(batch):
        n = max(2, length - (length // batch) * i)
        ids[i, n - 1] = 102
        ids[i, n:] = 0
        mask[i, n:] = 0
    return ids, mask


@needs_ext
@pytest.mark.slow
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp", "lrp_epsilon"])
def test_attribute_cpp_equals_torch_on_minilm(minilm, method):
    """attribute(..., backend="cpp") equals backend="torch" on the pretrained MiniLM (fp32) to
    1e-5, and is no further from the float64 result than the torch backend (within 2x)."""
    import lrp_kernels

    ids, mask = padded_batch(3, 48)
    cpp_scores = lrp_kernels.attribute(minilm, ids, mask, method=method, backend="cpp").scores
    torch_scores = lrp_kernels.attribute(minilm, ids, mask, method=method, backend="torch").scores
    # float32 end to end: kernel-vs-eager rounding differences through 6 layers stay ~1e-7
    torch.testing.assert_close(cpp_scores, torch_scores, atol=1e-5, rtol=1e-5)
    assert torch.all(cpp_scores[mask == 0] == 0)
    exact = lrp_kernels.attribute(minilm.double(), ids, mask, method=method, backend="torch").scores
    minilm.float()
    err_cpp = (cpp_scores.double() - exact).abs().max().item()
    err_torch = (torch_scores.double() - exact).abs().max().item()
    assert err_cpp <= 2 * err_torch + 1e-7, (err_cpp, err_torch)
