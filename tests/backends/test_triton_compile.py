"""Ahead-of-time compilation of every Triton kernel the host code can launch, for Ampere (sm_80) and
Hopper (sm_90), no GPU needed (``lrp_kernels/backends/triton/aot.py``).

Every config of every kernel's table × every dtype (bfloat16, float16, float32) × every block size
(head dims 16–256; in 16 bits also a decoder's causal attention, with and without a sliding window;
LayerNorm / RMSNorm rows and gated-MLP widths of 384–16384; element-wise launches over more than 2³¹
logits) is compiled with the ptxas Triton ships, in child processes (the interpreter tests switch
this process to interpreted kernels), and:

* every config ``auto`` may pick — the candidates the host keeps on that arch, for the dtypes that
  :data:`lrp_kernels.backends.registry.AUTO_RULES` sends to Triton — compiles without register
  spills; float32 (Triton only when named) is reported, and must compile;
* every candidate's shared memory is within the arch's limit and under the estimate the host prunes
  by on smaller cards (an upper bound);
* every head dim up to ``MAX_HEAD_DIM`` keeps at least one candidate of each attention kernel, per
  arch and 16-bit dtype (float32 may fall back to the torch reference: then ``runs_reference`` says so).

Skipped when Triton or its NVIDIA backend (ptxas, cuobjdump) is not installed.
"""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="triton is not installed (it is a test dependency: pip install -e .[test])")
pytestmark = pytest.mark.slow  # the sweep compiles every config twice: 3-7 minutes on 2 cores

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rows():
    """The measured row of every compiled job (a child process: compiled mode, every CPU)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO)
    probe = subprocess.run([sys.executable, "-c", "from lrp_kernels.backends.triton import aot; print(aot.available())"],
                           env=env, capture_output=True, text=True, timeout=120)
    if probe.returncode != 0 or probe.stdout.strip() != "None":
        pytest.skip(f"no Triton NVIDIA compiler here: {(probe.stdout + probe.stderr).strip()[-300:]}")
    proc = subprocess.run([sys.executable, "-m", "lrp_kernels.backends.triton.aot", "--json"], env=env,
                          capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _auto_dtypes():
    import torch

    from lrp_kernels.backends.registry import AUTO_RULES

    dtypes = dict(AUTO_RULES["cuda"])["triton"]
    return {str(d).replace("torch.", "") for d in dtypes if isinstance(d, torch.dtype)}


def test_every_config_compiles_for_ampere_and_hopper(rows):
    failed = [f"{r['kernel']} sm_{r['cc']} {r['dtype']} {r['config']}: {r['error']}" for r in rows if "error" in r]
    assert not failed, "\n".join(failed)
    kernels = {r["kernel"] for r in rows}
    assert {"_attention_forward_kernel", "_attention_backward_dq_kernel", "_attention_backward_dkdv_kernel",
            "_layer_norm_forward_kernel", "_rms_norm_forward_kernel", "_norm_backward_kernel",
            "_gated_mlp_forward_kernel", "_gated_mlp_backward_kernel", "_gelu_forward_kernel",
            "_gelu_backward_kernel", "_eps_ratio_kernel"} <= kernels
    assert {r["cc"] for r in rows} == {80, 90} and {r["dtype"] for r in rows} == {"bfloat16", "float16", "float32"}


def test_no_spills_in_the_configs_auto_may_pick(rows):
    auto = _auto_dtypes()
    assert auto == {"bfloat16", "float16"}
    spilling = [f"{r['kernel']} sm_{r['cc']} {r['dtype']} {r['config']} ({r['label']}): "
                f"{r['spill_stores']} B spill stores" for r in rows
                if r["candidate"] and r["dtype"] in auto and (r["spill_stores"] or r["spill_loads"])]
    assert not spilling, "\n".join(spilling)


def test_shared_memory_within_the_limit_and_under_the_estimate(rows):
    from lrp_kernels.backends.triton.aot import SHARED_LIMIT

    for r in rows:
        if r["candidate"]:
            assert r["shared"] <= SHARED_LIMIT[r["cc"]], r
        if r["estimate"] is not None:
            assert r["shared"] <= r["estimate"], f"estimate below what the compiler allocates: {r}"


def test_every_head_dim_keeps_a_config(rows):
    """Per attention variant the sweep compiles (plain; a decoder's causal, causal with a window)."""
    from lrp_kernels.backends.triton.aot import HEAD_DIMS

    kept = defaultdict(int)
    for r in rows:
        if r["candidate"] and r["kernel"].startswith("_attention") and r["dtype"] != "float32":
            words = r["label"].split()  # "attention [causal | causal-window] <dtype> D<dim>"
            kept[(words[1] if len(words) == 4 else "plain", r["kernel"], r["cc"], r["dtype"], words[-1])] += 1
    for variant in ("plain", "causal", "causal-window"):
        for kernel in ("_attention_forward_kernel", "_attention_backward_dq_kernel", "_attention_backward_dkdv_kernel"):
            for cc in (80, 90):
                for dtype in ("bfloat16", "float16"):
                    for dim in HEAD_DIMS:
                        assert kept[(variant, kernel, cc, dtype, f"D{dim}")], \
                            f"no config left for {variant} {kernel} sm_{cc} {dtype} D{dim}"
