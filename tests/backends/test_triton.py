"""The Triton backend as a whole: registered with its own kernel sets (RMSNorm's and the gated MLP's
seen launching), available where it can run (with the reason where it cannot), and end-to-end
attributions equal to the torch backend's on a tiny random model — through Triton's interpreter on
the CPU when there is no GPU. The kernels rule by rule are tested in ``tests/ops/test_<rule>.py``;
their ahead-of-time compilation for sm_80/sm_90 in ``test_triton_compile.py``."""

import pytest
import torch

from triton_loader import import_triton_backend  # tests/ helper

tk = import_triton_backend()
DEVICE = "cpu" if tk.INTERPRETED else "cuda"

from lrp_kernels import attribute  # noqa: E402
from lrp_kernels.backends import registry  # noqa: E402
from lrp_kernels.backends.contract import RULES  # noqa: E402
from lrp_kernels.backends.torch import gated_mlp as gated_mlp_ref  # noqa: E402
from lrp_kernels.backends.torch import rms_norm as rms_norm_ref  # noqa: E402
from lrp_kernels.backends.triton import _launch  # noqa: E402
from lrp_kernels.backends.torch import BACKEND as TORCH  # noqa: E402
from lrp_kernels.models import BertClassifier  # noqa: E402
from lrp_kernels.models.config import ModelConfig  # noqa: E402


def test_available_and_dispatched():
    assert tk.why_unavailable() is None
    assert DEVICE in tk.BACKEND.devices
    assert registry.resolve("triton", DEVICE) is tk.BACKEND
    assert registry.unavailable_reason("triton", DEVICE) is None
    # each rule's kernel set is the one its Triton file declares, none of them the reference's
    for rule in RULES:
        kernels = getattr(tk.BACKEND, rule)
        assert kernels is getattr(tk, rule).KERNELS
        assert kernels is not getattr(TORCH, rule)


def test_interpreted_kernels_need_the_interpreter_to_stay_on(monkeypatch):
    if not tk.INTERPRETED:
        pytest.skip("the kernels are compiled for the GPU here")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "TRITON_INTERPRET=1 is no longer set" in tk.why_unavailable()
    assert "TRITON_INTERPRET=1 is no longer set" in registry.unavailable_reason("triton", "cpu")


@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp", "lrp_epsilon"])
def test_attribute_on_triton_equals_torch(method):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=96, max_position_embeddings=32)
    model = BertClassifier(config).eval().to(DEVICE)
    ids = torch.randint(1, 50, (2, 11), device=DEVICE)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # ragged batch
    got = attribute(model, ids, mask, method=method, backend="triton")
    want = attribute(model, ids, mask, method=method, backend="torch")
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-5)
    # float32 through one layer: kernel vs reference summation orders; relevance is measured in
    # units of the explained logit (for lrp_epsilon on a random model it is almost all absorbed)
    scale = want.logits.abs().max().item()
    torch.testing.assert_close(got.scores, want.scores, atol=1e-5 * scale, rtol=1e-4)
    assert torch.count_nonzero(got.scores[1, 7:]) == 0


# (atol, rtol) against the reference: float32 math in both, a few ulp apart (erf-GELU's cancellation at
# a ≪ 0: ~1e-6 absolute), then up to two roundings to the output dtype (torch rounds act(a) and
# x/rms before the product); the per-rule tolerances: tests/ops/helpers.py, rows "triton"
SMOKE_TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (1e-3, 2e-3), torch.bfloat16: (1e-2, 1.6e-2)}


@pytest.mark.parametrize("dtype", list(SMOKE_TOL), ids=["fp32", "fp16", "bf16"])
def test_rms_norm_and_gated_mlp_run_their_triton_kernels(dtype):
    """The RMSNorm and gated-MLP kernel sets launch their own kernels, one per call, on ragged sizes
    (37 columns, a and b the strided halves of one projection), and give the reference's values
    (checked rule by rule, shape by shape in tests/ops/test_rms_norm.py and test_gated_mlp.py)."""
    torch.manual_seed(0)
    x = (torch.randn(3, 5, 37) * 3 + 0.5).to(DEVICE, dtype)
    w = torch.randn(37).to(DEVICE, dtype)
    a, b = (torch.randn(3, 5, 2 * 37) * 2).to(DEVICE, dtype).chunk(2, dim=-1)
    got, names = {}, []
    with _launch.launch_hook(lambda launch: names.append(launch.kernel.name) or False):
        got["y"], rstd = tk.BACKEND.rms_norm.forward(x, w, 1e-5)
        got["g_x"] = tk.BACKEND.rms_norm.backward(x, w, rstd)
        got["u"] = tk.BACKEND.gated_mlp.forward(a, b, "silu")
        got["s"] = tk.BACKEND.gated_mlp.backward(x, a, b, "gelu", 0.1)
    assert names == ["_rms_norm_forward_kernel", "_norm_backward_kernel", "_gated_mlp_forward_kernel",
                     "_gated_mlp_backward_kernel"]
    y_ref, rstd_ref = rms_norm_ref.forward(x, w, 1e-5)
    want = {"y": y_ref, "g_x": rms_norm_ref.backward(x, w, rstd), "u": gated_mlp_ref.forward(a, b, "silu"),
            "s": gated_mlp_ref.backward(x, a, b, "gelu", 0.1)}
    torch.testing.assert_close(rstd, rstd_ref, atol=1e-6, rtol=1e-5)  # float32 statistics: summation order
    atol, rtol = SMOKE_TOL[dtype]
    for name, value in want.items():
        assert got[name].dtype == dtype, name
        torch.testing.assert_close(got[name], value, atol=atol, rtol=rtol, msg=name)


def test_what_the_kernels_do_not_cover_launches_nothing():
    """float64, mixed dtypes, a float32 γ on bfloat16 x: the torch reference, no Triton launch."""
    x64 = torch.randn(2, 9, dtype=torch.float64, device=DEVICE)
    x16 = x64.to(torch.bfloat16)
    names = []
    with _launch.launch_hook(lambda launch: names.append(launch.kernel.name) or False):
        tk.BACKEND.rms_norm.forward(x64, None, 1e-5)
        tk.BACKEND.rms_norm.forward(x16, x64.float()[0], 1e-5)
        tk.BACKEND.gated_mlp.forward(x64, x64, "gelu")
        tk.BACKEND.gated_mlp.backward(x16, x16.float(), x16, "silu", 0.0)
    assert names == []


@pytest.mark.parametrize("kind, method", [
    pytest.param("modernbert", "attnlrp", marks=pytest.mark.slow),  # ~15 s; its cp_lrp run checks the same launches
    ("modernbert", "cp_lrp"), ("eurobert", "attnlrp"), ("eurobert", "cp_lrp"),
], ids=["modernbert-attnlrp", "modernbert-cp_lrp", "eurobert-attnlrp", "eurobert-cp_lrp"])
def test_modern_families_run_their_attention_variants_in_the_kernels(kind, method):
    """ModernBERT (rotary positions, sliding-window local layers) and EuroBERT (rotary, 6 query heads
    on 2 K/V heads), head dim 16: every attention launches the Triton kernels with its variant (where
    rotary has kernels: the interpreter, Hopper), and the attributions equal the torch backend's
    (tolerances as above)."""
    from model_factory import make_hf, padded  # tests/ helper

    hf = make_hf(kind, hidden_size=96, num_attention_heads=6).to(DEVICE)
    ids, mask, _ = padded((12, 7, 3), pad_id=hf.config.pad_token_id)
    ids, mask = ids.to(DEVICE), mask.to(DEVICE)
    launches = []
    with tk._launch.launch_hook(lambda launch: launches.append(launch) and False):
        got = attribute(hf, ids, mask, method=method, backend="triton")
    forwards = [launch for launch in launches if launch.kernel.name == "_attention_forward_kernel"]
    cos = torch.empty(1, 12, 16, device=DEVICE)
    if not tk.attention.runs_reference(torch.empty(1, 6, 12, 16, device=DEVICE), (cos, cos)):
        assert len(forwards) == hf.config.num_hidden_layers
        assert all(launch.constexprs["ROTARY"] for launch in forwards)
        windowed = {launch.constexprs["WINDOWED"] for launch in forwards}
        groups = {launch.args["G"] for launch in forwards}
        assert (windowed, groups) == (({False, True}, {1}) if kind == "modernbert" else ({False}, {3}))
    else:  # rotary positions run the torch reference on this GPU (configs._ROTARY_HEAD_DIMS)
        assert not forwards
    want = attribute(hf, ids, mask, method=method, backend="torch")
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-5)
    scale = want.logits.abs().max().item()
    torch.testing.assert_close(got.scores, want.scores, atol=1e-5 * scale, rtol=1e-4)
