"""RMSNorm with 1/rms held constant (``lrp_kernels/ops/rms_norm.py``) on every backend that runs here
vs the torch reference, at EuroBERT-210m shapes (hidden 768; ``bert_base.py``).

    python -m pytest benchmarks/ops/bench_rms_norm.py --benchmark-only
"""

from __future__ import annotations

import pytest

from bert_base import HIDDEN, TARGETS, TOKENS, time_case  # benchmarks/ops helper

CASES = {  # case -> (shape, fn(backend, inputs))
    "forward": (f"{TOKENS}{HIDDEN}", lambda b, t: b.rms_norm.forward(t.x, t.w_ln, 1e-5)),
    "backward": (f"{TOKENS}{HIDDEN}", lambda b, t: b.rms_norm.backward(t.g_h, t.w_ln, t.rms_rstd)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CASES))
def test_rms_norm(benchmark, target, case):
    time_case(benchmark, target, "rms_norm", case, *CASES[case])
