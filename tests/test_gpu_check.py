"""The CPU-side parts of the GPU check (``benchmarks/gpu_check.sh``): the script parses, its plan
fits the device limits (≤ 8 files back, ≤ 9 minutes), and the decision script runs its three
sections end to end at toy sizes through Triton's interpreter."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def test_gpu_check_parses_and_its_plan_fits_the_device_limits():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    plan = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, check=True).stdout
    files = set(re.findall(r"-> (\S+)", plan)) | {"tuning.json"}
    assert len(files) <= 8, files
    assert re.search(r"budget (\d+)s", plan) and int(re.search(r"budget (\d+)s", plan).group(1)) <= 540
    limits = [int(n) for n in re.findall(r"limit (\d+)", plan)]
    assert sum(limits) + 30 <= 540  # the fixed steps, with the versions and the summary, inside 9 minutes
    steps = [line.split("limit")[0].strip() for line in plan.splitlines() if "limit" in line]
    assert steps[0].startswith("end to end") and steps[-1].startswith("CUDA build")  # decision first


@pytest.mark.slow  # the whole decision script through Triton's interpreter: about a minute
def test_decision_script_runs_at_toy_sizes_under_the_interpreter():
    pytest.importorskip("triton", reason="triton is not installed")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "e2e" / "bench_gpu_e2e.py"), "all", "--tiny",
                          "--device", "cpu"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert re.search(r"^VERDICT Triton >= 1.5x torch\(SDPA\) end to end: (yes|no)$", text, re.MULTILINE)
    assert "scores agree: yes" in text  # the interpreter's float32-accumulated kernels vs torch
    for row in ("attnlrp", "cp_lrp", "linear gelu.eps + matmul", "attention attnlrp fwd+bwd", "head dim 256",
                "attn causal g2 vs SDPA is_causal", "attn causal g2 left-padded vs torch"):
        assert row in text, row
    # the decoder rows where the tree has the llama family, else the line that says why not
    assert re.search(r"^llama +(attnlrp|cp_lrp) ", text, re.MULTILINE) or "no llama family" in text
    assert "edge cases failed: 0" in text
