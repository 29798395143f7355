"""How the Triton kernels are launched, checked on the launch arguments without running a kernel:
the grid for B·H past CUDA's 65,535 limit on grid axes 1 and 2, the device guard for tensors on a
non-default GPU, the tuning key and ``LRP_KERNELS_TRITON_AUTOTUNE=0`` (no benchmarking), the
tuning file, and the number of launches per attribution (counted under the interpreter too)."""

import contextlib
import json

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from triton_loader import import_triton_backend  # tests/ helper

tk = import_triton_backend()

from lrp_kernels.backends.triton import _launch, activation, attention, gated_mlp, layer_norm, linear, rms_norm  # noqa: E402

AXIS_LIMIT = 65_535  # CUDA's limit on grid axes 1 and 2 (axis 0: 2³¹ − 1)


def _recorded(run, cc=90):
    """The launches of ``run()``, recorded as on sm_<cc> and not run."""
    launches = []
    with _launch.pretend(cc, 227 * 1024), _launch.launch_hook(lambda launch: launches.append(launch) or True):
        run()
    return launches


def _heads(batch, length, heads, dim, device="meta", dtype=torch.bfloat16):
    """A [B, H, L, D] view of [B, L, H·D] memory, as the model's split_heads makes."""
    return torch.empty(batch, length, heads * dim, dtype=dtype, device=device).view(
        batch, length, heads, dim).transpose(1, 2)


def _attention_round_trip(q, mask, mode="attnlrp"):
    def run():
        out, saved = attention.forward(q, q, q, mask, 0.125, mode)
        attention.backward(q, q, q, q, mask, 0.125, mode, saved)

    return run


@pytest.mark.parametrize("mode", ["attnlrp", "cp_lrp"])
def test_attention_grid_puts_batch_times_heads_on_axis_0(mode):
    """B = 5,462 with 12 heads is B·H = 65,544 programs per block row: on axis 0 of a 1-D grid."""
    bsz, heads, length = 5462, 12, 128
    q = _heads(bsz, length, heads, 64)
    launches = _recorded(_attention_round_trip(q, torch.zeros(bsz, length, device="meta"), mode))
    assert [x.kernel.name for x in launches] == (
        ["_attention_forward_kernel", "_attention_backward_dkdv_kernel"] if mode == "cp_lrp" else
        ["_attention_forward_kernel", "_attention_backward_dq_kernel", "_attention_backward_dkdv_kernel"])
    for launch in launches:
        block = launch.config.kwargs["BLOCK_N" if "dkdv" in launch.kernel.name else "BLOCK_M"]
        assert launch.grid == (bsz * heads * -(-length // block),)
        assert launch.grid[0] > AXIS_LIMIT and launch.grid[0] < 2**31
        assert launch.args["H"] == heads and launch.args["L"] == length


def test_outputs_are_laid_out_like_the_inputs():
    """Outputs and gradients of the model's head views are [B, L, H, D] memory: merging heads and
    the projections' backward need no transposing copies."""
    q = _heads(2, 16, 3, 32)
    launches = _recorded(_attention_round_trip(q, None))
    for launch in launches:
        for name in ("o_ptr", "gq_ptr", "gk_ptr", "gv_ptr"):
            if name in launch.args:
                assert launch.args[name].stride() == q.stride(), name


@contextlib.contextmanager
def _guards_entered():
    """Record the CUDA devices made current by the launches (torch.cuda.device replaced)."""
    entered = []

    class Recorder(contextlib.nullcontext):
        def __init__(self, device):
            super().__init__()
            entered.append(torch.device(device))

    real = torch.cuda.device
    torch.cuda.device = Recorder
    try:
        yield entered
    finally:
        torch.cuda.device = real


def test_launches_on_the_device_of_the_tensors():
    """Tensors on cuda:1 (fake tensors: no GPU needed): every kernel launches under a guard that
    makes cuda:1 current, never the current device."""
    with FakeTensorMode(), _guards_entered() as entered:
        q = _heads(2, 16, 3, 32, device="cuda:1")
        x = torch.empty(4, 96, dtype=torch.bfloat16, device="cuda:1")
        w = torch.empty(96, dtype=torch.bfloat16, device="cuda:1")

        def run():
            _attention_round_trip(q, torch.zeros(2, 16, device="cuda:1"))()
            _, _, rstd = layer_norm.forward(x, w, w, 1e-12)
            layer_norm.backward(x, w, rstd)
            activation.gelu_forward(x)
            linear.eps_ratio(x, x, 1e-6)
            _, rstd = rms_norm.forward(x, w, 1e-5)
            rms_norm.backward(x, w, rstd)
            a, b = x.chunk(2, dim=-1)
            gated_mlp.forward(a, b, "silu")
            gated_mlp.backward(a, a, b, "gelu", 0.1)

        launches = _recorded(run)
    assert len(launches) == 11
    assert all(launch.device == torch.device("cuda", 1) for launch in launches)
    assert entered == [torch.device("cuda", 1)] * len(launches)


def test_the_guard_is_torch_cuda_device_for_cuda_tensors_only():
    guard = _launch.device_guard(torch.device("cuda", 1))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert isinstance(_launch.device_guard(torch.device("cpu")), contextlib.nullcontext)


# ---------------------------------------------------------------------------------- tuning
def _fake_kernel(configs, bench):
    """A Kernel over a stand-in jit function; ``bench`` records the configs timed."""

    class Fn:
        __name__ = "_fake_kernel"
        arg_names = ["x_ptr", "N", "FLAG"]

        def __getitem__(self, grid):
            return lambda *a, **k: None

    import triton

    table = _launch.Configs(lambda gen, named: configs, triton.Config({"BLOCK": 1}))
    kernel = _launch.Kernel(Fn(), table, buckets=("N",))
    return kernel


@pytest.fixture
def compiled_mode(monkeypatch, tmp_path):
    """Pretend the kernels are compiled (not interpreted) on a GPU named 'Test GPU', with the
    tuning file under tmp_path and the benchmark replaced by a recorder."""
    monkeypatch.setattr(_launch, "INTERPRETED", False)
    monkeypatch.setenv(_launch.TUNING_FILE_ENV, str(tmp_path / "tuning.json"))
    monkeypatch.setattr(_launch, "_device_facts", lambda device: (90, 227 * 1024, "Test GPU"))
    timed = []

    def fake_time(kernel, config, grid, args, constexprs):
        timed.append(config.kwargs["BLOCK"])
        return {1: 3.0, 2: 1.0, 3: 2.0}[config.kwargs["BLOCK"]]

    monkeypatch.setattr(_launch, "_time", fake_time)
    return timed


def _configs():
    import triton

    return [triton.Config({"BLOCK": b}) for b in (1, 2, 3)]


def test_autotune_0_means_no_benchmarking(compiled_mode, monkeypatch):
    monkeypatch.setenv(_launch.AUTOTUNE_ENV, "0")
    kernel = _fake_kernel(_configs(), compiled_mode)
    kernel[(1,)](torch.zeros(4), 4, FLAG=True)
    assert compiled_mode == []  # nothing timed: the shipped default, first in the table
    assert list(kernel._chosen.values())[0].kwargs == {"BLOCK": 1}


def test_tuning_benchmarks_once_per_key_and_persists(compiled_mode, tmp_path, monkeypatch):
    monkeypatch.setenv(_launch.AUTOTUNE_ENV, "1")
    kernel = _fake_kernel(_configs(), compiled_mode)
    kernel[(1,)](torch.zeros(5), 5, FLAG=True)
    kernel[(1,)](torch.zeros(7), 7, FLAG=True)  # same bucket (8): no new benchmark
    assert compiled_mode == [1, 2, 3]
    kernel[(1,)](torch.zeros(5), 5, FLAG=False)  # another constexpr: another kernel, another key
    assert compiled_mode == [1, 2, 3] * 2
    stored = json.loads((tmp_path / "tuning.json").read_text())
    assert len(stored) == 2 and all(v["kwargs"] == {"BLOCK": 2} for v in stored.values())
    assert all("Test GPU" in key and "FLAG" in key for key in stored)
    # a new process (a new Kernel) reads the file: no benchmark
    again = _fake_kernel(_configs(), compiled_mode)
    again[(1,)](torch.zeros(6), 6, FLAG=True)
    assert compiled_mode == [1, 2, 3] * 2 and list(again._chosen.values())[0].kwargs == {"BLOCK": 2}


def test_key_has_the_gpu_dtypes_constexprs_and_size_buckets(compiled_mode):
    kernel = _fake_kernel(_configs(), compiled_mode)
    key = kernel.key(torch.device("cpu"), {"x_ptr": torch.zeros(3, dtype=torch.bfloat16), "N": 100, "FLAG": 1},
                     {"FLAG": 1})
    assert key == ("Test GPU", ("torch.bfloat16",), (("FLAG", 1),), (128,))


# ------------------------------------------------------------------------- launches per attribution
def test_triton_launches_per_attribution():
    """BERT with 12 layers (tiny widths: the count depends on the layers only), attnlrp: 4 launches
    per layer forward (attention, 2 LayerNorms, GELU), 7 backward (2 LayerNorms, the ε-ratios of the
    two output linears, GELU·ε, attention dQ+Δ and dK/dV — which apply the q/k/v projections'
    ε-ratios), plus the embedding LayerNorm's 2 and the ε-ratios of the pooler and the classifier.
    (Before: 184 — 15 a layer: a Δ kernel, and one ε-rule GEMM per projection.)"""
    from lrp_kernels import attribute
    from lrp_kernels.models import BertClassifier
    from lrp_kernels.models.config import ModelConfig

    config = ModelConfig(vocab_size=50, hidden_size=32, num_hidden_layers=12, num_attention_heads=2,
                         intermediate_size=48, max_position_embeddings=16)
    model = BertClassifier(config).eval()
    ids = torch.randint(1, 50, (2, 7))
    counted = []
    with _launch.launch_hook(lambda launch: counted.append(launch.kernel.name) or False):
        attribute(model, ids, torch.ones_like(ids), method="attnlrp", backend="triton")
    per_layer = 4 + 7
    assert len(counted) == 12 * per_layer + 4, sorted(set(counted))


# ------------------------------------------------------------------------- head dims and fallback
@pytest.mark.parametrize("cc, shared", [(80, 163 * 1024), (90, 227 * 1024), (86, 99 * 1024)])
def test_every_head_dim_has_a_config_or_goes_to_the_reference(monkeypatch, cc, shared):
    """16-bit: every head dim up to MAX_HEAD_DIM keeps a config of each attention kernel on A100,
    H100 and the 99 KiB consumer cards (so nothing raises OutOfResources at launch); float32 past
    128, any head dim past MAX_HEAD_DIM and float64 go to the torch reference instead."""
    monkeypatch.setattr(_launch, "INTERPRETED", False)
    monkeypatch.setattr(_launch, "_device_facts", lambda device: (cc, shared, f"sm_{cc}"))
    for kernel in (attention.FORWARD, attention.BACKWARD_DQ, attention.BACKWARD_DKDV):
        kernel._facts.clear()
    for dim in (8, 16, 40, 64, 96, 128, 200, 256):
        for dtype in (torch.bfloat16, torch.float16):
            assert not attention.runs_reference(_heads(1, 4, 1, dim, dtype=dtype)), (dim, dtype)
            assert not attention.runs_reference(_heads(1, 4, 1, dim, dtype=dtype), causal=True), (dim, dtype)
        assert attention.runs_reference(_heads(1, 4, 1, dim, dtype=torch.float32)) == (dim > 128)
    assert attention.runs_reference(_heads(1, 4, 1, 264))
    assert attention.runs_reference(_heads(1, 4, 1, 64, dtype=torch.float64))


@pytest.mark.parametrize("cc, shared", [(80, 163 * 1024), (90, 227 * 1024), (86, 99 * 1024)])
def test_rotary_runs_in_the_kernels_where_it_compiles_without_spills(monkeypatch, cc, shared):
    """``configs.py``: rotary positions on load for head dims 16–64 on Hopper; on Ampere (every config
    spills) and past 64 (spills, and sm_90's shared memory is too small) the torch reference."""
    monkeypatch.setattr(_launch, "INTERPRETED", False)
    monkeypatch.setattr(_launch, "_device_facts", lambda device: (cc, shared, f"sm_{cc}"))
    for kernel in (attention.FORWARD, attention.BACKWARD_DQ, attention.BACKWARD_DKDV):
        kernel._facts.clear()
    for dim in (16, 32, 64, 128, 256):
        q = _heads(1, 4, 1, dim)
        cos = torch.empty(1, 4, dim, device="meta")
        assert attention.runs_reference(q, (cos, cos)) == (cc < 90 or dim > 64), dim
        assert not attention.runs_reference(q)


def test_rotary_cos_and_sin_count_in_the_shared_memory_estimate():
    from lrp_kernels.backends.triton.configs import ATTENTION_FORWARD

    q = _heads(1, 4, 1, 64)
    config = ATTENTION_FORWARD.table("hopper", {"q_ptr": q, "BLOCK_D": 64})[0]  # 128 × 64, 3 stages
    plain = ATTENTION_FORWARD.shared_bytes(config, {"q_ptr": q, "BLOCK_D": 64})
    cos = torch.empty(1, 4, 64, device="meta")
    rotary = ATTENTION_FORWARD.shared_bytes(config, {"q_ptr": q, "BLOCK_D": 64, "ROTARY": True, "cos_ptr": cos})
    assert rotary - plain == 3 * 2 * 64 * 64 * 4  # cos and sin, float32, of the 64 streamed keys per stage


def test_grouped_heads_and_window_reach_the_kernels():
    """Grouped K/V heads: one dK/dV program per K/V head and key block (it sums its 3 query heads);
    the window as an argument with WINDOWED, a window of L − 1 or more as none."""
    q, k = _heads(2, 128, 12, 64), _heads(2, 128, 4, 64)
    mask = torch.zeros(2, 128, device="meta")

    def run(window):
        def go():
            saved = attention.forward(q, k, k, mask, 0.125, "attnlrp", window)[1]
            attention.backward(q, q, k, k, mask, 0.125, "attnlrp", saved, window)
        return go

    for window, windowed in ((64, True), (127, False), (None, False)):
        launches = _recorded(run(window))
        assert [x.kernel.name for x in launches] == [
            "_attention_forward_kernel", "_attention_backward_dq_kernel", "_attention_backward_dkdv_kernel"]
        for launch in launches:
            assert launch.args["G"] == 3 and launch.args["H"] == 12
            assert launch.constexprs["WINDOWED"] is windowed and not launch.constexprs["ROTARY"]
            assert launch.args["window"] == (window if windowed else 0)
            heads = 4 if "dkdv" in launch.kernel.name else 12
            block = launch.config.kwargs["BLOCK_N" if "dkdv" in launch.kernel.name else "BLOCK_M"]
            assert launch.grid == (2 * heads * -(-128 // block),)


def test_causal_launches_and_int64_positions_past_two_to_the_31():
    """Causal attention reaches the kernels (CAUSAL) with its grouped heads and window; positions are
    int64 (WIDE) exactly when a head view's offsets reach 2³¹ elements — L·H·D of the model's
    [B, L, H, D] memory: 2¹⁸ + 1 tokens of 64 heads × 128 (meta tensors, nothing allocated)."""
    def run(length, causal=True, window=None):
        q, k = _heads(1, length, 64, 128), _heads(1, length, 8, 128)

        def go():
            saved = attention.forward(q, k, k, None, 0.125, "attnlrp", window, None, causal)[1]
            attention.backward(q, q, k, k, None, 0.125, "attnlrp", saved, window, None, 0.0, causal)
        return _recorded(go)

    for length, wide in ((2**18 + 1, True), (2**18 - 1, False)):
        launches = run(length)
        assert [x.kernel.name for x in launches] == [
            "_attention_forward_kernel", "_attention_backward_dq_kernel", "_attention_backward_dkdv_kernel"]
        for launch in launches:
            assert launch.constexprs["CAUSAL"] and not launch.constexprs["WINDOWED"] and launch.args["G"] == 8
            assert launch.constexprs["WIDE"] is wide, (length, launch.kernel.name)
    for launch in run(300, window=63):
        assert launch.constexprs["CAUSAL"] and launch.constexprs["WINDOWED"] and launch.args["window"] == 63
        assert not launch.constexprs["WIDE"]
    assert not any(launch.constexprs["CAUSAL"] for launch in run(300, causal=False))


@pytest.mark.parametrize("cc, causal_dkdv", [(80, (16, 128)), (90, (32, 128))])
def test_causal_launches_take_their_own_configs_where_the_plain_ones_spill(monkeypatch, cc, causal_dkdv):
    """configs._CAUSAL_DKDV: at head dim 64 (bf16) the plain dK/dV default spills with the causal loop
    (sm_80 44 B, sm_90 52 B per thread, ``aot --only causal``); a causal launch takes the causal
    table's default, a plain one keeps its own."""
    monkeypatch.setattr(_launch, "INTERPRETED", False)
    for kernel in (attention.FORWARD, attention.BACKWARD_DQ, attention.BACKWARD_DKDV):
        monkeypatch.setattr(kernel, "_chosen", {})  # choices cached under the interpreter's config
    q = _heads(2, 128, 8, 64)

    def blocks(causal):
        def go():
            saved = attention.forward(q, q, q, None, 0.125, "attnlrp", None, None, causal)[1]
            attention.backward(q, q, q, q, None, 0.125, "attnlrp", saved, None, None, 0.0, causal)
        dkdv = [x for x in _recorded(go, cc) if "dkdv" in x.kernel.name][0]
        return dkdv.config.kwargs["BLOCK_M"], dkdv.config.kwargs["BLOCK_N"]

    assert blocks(True) == causal_dkdv
    assert blocks(False) == {80: (32, 128), 90: (64, 128)}[cc]
