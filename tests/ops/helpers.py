"""Shared by ``tests/ops/test_<rule>.py``: the backends that run here, the shapes, the tolerances.

Each rule's test file checks (a) the torch reference (``lrp_kernels.backends.torch``) against an
explicit float64 computation of the rule's math, (b) the autograd op and its functional API, and
(c) every other backend against the torch reference. A :class:`Target` is one backend with the
device its tensors live on in these tests; :data:`KERNEL_BACKENDS` parametrizes (c):

* ``cpp`` on the CPU (skipped when ``lrp_kernels._C`` is not built), under every instruction set
  this CPU supports where a test asks for it (:data:`CPU_ISAS`);
* ``cuda`` on a GPU (skipped without one, or without a CUDA build of ``_C``; marked ``gpu``);
* ``triton`` compiled on a GPU or, without one, through Triton's interpreter on CPU tensors
  (skipped when Triton is not installed).

``cpp`` and ``cuda`` run the same ``csrc`` kernels (the *compiled* family) and share one tolerance
row; Triton's kernels keep their own rows. Every tolerance says why it is what it is.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass

# First: sets TRITON_INTERPRET=1 (no GPU) before anything here can import the Triton backend.
from triton_loader import load_triton_backend  # noqa: I001  (tests/ helper)

import pytest
import torch

from lrp_kernels.backends import registry
from lrp_kernels.backends.contract import Backend

try:
    from lrp_kernels import _C  # only for the instruction-set switch
except ImportError:
    _C = None

_TRITON_PACKAGE, _TRITON_REASON = load_triton_backend()

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
F64 = torch.float64
PAD = torch.finfo(torch.float32).min  # the additive mask's value at padding


# ------------------------------------------------------------------------------- backends here
@dataclass(frozen=True)
class Target:
    """A backend and the device its tensors live on in these tests."""

    name: str  # the registry's name
    device: str
    family: str  # "compiled" (the csrc kernels: cpp and cuda) or "triton": its tolerance rows
    backend: Backend | None  # None when it cannot run here
    reason: str | None  # why it cannot run here

    @property
    def id(self) -> str:
        return f"{self.name}-{self.device}"

    def param(self):
        marks = [pytest.mark.skipif(self.reason is not None, reason=str(self.reason))]
        if self.device == "cuda":
            marks.append(pytest.mark.gpu)
        return pytest.param(self, id=self.id, marks=marks)

    def module(self, rule: str):
        """This backend's module of ``rule`` (its kernels, including those outside the contract)."""
        package = "cpp" if self.family == "compiled" else self.name
        return importlib.import_module(f"lrp_kernels.backends.{package}.{rule}")

    def tol(self, kind: str, dtype: torch.dtype) -> tuple[float, float]:
        """(atol, rtol) of this backend's ``kind`` of result in ``dtype`` (see :data:`TOLERANCES`)."""
        rows = TOLERANCES[kind]
        tol = (rows.get(self.family) or rows["*"])[dtype]
        return tol.atol, tol.rtol


def _registered(name: str, device: str) -> Target:
    backend, reason = registry.load(name)
    if backend is not None:
        reason = backend.unavailable_reason(device)
    return Target(name, device, "compiled", backend, reason)


CPP = _registered("cpp", "cpu")
CUDA = _registered("cuda", "cuda")
TRITON = Target(
    "triton",
    "cuda" if torch.cuda.is_available() else "cpu",
    "triton",
    None if _TRITON_PACKAGE is None else _TRITON_PACKAGE.BACKEND,
    _TRITON_REASON,
)

#: the csrc kernels on every device (their host functions outside the contract included)
COMPILED = [CPP.param(), CUDA.param()]
#: every backend that is not the reference
KERNEL_BACKENDS = [CPP.param(), CUDA.param(), TRITON.param()]


def cpu_isa_params():
    """One param per instruction set of the CPU kernels, skipped where not compiled in or not
    supported by this CPU."""
    supported = [] if _C is None else list(_C.supported_cpu_isas())
    return [
        pytest.param(isa, id=isa, marks=pytest.mark.skipif(
            isa not in supported, reason=CPP.reason or f"{isa} not compiled in or not supported by this CPU"))
        for isa in CPU_ISAS
    ]


def isa_inputs():
    """(dtype, x, g) of the instruction-set checks: [5, 770] float32 and bfloat16 tensors (770: a
    vector body and a scalar tail for every vector width)."""
    for dtype in (F32, BF16):
        yield dtype, randn(5, 770, dtype=dtype, scale=3.0), randn(5, 770, dtype=dtype, seed=1)


@contextlib.contextmanager
def cpu_isa(isa: str):
    """Run the CPU kernels of instruction set ``isa`` inside the block, then restore the previous one."""
    previous = _C.cpu_isa()
    _C.set_cpu_isa(isa)
    try:
        assert _C.cpu_isa() == isa
        yield
    finally:
        _C.set_cpu_isa(previous)


# -------------------------------------------------------------------------------------- shapes
#: (a), (b): the reference and the ops against float64 math
OP_SHAPES = [(1, 1, 7), (2, 5, 33), (3, 17, 64)]
#: hidden sizes that are not multiples of 8/16 (1, 7, 33, 770), MiniLM's 384, and a tile + 1 (385)
HIDDEN = [1, 7, 33, 384, 770]
#: row-wise kernels (LayerNorm): one row, 3×5 rows of every HIDDEN, and strided leading shapes
ROW_SHAPES = [lead + (h,) for lead in [(1,), (3, 5)] for h in HIDDEN] + [(3, 37), (2, 5, 64), (1, 1, 7), (4, 385)]
#: element-wise kernels: a single element, ragged tails against 256-element interpreter blocks
ELEMENTWISE_SHAPES = [(1,), (7,), (3, 33), (3, 101), (2, 5, 770), (4, 384), (1000,), (3, 17, 29)]
#: softmax key lengths 1 … 513
KEYS = [1, 7, 64, 129, 513]
#: layouts the kernels must read: last dim not contiguous, rows further apart, every other element
STRIDED = ["transposed", "row_strided", "col_strided"]
#: the CPU kernels' instruction sets
CPU_ISAS = ["base", "avx2", "avx512"]
#: attention (B, H, L, D, unpadded length per batch item or None for no mask, layout); length 0 is
#: a fully padded sequence, "blhd" = q, k, v are permuted views of [B, L, H, D] tensors
ATTENTION_CASES = [
    (2, 2, 37, 32, (37, 30), "bhld"),  # non-power-of-two L, ragged mask, head dim 32 (MiniLM)
    (2, 1, 45, 64, (45, 0), "blhd"),  # a fully padded sequence, head dim 64 (BERT-base), strided
    (1, 2, 16, 64, None, "bhld"),  # no mask, L equal to one block
    (1, 1, 1, 32, (1,), "bhld"),  # a single token
    (1, 1, 23, 40, (9,), "bhld"),  # head dim that is not a power of two (BLOCK_D > D)
    (3, 3, 9, 8, (9, 5, 1), "bhld"),  # three lengths in one batch, small head dim
]
#: linear backward GEMM (leading shape of the tokens, N_out, N_in): ragged shapes
GEMM_SHAPES = [((37,), 45, 29), ((2, 9), 64, 96), ((1,), 7, 5)]

DTYPES = [pytest.param(F32, id="fp32"), pytest.param(F16, id="fp16"), pytest.param(BF16, id="bf16")]


def with_param_dtypes(kinds: list[str]):
    """(dtype, kind) params: every kind for every dtype, plus ``<kind>_input_dtype`` (parameters in
    the input dtype, as in a half-precision model) for the 16-bit dtypes."""
    out = []
    for dtype, name in ((F32, "fp32"), (F16, "fp16"), (BF16, "bf16")):
        for kind in kinds + ([kinds[0] + "_input_dtype"] if dtype != F32 else []):
            out.append(pytest.param(dtype, kind, id=f"{name}-{kind}"))
    return out


# ---------------------------------------------------------------------------------- tolerances
@dataclass(frozen=True)
class Tol:
    atol: float
    rtol: float
    why: str


_ALL = (F32, F16, BF16)

#: the csrc kernels (cpp, cuda): every kernel computes in float32 and rounds once, like the reference
_COMPILED = {
    F32: Tol(1e-5, 1e-5, "summation order (vectorized partial sums vs torch's cascade sums) and the "
                         "kernels' polynomial exp/erf (a few ulp; torch's own CPU erf is off by up to 1.5e-7)"),
    F16: Tol(1e-5, 1e-3, "one float16 rounding step (2^-10 relative); atol covers subnormal outputs"),
    BF16: Tol(1e-5, 8e-3, "one bfloat16 rounding step (2^-7 = 7.8e-3 relative)"),
}

#: kind -> family ("compiled", "triton", or "*" for both) -> dtype -> Tol. Kernel and reference
#: both compute in float32 and round once to the output dtype unless a row says otherwise, so they
#: differ by the float32 discrepancy, or by one rounding step where that straddles a boundary.
TOLERANCES: dict[str, dict[str, dict[torch.dtype, Tol]]] = {
    "elementwise": {  # GELU forward / identity rule / × ε-ratio
        "compiled": _COMPILED,
        "triton": {
            F32: Tol(2e-6, 1e-5, "Φ(u) evaluated directly vs gelu(u)/u: a few float32 ulp of values up to ~30"),
            F16: Tol(1e-3, 2e-3, "one float16 rounding step after a few-ulp float32 difference"),
            BF16: Tol(1e-2, 1.6e-2, "one bfloat16 rounding step after a few-ulp float32 difference"),
        },
    },
    "eps_ratio": {  # g·z/(z + ε·sign z) alone
        "compiled": _COMPILED,
        "triton": {
            F32: Tol(1e-6, 1e-6, "g·(z/(z+ε·sign z)) vs (g·|z|)/(|z|+ε): three float32 roundings, reordered"),
            F16: Tol(1e-5, 1e-3, "one float16 rounding step (2^-10 relative); atol covers subnormal outputs"),
            BF16: Tol(0.0, 1e-2, "one bfloat16 rounding step (2^-7 relative); bfloat16 has no subnormals here"),
        },
    },
    "layer_norm": {  # LayerNorm output and its σ-constant backward
        "compiled": _COMPILED,
        "triton": {
            F32: Tol(1e-5, 1e-5, "summation order only"),
            F16: Tol(1e-2, 2e-3, "one float16 step: 2^-10 relative, ≤ 8e-3 absolute near |y| = 8"),
            BF16: Tol(6e-2, 1.6e-2, "one bfloat16 step: 2^-7 relative, ≤ 6e-2 absolute near |y| = 8"),
        },
    },
    "softmax": {"compiled": _COMPILED},  # the compiled masked softmax and its backward
    "rounded_twice": {  # RMSNorm w·T(x·rstd), gated act(a)·b: the reference rounds an intermediate to T
        "compiled": {
            F32: _COMPILED[F32],
            F16: Tol(1e-5, 2e-3, "the kernel rounds where the reference does; where float32 noise moves the "
                                 "intermediate across a float16 boundary the result moves by up to two steps"),
            BF16: Tol(1e-5, 1.6e-2, "as float16: up to two bfloat16 steps (2 × 2^-7) where the intermediate's "
                                    "rounding differs"),
        },
        "triton": {
            F32: Tol(1e-5, 1e-5, "rstd's summation order, sigmoid/tanh: a few float32 ulp; erf-GELU cancels in "
                                 "1 + erf(a/√2) for a ≪ 0 in kernel and torch alike, with different erf: about "
                                 "ulp(1)·|a·b| absolute (measured 2.9e-6)"),
            F16: Tol(1e-5, 2e-3, "as the compiled kernels: up to two float16 steps where the intermediate's "
                                 "rounding differs"),
            BF16: Tol(1e-5, 1.6e-2, "as the compiled kernels: up to two bfloat16 steps (2 × 2^-7)"),
        },
    },
    "statistics": {  # LayerNorm mean and 1/σ: float32 whatever the input dtype
        "*": {dt: Tol(1e-6, 1e-5, "float32 statistics of the same values: summation order") for dt in _ALL},
    },
    "gemm": {  # rule(g) @ W: the element-wise rule then torch.matmul
        "*": {
            F32: Tol(1e-4, 1e-5, "float32 summation order of ≤ 100 products of size ~10"),
            F16: Tol(2e-2, 2e-3, "one rounding of outputs up to ~16: 2^-10 relative, ≤ 1.6e-2"),
            BF16: Tol(1.3e-1, 1.6e-2, "one rounding of outputs up to ~16: 2^-7 relative, ≤ 1.3e-1"),
        },
    },
    "attention": {  # attention output and g_Q, g_K, g_V
        "compiled": {
            F32: Tol(1e-5, 1e-5, "the blocked kernel's online softmax and float32 sums in another order "
                                 "(CPU); on CUDA the attention is the reference itself"),
            F16: Tol(2e-3, 2e-3, "the reference rounds P and each product to float16, the kernels once"),
            BF16: Tol(2.5e-2, 2e-2, "the reference rounds P and each product to bfloat16, the kernels once"),
        },
        "triton": {
            F32: Tol(2e-5, 2e-5, "blocked online softmax vs one pass: summation order"),
            F16: Tol(2e-3, 2e-3, "the reference rounds S, P, each product to float16, the kernel once: measured 1e-3"),
            BF16: Tol(2.5e-2, 2e-2, "as float16 with an 8x coarser mantissa: measured 1.6e-2"),
        },
    },
}


# ------------------------------------------------------------------------------------- tensors
def randn(*shape, dtype=F32, device="cpu", seed=0, scale=1.0, shift=0.0) -> torch.Tensor:
    """Seeded normal values (drawn in float32 on the CPU, then moved and cast)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale + shift).to(device=device, dtype=dtype)


SPECIAL_VALUES = [0.0, -0.0, 3e-7, -5e-7, 5e-7, 1e-6, -1e-6, 1e-3, -1e-3, 8.0, -8.0, 12.0, -12.0, 30.0, -30.0]


def with_special_values(u: torch.Tensor) -> torch.Tensor:
    """Zeros, |u| < 1e-6 (the GELU guard), ±ε-sized and saturated values at the start of u."""
    flat = u.view(-1)
    n = min(flat.numel(), len(SPECIAL_VALUES))
    flat[:n] = torch.tensor(SPECIAL_VALUES[:n]).to(u.dtype)
    return u


def noncontiguous(t: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as t as a transposed, row-strided, column-strided or (rows of one) expanded view."""
    if kind == "transposed":  # last dim not contiguous
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "row_strided":  # rows further apart than their length
        wide = torch.zeros(*t.shape[:-1], t.shape[-1] + 5, dtype=t.dtype, device=t.device)
        wide[..., : t.shape[-1]] = t
        return wide[..., : t.shape[-1]]
    if kind == "col_strided":  # every other element
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        return wide[..., ::2]
    if kind == "expanded":  # stride-0 rows: the first row repeated
        return t[..., :1, :].expand(t.shape)
    raise ValueError(kind)


def padding_mask(batch: int, keys: int, device="cpu") -> torch.Tensor:
    """Additive float32 key mask: batch 0 unmasked, batch 1 with its second half padded, the last
    batch fully padded (its rows must come out uniform, as torch.softmax gives)."""
    mask = torch.zeros(batch, keys, device=device)
    mask[1, (keys + 1) // 2 :] = PAD
    mask[-1, :] = PAD
    return mask


def attention_inputs(case, dtype, device="cpu", seed=0):
    """(q, k, v, g_out, mask, scale) of an :data:`ATTENTION_CASES` entry."""
    bsz, heads, length, dim, lengths, layout = case
    gen = torch.Generator().manual_seed(seed)

    def tensor():
        shape = (bsz, length, heads, dim) if layout == "blhd" else (bsz, heads, length, dim)
        t = torch.randn(shape, generator=gen).to(dtype).to(device)
        return t.permute(0, 2, 1, 3) if layout == "blhd" else t

    q, k, v, g = tensor(), tensor(), tensor(), tensor()
    mask = None
    if lengths is not None:
        mask = torch.zeros(bsz, length)
        for b, n in enumerate(lengths):
            mask[b, n:] = PAD
        mask = mask.to(device)
    return q, k, v, g, mask, dim**-0.5


def attention_case_id(case) -> str:
    return "x".join(map(str, case[:4])) + f"-{case[4]}-{case[5]}"


# ------------------------------------------------------------------------------------- asserts
def assert_matches(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> None:
    """Same dtype, shape and device, values within (atol, rtol) (compared in float32 on the CPU)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.device == expected.device
    torch.testing.assert_close(actual.float().cpu(), expected.float().cpu(), atol=atol, rtol=rtol)


def assert_grads_match(got, expected, atol: float, rtol: float) -> None:
    """Gradient tuples: None where the expected one is None, else :func:`assert_matches`."""
    assert len(got) == len(expected)
    for i, (a, e) in enumerate(zip(got, expected)):
        if e is None:
            assert a is None, f"gradient {i} must be None"
        else:
            assert_matches(a, e, atol, rtol)


def assert_row_norm_matches(kernels, reference, params, kind: str, tol, device="cpu") -> None:
    """A row-wise norm's kernel set (LayerNorm, RMSNorm) against its reference on ``kind``-strided
    x and grad_y: ``forward(x, *params)`` and ``backward(grad_y, params[0] (the weight), rstd)``."""
    x = noncontiguous(randn(4, 6, 33, device=device, scale=3.0), kind)
    for got, expected in zip(kernels.forward(x, *params), reference.forward(x, *params)):
        assert_matches(got, expected, *tol)
    g = noncontiguous(randn(4, 6, 33, device=device, seed=3), kind)
    rstd = randn(4, 6, device=device, seed=4).abs() + 0.5
    assert_matches(kernels.backward(g, params[0], rstd), reference.backward(g, params[0], rstd), *tol)

def relevance_in_out(fn, x, *args):
    """(x ⊙ g_x, y ⊙ g_y) for a random upstream g_y: the relevance in and out of one op."""
    x = x.clone().requires_grad_(True)
    y = fn(x, *args)
    g_y = torch.randn_like(y)
    (g_x,) = torch.autograd.grad(y, x, g_y)
    return x.detach() * g_x, y.detach() * g_y


def grads(fn, inputs, upstream):
    """(output, gradients of every input) of ``fn(*inputs)`` for ``upstream``; None for unused inputs."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out, leaves, upstream, allow_unused=True)
