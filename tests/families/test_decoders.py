"""Decoder classifiers — Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 (text), Phi-3, GPT-2 — against
``transformers`` itself, on seeded random small models (2 layers, hidden 32; biases and norm weights
perturbed; windows shorter than the batches) and padded batches, right and left.

Logits (eager and sdpa); the read index (the rightmost non-pad token, as transformers pools); GS and
GI against plain autograd on the transformers model at the first block's input; CP-LRP conservation
with zero biases and ε = 0; AttnLRP and CP-LRP against the explicit float64 LRP of
``tests/explicit_lrp_decoder.py`` (Llama, Mistral, Qwen2, Gemma 2, GPT-2); padding invariance (left for
the rotary families, right for GPT-2, whose positions are the columns); every method; the refusal of
a padded batch without a pad id; bf16; relevance per layer; the cpp backend; checkpoints.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch

from lrp_kernels import attribute
from lrp_kernels.errors import CheckpointError, InputError
from lrp_kernels.methods import METHODS, READ_OUT_POINTS
from lrp_kernels.models import config_from_dict, from_hf, load_pretrained

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.family  # parity with transformers: also run at the lowest supported release

from explicit_lrp_decoder import explicit_lrp_decoder  # noqa: E402  (tests/ helper)
from model_factory import (DECODERS, QWEN_LAYER_WINDOWS, decoder_gradient, installed_version, make_hf,  # noqa: E402
                           padded, reload_strictly, require_family, zero_biases)

INIT = 0.2  # weights of std 0.2: logits that are not just the biases
TARGET = torch.tensor([2, 0, 1])
ROTARY = [k for k in DECODERS if k != "gpt2"]
#: the families the explicit float64 LRP is written for
EXPLICIT = [k for k in ("llama", "mistral", "qwen2", "gemma2", "gpt2") if k in DECODERS]


def _hf(kind, **extra):
    transformers.logging.set_verbosity_error()
    return make_hf(kind, initializer_range=INIT, **extra)


def _right():
    ids, mask, _ = padded((12, 7, 3))
    return ids, mask


def _left():
    """The same rows as :func:`_right`, padded on the left."""
    ids, mask = _right()
    out_ids, out_mask = torch.zeros_like(ids), torch.zeros_like(mask)
    for row, n in enumerate(mask.sum(-1).tolist()):
        out_ids[row, -n:], out_mask[row, -n:] = ids[row, :n], 1
    return out_ids, out_mask


BATCHES = {"right": _right, "left": _left}


def fast(values, *quick):
    """``values`` as parameters, those not in ``quick`` marked slow (the default run keeps one of each)."""
    return [v if v in quick else pytest.param(v, marks=pytest.mark.slow) for v in values]


# ----------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize("attn", fast(["eager", "sdpa"], "eager"))
@pytest.mark.parametrize("padding", list(BATCHES))
def test_logits_equal_transformers(kind, attn, padding):
    if attn == "sdpa" and kind == "gemma2":
        pytest.skip("Gemma 2 has no soft-capping sdpa attention: transformers 5 has none for it, 4.x's "
                    "sdpa_attention_forward ignores softcap (test_gemma2_sdpa_of_transformers_4_is_named)")
    hf = _hf(kind, attn_implementation=attn)
    ids, mask = BATCHES[padding]()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        # float32 through 2 layers, eager vs fused attention: a few ulp of |logits| ~ 2
        torch.testing.assert_close(from_hf(hf)(ids, mask), expected, atol=1e-5, rtol=0)


#: the first transformers release that pools a decoder classifier at the rightmost non-pad token; before
#: it (4.48) ``*ForSequenceClassification`` read the token before the FIRST pad id
#: (``eq(input_ids, pad).argmax(-1) - 1``, modulo the length): the same position for right and left
#: padding, another one where the pad id occurs among a row's tokens (pad = eos) or fills the row
RIGHTMOST_POOLING = (4, 49)
#: right padding, left padding, the pad id inside a row, a row of padding only
POOLED_IDS = torch.tensor([[5, 6, 7, 0, 0], [0, 0, 5, 6, 7], [5, 0, 6, 0, 0], [0, 0, 0, 0, 0]])


def test_read_index_is_the_rightmost_token_that_is_not_padding():
    """Pooling by the ids, not the attention mask: a trailing id equal to the pad id is skipped even where
    the mask keeps it (pad = eos), and a row of padding only reads position 0."""
    assert from_hf(_hf("llama")).read_index(POOLED_IDS).tolist() == [2, 4, 2, 0]


@pytest.mark.parametrize("rows", [pytest.param([0, 1], id="padding"), pytest.param([2, 3], id="pad-id-inside")])
def test_the_read_index_is_where_transformers_pools(rows):
    hf = _hf("llama")
    if rows != [0, 1] and installed_version() < RIGHTMOST_POOLING:
        pytest.skip(f"transformers {transformers.__version__} pools at the token before the first pad id "
                    "(rightmost non-pad token from 4.49 on, as lrp-kernels)")
    ids = POOLED_IDS[rows]
    mask = torch.ones_like(ids)  # the pad id inside the kept tokens
    with torch.no_grad():
        torch.testing.assert_close(from_hf(hf)(ids, mask), hf(input_ids=ids, attention_mask=mask).logits,
                                   atol=1e-5, rtol=0)


def test_a_batch_without_a_pad_id_is_refused_as_transformers_refuses_it():
    hf = _hf("qwen2", pad_token_id=None)
    ids, mask = _right()
    with pytest.raises(ValueError, match="Cannot handle batch sizes > 1"):
        hf(input_ids=ids, attention_mask=mask)
    with pytest.raises(InputError, match="Cannot handle batch sizes > 1 if no padding token is defined"):
        attribute(hf, ids, mask)
    one = ids[:1]  # one row: the last position, as transformers reads it
    result = attribute(hf, one, method="grad_x_input")
    with torch.no_grad():
        torch.testing.assert_close(result.logits, hf(input_ids=one).logits, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize("point", fast(READ_OUT_POINTS, "embedding_sum"))
@pytest.mark.parametrize("padding", fast(list(BATCHES), "left"))
def test_gi_and_gs_equal_autograd_on_the_transformers_model(kind, point, padding):
    """Every read-out point of a decoder is the first block's input e (``word_embeddings``: its token
    term, the gradient being the one at e)."""
    hf = _hf(kind)
    ids, mask = BATCHES[padding]()
    e, grad, words = decoder_gradient(hf, ids, mask, TARGET)
    x = words if point == "word_embeddings" else e
    gi = attribute(hf, ids, mask, method="grad_x_input", target=TARGET, read_at=point)
    gs = attribute(hf, ids, mask, method="gradient", target=TARGET, read_at=point)
    # float32 gradients of two implementations (fused vs eager attention): relative 1e-4
    torch.testing.assert_close(gi.scores, (x * grad).sum(-1) * mask, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gs.scores, grad.norm(dim=-1) * mask, rtol=1e-4, atol=1e-5)
    assert gi.scores.abs().max() > 1e-2 and gs.scores.abs().max() > 1e-2  # not ≈ 0


# ---------------------------------------------------------------------------- LRP: conservation
@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize("padding", fast(list(BATCHES), "left"))
def test_cp_lrp_conserves_with_zero_biases_and_eps_0(kind, padding):
    """Σ scores = target logit (relative 1e-4): with no bias and no β nothing absorbs relevance."""
    hf = zero_biases(_hf(kind))
    ids, mask = BATCHES[padding]()
    result = attribute(hf, ids, mask, method="cp_lrp", eps=0.0, target=TARGET)
    torch.testing.assert_close(result.conservation, torch.ones(3), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", fast(EXPLICIT, "llama", "gemma2", "gpt2"))
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])
@pytest.mark.parametrize("eps", fast([0.0, 0.1], 0.1))
@pytest.mark.parametrize("padding", fast(list(BATCHES), "left"))
def test_lrp_equals_explicit_float64(kind, method, eps, padding):
    """x ⊙ g of one backward == relevance passed down op by op in float64 (1e-6 of the largest score)."""
    hf64 = copy.deepcopy(_hf(kind)).double()
    ids, mask = BATCHES[padding]()
    ours = attribute(hf64, ids, mask, method=method, target=TARGET, eps=eps, backend="torch")
    relevance, logits = explicit_lrp_decoder(hf64, ids, mask, TARGET, method, eps)
    torch.testing.assert_close(ours.logits.double(), logits.float().double(), rtol=1e-6, atol=1e-6)
    expected = relevance.sum(-1) * mask
    assert (ours.scores.double() - expected).abs().max() <= 1e-6 * expected.abs().max()
    assert expected.abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_float64_scores_are_rounded_once(kind):
    """A float64 model's scores are Σ x ⊙ g summed in float64 and rounded to float32 once (the
    per-layer record too): one float32 rounding of the explicit float64 LRP (which agrees with
    ours to ~1e-15 before it; 1 ulp either way at a rounding boundary) — summing products already
    rounded to float32 errs by ~6e-8 of Σ|x ⊙ g| over the hidden units, many ulps of a score that
    cancels."""
    hf64 = copy.deepcopy(_hf(kind)).double()
    ids, mask = _left()
    ours = attribute(hf64, ids, mask, method="attnlrp", target=TARGET, eps=0.0, backend="torch", layers=True)
    relevance, _ = explicit_lrp_decoder(hf64, ids, mask, TARGET, "attnlrp", 0.0)
    expected = (relevance.sum(-1) * mask).float()
    one_ulp = 2.0**-23
    torch.testing.assert_close(ours.scores, expected, rtol=one_ulp, atol=1e-12)
    torch.testing.assert_close(ours.layers.relevance[:, 0], expected, rtol=one_ulp, atol=1e-12)


@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize("method", fast(["attnlrp", "cp_lrp", "grad_x_input"], "attnlrp"))
def test_padding_invariance(kind, method):
    """Each sequence scored alone equals its row of the padded batch, exactly 0 at the padding — left
    padding for the rotary families (positions shift, rotary attention does not see it), right padding
    for GPT-2 (its learned positions are the columns). In float64, where only a semantic difference
    could show — but the rotary angles are computed in float32, as transformers computes them for every
    dtype: a shifted position's angle p·θ differs by float32 rounding (~6e-8 relative), so the rotary
    families agree to 2e-5 relative (GPT-2: 1e-9)."""
    hf = copy.deepcopy(_hf(kind)).double()
    ids, mask = (_right if kind == "gpt2" else _left)()
    batch = attribute(hf, ids, mask, method=method, target=TARGET)
    assert torch.isfinite(batch.scores).all()
    rtol = 1e-9 if kind == "gpt2" else 2e-5
    for row in range(len(ids)):
        keep = mask[row].bool()
        alone = attribute(hf, ids[row : row + 1, keep], method=method, target=TARGET[row : row + 1])
        scale = alone.scores.abs().max()
        torch.testing.assert_close(batch.scores[row, keep], alone.scores[0], rtol=rtol, atol=rtol * scale)
        assert not batch.scores[row, ~keep].any()


def test_left_padding_changes_gpt2_as_it_changes_transformers():
    """GPT-2's positions count from the first column, pads included: a left-padded row is a different
    input, for transformers and here alike (no re-packing)."""
    hf = _hf("gpt2")
    ids, mask = _left()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        alone = hf(input_ids=ids[2:, -3:]).logits
    result = attribute(hf, ids, mask, method="attnlrp", target=TARGET)
    torch.testing.assert_close(result.logits, expected, atol=1e-5, rtol=0)
    assert (expected[2] - alone[0]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", DECODERS)
def test_every_method_runs(kind):
    hf = _hf(kind)
    ids, mask = _left()
    for method in METHODS:
        result = attribute(hf, ids, mask, method=method, target=TARGET, ig_steps=4)
        assert result.scores.shape == ids.shape and torch.isfinite(result.scores).all(), method
        assert not result.scores[mask == 0].any(), method


def test_attention_methods_trace_from_the_token_the_head_reads():
    """LAT and rollout start from the read index (the last token), not from the first token — which, under
    causal attention, reads only itself."""
    hf = _hf("llama")
    ids, mask = _right()
    for method in ("lat", "rollout"):
        scores = attribute(hf, ids, mask, method=method).scores
        for row, n in enumerate(mask.sum(-1).tolist()):
            assert scores[row, : n - 1].abs().sum() > 0, method


@pytest.mark.parametrize("kind", fast(["llama", "gemma2", "gpt2"], "llama"))
def test_target_all_and_contrast(kind):
    hf = _hf(kind)
    ids, mask = _left()
    every = attribute(hf, ids, mask, method="attnlrp", target="all")
    for k in range(3):
        one = attribute(hf, ids, mask, method="attnlrp", target=k)
        torch.testing.assert_close(every.scores[:, k], one.scores, rtol=1e-4, atol=1e-6)
    diff = attribute(hf, ids, mask, method="grad_x_input", target=0, contrast=1)
    a, b = (attribute(hf, ids, mask, method="grad_x_input", target=t).scores for t in (0, 1))
    torch.testing.assert_close(diff.scores, a - b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize("method", fast(["attnlrp", "cp_lrp"], "attnlrp"))
def test_relevance_per_layer_loses_nothing_unexplained(kind, method):
    """layers=True: every op goes through the pass, so what no recorded op explains (``other``) is ≈ 0."""
    hf = _hf(kind)
    ids, mask = _left()
    result = attribute(hf, ids, mask, method=method, target=TARGET, layers=True)
    layers = result.layers
    other = layers.absorbed[..., layers.kinds.index("other")]
    assert other.abs().max() <= 1e-4 * result.target_logit.abs().max()
    torch.testing.assert_close(layers.relevance[:, 0], result.scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", DECODERS)
def test_bf16_weights_give_finite_scores_near_float32(kind):
    """Decoders ship in bf16: the rules accumulate in float32; logits within bf16 rounding of float32's
    (2 layers, 2^-8 relative per rounding), scores correlated with float32's."""
    hf = _hf(kind)
    ids, mask = _left()
    reference = attribute(hf, ids, mask, method="attnlrp", target=TARGET)
    half = attribute(copy.deepcopy(hf).to(torch.bfloat16), ids, mask, method="attnlrp", target=TARGET)
    assert torch.isfinite(half.scores).all()
    torch.testing.assert_close(half.logits, reference.logits, rtol=0, atol=0.1)
    scores = torch.stack([half.scores.flatten(), reference.scores.flatten()])
    assert torch.corrcoef(scores)[0, 1] > 0.98


@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize("method", fast(["attnlrp", "cp_lrp"], "attnlrp"))
def test_cpp_backend_equals_torch(kind, method):
    from lrp_kernels.backends import registry

    reason = registry.unavailable_reason("cpp", "cpu")
    if reason is not None:
        pytest.skip(reason)
    hf = _hf(kind)
    ids, mask = _left()
    ours = attribute(hf, ids, mask, method=method, target=TARGET, eps=0.1, backend="cpp")
    reference = attribute(hf, ids, mask, method=method, target=TARGET, eps=0.1, backend="torch")
    # float32 through 2 layers: kernel-vs-eager rounding (rstd summation order, exp/erf polynomials)
    torch.testing.assert_close(ours.logits, reference.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.scores, reference.scores, atol=1e-5, rtol=1e-4)
    assert not ours.scores[mask == 0].any()


# ---------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", DECODERS)
def test_load_pretrained_round_trip(tmp_path, kind):
    hf = _hf(kind)
    model = reload_strictly(hf, tmp_path)  # nothing missing, nothing unused
    ids, mask = _left()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), hf(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=0)


def test_a_causal_lm_checkpoint_loads_as_the_language_model_not_as_a_classifier(tmp_path):
    """(tests/families/test_language_models.py tests the language models themselves.)"""
    from lrp_kernels.models.decoder import DecoderLM

    config = _hf("llama").config
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    assert isinstance(model, DecoderLM) and not hasattr(model, "score")
    assert model.config.num_labels == config.vocab_size and model.config.id2label == {}
    transformers.LlamaForTokenClassification(config).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="not a sequence classifier"):
        load_pretrained(tmp_path)


#: config.json values of each decoder family's transformers config class, checked against ours
DEFAULT_FIELDS = ("num_key_value_heads", "head_dim", "rms_norm_eps", "sliding_window", "query_pre_attn_scalar",
                  "attn_logit_softcapping", "layer_types", "pad_token_id")


@pytest.mark.parametrize("kind", DECODERS)
def test_left_out_values_are_the_family_defaults(kind):
    """A config.json that leaves a value out means the transformers config class's default."""
    require_family(kind)
    hf = transformers.AutoConfig.for_model(kind).get_text_config()
    ours = config_from_dict({"model_type": kind})
    theirs = {f: getattr(hf, f) for f in DEFAULT_FIELDS if hasattr(hf, f)}
    theirs["layer_norm_eps"] = theirs.pop("rms_norm_eps", getattr(hf, "layer_norm_epsilon", None))
    if "head_dim" in theirs and theirs["head_dim"] is None:  # Mistral 4.57: hidden // heads, read so by its model
        theirs["head_dim"] = hf.hidden_size // hf.num_attention_heads
    if kind.startswith("gemma3"):
        theirs["attn_logit_softcapping"] = None  # transformers' Gemma 3 attention does not apply it
    if kind in ("mistral", "phi3"):  # every layer slides when a window is set (they have no layer_types)
        theirs["layer_types"] = ["sliding_attention" if hf.sliding_window else "full_attention"] * hf.num_hidden_layers
    for name, value in theirs.items():
        assert getattr(ours, name) == value, name
    rope = getattr(hf, "rope_parameters", None) if kind != "gpt2" else None
    for layer_type in set(ours.layer_types) if rope else ():
        params = rope.get(layer_type, rope) if isinstance(rope, dict) else rope
        assert ours.rope[layer_type]["rope_theta"] == params["rope_theta"], layer_type


@pytest.mark.parametrize("raw, match", [
    ({"model_type": "llama", "rope_parameters": {"rope_type": "yarn", "rope_theta": 1.0, "factor": 2.0}}, "rope_type"),
    ({"model_type": "phi3", "partial_rotary_factor": 0.75}, "partial_rotary_factor"),
    ({"model_type": "gemma3_text", "use_bidirectional_attention": True}, "bidirectional"),
    ({"model_type": "llama", "num_attention_heads": 12, "num_key_value_heads": 5}, "multiple"),
    ({"model_type": "gpt2", "add_cross_attention": True}, "cross-attention"),
])
def test_unsupported_configurations_are_refused(raw, match):
    with pytest.raises(CheckpointError, match=match):
        config_from_dict(raw)


_QWEN_WINDOW = {"model_type": "qwen2", "num_hidden_layers": 2, "use_sliding_window": True, "sliding_window": 4}


@pytest.mark.parametrize("raw, attn, version, match", [
    ({"model_type": "gemma2"}, "sdpa", (4, 48), "without the soft-capping"),
    ({"model_type": "gemma2"}, "sdpa", (4, 57), "without the soft-capping"),
    ({"model_type": "gemma2"}, "eager", (4, 48), None),
    ({"model_type": "gemma2"}, "sdpa", (5, 0), None),  # transformers 5 refuses sdpa for Gemma 2
    ({"model_type": "gemma2", "attn_logit_softcapping": None}, "sdpa", (4, 48), None),
    ({**_QWEN_WINDOW, "max_window_layers": 1}, "eager", (4, 48), "ignores the sliding window"),
    ({**_QWEN_WINDOW, "max_window_layers": 1}, "sdpa", (4, 52), "slides every layer"),
    ({**_QWEN_WINDOW, "max_window_layers": 0}, "sdpa", (4, 52), None),  # every layer slides in both
    ({**_QWEN_WINDOW, "max_window_layers": 2}, "eager", (4, 48), None),  # no layer slides in both
    ({**_QWEN_WINDOW, "max_window_layers": 1, "model_type": "qwen3"}, "eager", (4, 51), "slides every layer"),
    ({**_QWEN_WINDOW, "max_window_layers": 1}, "flash_attention_2", (4, 48), None),
    ({**_QWEN_WINDOW, "max_window_layers": 1}, "eager", (4, 53), None),
    ({**_QWEN_WINDOW, "use_sliding_window": False}, "eager", (4, 48), None),
    ({"model_type": "llama"}, "sdpa", (4, 48), None),
])
def test_what_a_transformers_release_computes_otherwise_is_named(raw, attn, version, match):
    """The releases whose classes compute another model than the config describes (read from their
    modeling files): Gemma 2 under 4.x's sdpa (no soft-capping), Qwen2/3 windows before 4.53."""
    differs = config_from_dict(raw).transformers_differs(attn, version)
    assert differs is None if match is None else match in differs


def test_gemma2_sdpa_of_transformers_4_is_named():
    """from_hf warns where the transformers model computes another function (here at 4.x; transformers 5
    has no sdpa Gemma 2 and make_hf skips) — and the two differ by the soft-capping alone."""
    hf = _hf("gemma2", attn_implementation="sdpa")
    ids, mask = _left()
    with pytest.warns(UserWarning, match="without the soft-capping"):
        ours = from_hf(hf)
    eager = copy.deepcopy(hf)
    eager.config._attn_implementation = "eager"
    with torch.no_grad():
        sdpa_logits, eager_logits = hf(input_ids=ids, attention_mask=mask).logits, eager(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(ours(ids, mask), eager_logits, atol=1e-5, rtol=0)
    assert (sdpa_logits - eager_logits).abs().max() > 1e-2


def test_a_model_that_transformers_computes_as_described_converts_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kind in ("gemma2", "qwen2"):
            from_hf(_hf(kind))


LEGACY_CONFIGS = json.loads((Path(__file__).parents[1] / "references" / "decoder_configs_transformers_4_52.json")
                            .read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", sorted(LEGACY_CONFIGS))
def test_config_json_saved_by_transformers_4_52_loads(tmp_path, kind):
    """config.json as transformers 4.52 saved these random small classifiers (rope_theta / rope_scaling,
    rope_local_base_freq, sliding_window_pattern, head_dim null, n_embd…; Gemma 3 had no classifier
    class then: its text config) reads as transformers 5 reads it: the model transformers 5 builds
    from it and ours give the same logits."""
    require_family(kind)
    if kind == "qwen2" and installed_version() < QWEN_LAYER_WINDOWS:
        pytest.skip(f"transformers {transformers.__version__}'s eager Qwen2 does not slide the layers from "
                    "max_window_layers on (model_factory.QWEN_LAYER_WINDOWS)")
    raw = dict(LEGACY_CONFIGS[kind])
    # eager: the attention that soft-caps Gemma 2 in every release; no cache (4.48's overflows past the window)
    config = transformers.AutoConfig.for_model(**raw, attn_implementation="eager", use_cache=False)
    torch.manual_seed(0)
    hf = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name or ".ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    raw["architectures"] = [type(hf).__name__]
    (tmp_path / "config.json").write_text(json.dumps(raw), encoding="utf-8")  # the 4.52 file, as it was
    ids, mask = _left()
    with torch.no_grad():
        torch.testing.assert_close(load_pretrained(tmp_path)(ids, mask), hf(input_ids=ids, attention_mask=mask).logits,
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind, sizes", [
    ("gemma3_text", dict(vocab_size=262208)),  # Gemma 3's vocabulary: ids past 250k
    ("llama", dict(hidden_size=2048, num_attention_heads=16, num_key_value_heads=4, intermediate_size=64,
                   num_hidden_layers=1)),  # hidden 2048: the cpp norms and the gated MLP past 1024
], ids=["vocab-262k", "hidden-2048"])
def test_decoder_sizes_past_the_encoders(kind, sizes):
    hf = _hf(kind, **sizes)
    ids, mask = _left()
    ids = torch.where(mask.bool(), ids + hf.config.get_text_config().vocab_size - 100, ids)  # the last ids
    with torch.no_grad():
        torch.testing.assert_close(from_hf(hf)(ids, mask), hf(input_ids=ids, attention_mask=mask).logits,
                                   atol=1e-5, rtol=1e-5)
    from lrp_kernels.backends import registry

    for backend in ("torch", "cpp") if registry.unavailable_reason("cpp", "cpu") is None else ("torch",):
        result = attribute(hf, ids, mask, method="attnlrp", target=TARGET, backend=backend)
        assert torch.isfinite(result.scores).all() and result.scores.abs().max() > 0
