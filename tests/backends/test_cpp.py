"""The ``cpp`` and ``cuda`` backends as a whole: the compiled module ``lrp_kernels._C`` is built,
registered, switches CPU instruction sets, converts 16-bit floats like torch, and end-to-end
attributions on the pretrained MiniLM equal the torch backend's. The kernels rule by rule are
tested in ``tests/ops/test_<rule>.py``."""

from __future__ import annotations

import warnings

import pytest
import torch

from lrp_kernels.backends import cpp, registry
from lrp_kernels.backends.cpp import _glue

NOT_BUILT = cpp.CPP.why_unavailable()
needs_ext = pytest.mark.skipif(NOT_BUILT is not None, reason=str(NOT_BUILT))
_C = _glue._C
HAS_GPU = torch.cuda.is_available() and _glue.has_cuda()

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA device and a CUDA build of _C"),
    ]),
]


# ------------------------------------------------------------------------------------ build
def test_extension_is_built():
    """The suite expects `pip install -e .` to have built the module (a missing build fails here
    once; the kernel tests then skip)."""
    assert NOT_BUILT is None, NOT_BUILT


@needs_ext
def test_backend_resolves_to_the_compiled_kernels():
    assert registry.resolve("cpp", "cpu") is cpp.CPP
    assert registry.resolve("auto", "cpu") is cpp.CPP
    assert cpp.CPP.devices == ("cpu",) and cpp.CUDA.devices == ("cuda",)
    # one set of host functions for both devices: the glue picks the CPU or CUDA kernels per tensor;
    # attention on cuda declares its own set, which runs the variants on the Triton kernels and the
    # rest on these (tests/ops/test_attention_variants.py)
    for rule in ("linear", "layer_norm", "activation", "rms_norm", "gated_mlp"):
        assert getattr(cpp.CPP, rule) is getattr(cpp.CUDA, rule)
    assert cpp.CPP.attention is cpp.attention.KERNELS and cpp.CUDA.attention is cpp.attention.CUDA_KERNELS
    assert cpp.CPP.rms_norm is cpp.rms_norm.KERNELS and cpp.CPP.gated_mlp is cpp.gated_mlp.KERNELS


@needs_ext
def test_cuda_backend_says_why_it_cannot_run():
    reason = registry.unavailable_reason("cuda", "cuda")
    if not _glue.has_cuda():
        assert reason == "lrp_kernels._C was built without CUDA (set LRP_KERNELS_CUDA=1 and reinstall)"
    elif not torch.cuda.is_available():
        assert reason == "no CUDA device is available on this machine"
    else:
        assert reason is None


# --------------------------------------------------------------- instruction sets, conversions
@pytest.fixture
def isa_restore():
    if NOT_BUILT is not None:
        pytest.skip(NOT_BUILT)
    previous = _C.cpu_isa()
    yield
    _C.set_cpu_isa(previous)


@needs_ext
def test_instruction_set_switch(isa_restore):
    supported = list(_C.supported_cpu_isas())
    assert supported[0] == "base" and set(supported) <= {"base", "avx2", "avx512"}
    for isa in supported:
        _C.set_cpu_isa(isa)
        assert _C.cpu_isa() == isa
    with pytest.raises(ValueError, match="not compiled in or not supported by this CPU"):
        _C.set_cpu_isa("sse9")
    assert _C.cpu_isa() == supported[-1]  # a refused switch leaves the current one


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    out = torch.empty(t.shape, dtype=dtype, device=t.device)
    codes = _glue.DTYPE_CODES
    if t.device.type == "cuda":
        _C.cast_cuda(codes[t.dtype], codes[dtype], t.numel(), t.data_ptr(), out.data_ptr(),
                     t.device.index, torch.cuda.current_stream(t.device).cuda_stream)
    else:
        _C.cast(codes[t.dtype], codes[dtype], t.numel(), t.data_ptr(), out.data_ptr())
    return out


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_conversions_match_torch_bit_for_bit(device, half, isa_restore):
    """The kernels' own float16/bfloat16 conversions: every 16-bit pattern widened, and float32
    patterns (random, plus rounding ties, overflow, subnormals, inf, NaN) narrowed, equal torch's."""
    isas = _C.supported_cpu_isas() if device == "cpu" else [None]
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
            _C.set_cpu_isa(isa)
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


@needs_ext
def test_gelu_guard_is_the_reference_guard():
    """The C++/CUDA kernels' guard (kGeluGuard, csrc/kernels.h) is the torch reference's GELU_GUARD,
    as both compare in float32 (the reference's ``|u| < GELU_GUARD`` on a float32 tensor rounds the
    Python float to float32)."""
    from lrp_kernels.backends.torch.activation import GELU_GUARD

    assert _C.GELU_GUARD == torch.tensor(GELU_GUARD, dtype=torch.float32).item()


@needs_ext
def test_gated_activation_codes_are_the_kernels():
    """The glue's codes of the gated MLP activations are csrc/kernels.h's (GeluApprox, GatedFn)."""
    from lrp_kernels.backends.cpp.gated_mlp import FN_CODES

    assert FN_CODES == {"gelu": _C.GELU_ERF, "gelu_tanh": _C.GELU_TANH, "silu": _C.GATED_SILU}


KERNELS = [  # csrc/kernels.h, LRP_KERNEL_LIST: one name per rule
    "linear_eps_ratio", "linear_gelu_eps_ratio", "layer_norm_forward", "layer_norm_backward",
    "rms_norm_forward", "rms_norm_backward", "gated_mlp_forward", "gated_mlp_backward",
    "activation_gelu_forward", "activation_gelu_backward", "attention_softmax_forward",
    "attention_softmax_backward", "cast",
]
CPU_KERNELS = ["attention_blocked_forward", "attention_blocked_backward"]  # LRP_CPU_KERNEL_LIST: no CUDA twin


@needs_ext
def test_bindings_are_the_kernel_list():
    """Every kernel is bound under its name (and name + ``_cuda`` in a CUDA build, except the CPU-only
    kernels), nothing else."""
    bound = {n for n in dir(_C) if callable(getattr(_C, n)) and not n.startswith("_")}
    utilities = {"has_cuda", "cpu_isa", "supported_cpu_isas", "set_cpu_isa", "num_threads"}
    cuda = {k + "_cuda" for k in KERNELS} if _glue.has_cuda() else set()
    assert bound == set(KERNELS) | set(CPU_KERNELS) | cuda | utilities


@needs_ext
def test_bindings_reject_negative_sizes():
    x = torch.zeros(2, 3)
    for size, (rows, cols) in {"rows": (-1, 3), "cols": (2, -1)}.items():
        with pytest.raises(ValueError, match=f"{size} must be non-negative"):
            _C.linear_eps_ratio(0, rows, cols, x.data_ptr(), 3, x.data_ptr(), 3, 0.1, x.data_ptr(), 3)
    with pytest.raises(ValueError, match="n must be non-negative"):
        _C.cast(0, 0, -1, x.data_ptr(), x.data_ptr())
