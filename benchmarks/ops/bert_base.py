"""Shared by ``benchmarks/ops/bench_<rule>.py``: BERT-base shapes, the backends that run here, and
the timing of one kernel case.

Shapes: batch 8 × sequence 128 (``LRP_BENCH_BATCH`` / ``LRP_BENCH_SEQ``), hidden 768, 12 heads,
intermediate 3072 (also EuroBERT-210m's: its RMSNorm and SwiGLU run at these shapes), and ModernBERT-base's
GeGLU (intermediate 1152, a and b the halves of one [.., 2304] projection); float32 on the CPU,
bfloat16 on CUDA. Every backend that runs on a device is
timed on the same inputs as the torch reference there: ``torch`` and ``cpp`` on the CPU;
``torch``, ``cuda`` and ``triton`` on CUDA (skipped without a GPU). Triton's interpreter is for
tests, not for timing: ``triton`` is not timed on the CPU. Each case calls the backend's kernel set
the way the op does (e.g. the linear backward is the element-wise rule then ``torch.matmul``). Benchmarks report; they never assert timings.
"""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import pytest
import torch

from lrp_kernels.backends import registry

BATCH = int(os.environ.get("LRP_BENCH_BATCH", "8"))
SEQ = int(os.environ.get("LRP_BENCH_SEQ", "128"))
HIDDEN, HEADS, INTER = 768, 12, 3072
MODERN_INTER = 1152  # ModernBERT-base's intermediate size
EPS = 1e-6
DTYPES = {"cpu": torch.float32, "cuda": torch.bfloat16}
TOKENS = f"{BATCH * SEQ}x"  # shape labels start with the token count


def _target(name: str, device: str):
    if name == "triton" and device == "cpu":
        reason = "Triton's interpreter is for tests, not for timing"
    else:
        reason = registry.unavailable_reason(name, device)
    marks = [pytest.mark.skipif(reason is not None, reason=str(reason))]
    if device == "cuda":
        marks.append(pytest.mark.gpu)
    return pytest.param((name, device), id=f"{device}-{name}", marks=marks)


#: (backend name, device) of every timed row; ``torch`` is the reference of its device
TARGETS = [_target(n, d) for n, d in (("torch", "cpu"), ("cpp", "cpu"), ("torch", "cuda"), ("cuda", "cuda"),
                                      ("triton", "cuda"))]

_inputs: dict[str, SimpleNamespace] = {}
#: (device, rule, case, shape) -> {backend name: median seconds}
RESULTS: dict[tuple[str, str, str, str], dict[str, float]] = {}


def inputs(device: str) -> SimpleNamespace:
    """The tensors of every case on ``device`` (made once per device, seeded)."""
    if device in _inputs:
        return _inputs[device]
    from lrp_kernels.backends.torch import attention, layer_norm, rms_norm

    dtype = DTYPES[device]
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)

    d = HIDDEN // HEADS
    t = SimpleNamespace(scale=1.0 / math.sqrt(d))
    t.mask = torch.zeros(BATCH, SEQ, device=device)
    t.mask[BATCH // 2 :, SEQ - SEQ // 4 :] = torch.finfo(torch.float32).min  # half the batch ¼ padded
    t.x, t.g_h, t.z_h = rand(BATCH, SEQ, HIDDEN, scale=2.0), rand(BATCH, SEQ, HIDDEN), rand(BATCH, SEQ, HIDDEN, scale=2.0)
    t.w_ln, t.b_ln = rand(HIDDEN), rand(HIDDEN)
    t.rstd = layer_norm.forward(t.x, t.w_ln, t.b_ln, 1e-12)[2]
    t.rms_rstd = rms_norm.forward(t.x, t.w_ln, 1e-5)[1]
    t.u, t.g_u = rand(BATCH, SEQ, INTER, scale=2.0), rand(BATCH, SEQ, INTER)
    t.up = rand(BATCH, SEQ, INTER)  # EuroBERT's up projection: b of the SwiGLU with a = t.u
    t.wi = rand(BATCH, SEQ, 2 * MODERN_INTER, scale=2.0)  # ModernBERT's Wi output: a, b = its halves
    t.g_wi = rand(BATCH, SEQ, MODERN_INTER)
    t.w_out = rand(HIDDEN, INTER, scale=INTER**-0.5)  # the MLP's output linear [768, 3072]: its backward reads g at 768
    t.w_in = rand(INTER, HIDDEN, scale=HIDDEN**-0.5)  # the MLP's input linear [3072, 768]: g and u at 3072
    t.w_proj = rand(HIDDEN, HIDDEN, scale=HIDDEN**-0.5)  # the attention output projection
    t.q, t.k, t.v, t.g_o = (rand(BATCH, HEADS, SEQ, d) for _ in range(4))
    t.scores, t.g_p = rand(BATCH, HEADS, SEQ, SEQ, scale=3.0), rand(BATCH, HEADS, SEQ, SEQ)
    t.probs = attention.softmax_forward(t.scores, t.mask, t.scale)
    _inputs[device] = t
    return t


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_case(benchmark, target, rule: str, case: str, shape: str, fn) -> None:
    """Time ``fn(backend, inputs)`` for ``target`` = (backend name, device) and record its median."""
    name, device = target
    backend = registry.resolve(name, device)
    t = inputs(device)
    benchmark.group = f"{device} {rule}.{case} {shape}"
    benchmark.extra_info.update(backend=name, device=device, dtype=str(DTYPES[device]).replace("torch.", ""),
                                shape=shape, threads=torch.get_num_threads())
    fn(backend, t)  # warm-up (autotuning, first-call allocations) outside the timed rounds
    _sync(device)

    def call():
        fn(backend, t)
        _sync(device)

    benchmark(call)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        RESULTS.setdefault((device, rule, case, shape), {})[name] = stats.stats.median


def table_lines() -> list[str]:
    """Medians and speed-ups over the torch reference of every case timed in this session."""
    if not RESULTS:
        return []
    lines = [f"kernels vs the torch reference (batch {BATCH} x seq {SEQ}, {os.cpu_count()} CPUs, "
             f"threads {torch.get_num_threads()}, torch {torch.__version__})",
             f"{'device':6} {'case':34} {'shape':22} {'backend':8} {'torch ms':>9} {'ms':>9} {'speed-up':>8}"]
    for (device, rule, case, shape), by_backend in RESULTS.items():
        reference = by_backend.get("torch")
        for name, seconds in by_backend.items():
            if name == "torch":
                continue
            ref_ms = f"{reference * 1e3:9.3f}" if reference else f"{'-':>9}"
            speedup = f"{reference / seconds:7.2f}x" if reference else f"{'-':>8}"
            lines.append(f"{device:6} {rule + '.' + case:34} {shape:22} {name:8} {ref_ms} {seconds * 1e3:9.3f} {speedup}")
    return lines
