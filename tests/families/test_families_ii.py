"""Model families II — ModernBERT, EuroBERT, DeBERTa-v2/v3, DeBERTa — end to end on the torch backend
(and the cpp and Triton backends against it).

Against ``transformers`` itself (random seeded configs, padded batches, ModernBERT's local windows
shorter than the sequences): logits; GS and GI against plain autograd on the transformers model at
each read-out point; CP-LRP conservation with zero biases and ε = 0 (Σ scores + position relevance
= target logit); AttnLRP and CP-LRP against the explicit float64 LRP of ``tests/explicit_lrp_modern.py``;
padding invariance; every method; checkpoints; the Explainer and ``lrp-kernels explain`` with each
family's kind of tokenizer.
"""

from __future__ import annotations

import contextlib
import copy
import json

import pytest
import torch

from lrp_kernels import Explainer, attribute
from lrp_kernels.cli import main
from lrp_kernels.errors import CheckpointError
from lrp_kernels.methods import METHODS, READ_OUT_POINTS
from lrp_kernels.models import build, config_from_dict, from_hf, load_pretrained

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.family  # parity with transformers: also run at the lowest supported release
from explicit_lrp_modern import explicit_lrp_modern  # noqa: E402  (tests/ helper)
from model_factory import hf_gradient_at, make_hf, padded, reload_strictly, zero_biases  # noqa: E402

PARITY_ATOL = 1e-5
INIT = 0.2  # weights of std 0.2: logits that are not just the biases (as in test_read_out)
#: variant -> (factory kind, config overrides)
VARIANTS = {
    "modernbert": ("modernbert", {}),
    "modernbert-cls": ("modernbert", {"classifier_pooling": "cls"}),
    "eurobert": ("eurobert", {}),
    "eurobert-mean": ("eurobert", {"classifier_pooling": "mean"}),
    "eurobert-bos": ("eurobert", {"classifier_pooling": "bos"}),
    "deberta_v3": ("deberta_v3", {}),
    "deberta_v2": ("deberta_v2", {}),
    "deberta_v1": ("deberta_v1", {}),
}
KINDS = ["modernbert", "eurobert", "deberta_v3", "deberta_v2", "deberta_v1"]
TARGET = torch.tensor([2, 0, 1])


def _hf(variant, **extra):
    kind, overrides = VARIANTS[variant]
    return make_hf(kind, initializer_range=INIT, **{**overrides, **extra})


def _batch():
    ids, mask, _ = padded((12, 7, 3))
    return ids, mask


# ----------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_equal_transformers(variant, attn):
    if attn == "sdpa" and variant.startswith("deberta"):
        pytest.skip("DeBERTa has no sdpa implementation in transformers")
    hf = _hf(variant, attn_implementation=attn)
    ids, mask = _batch()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(from_hf(hf)(ids, mask), expected, atol=PARITY_ATOL, rtol=0)


@pytest.mark.parametrize("variant", KINDS)
@pytest.mark.parametrize("point", READ_OUT_POINTS)
def test_gi_and_gs_equal_autograd_on_the_transformers_model(variant, point):
    hf = _hf(variant)
    ids, mask = _batch()
    x, grad = hf_gradient_at(hf, ids, mask, TARGET, point)
    gi = attribute(hf, ids, mask, method="grad_x_input", target=TARGET, read_at=point)
    gs = attribute(hf, ids, mask, method="gradient", target=TARGET, read_at=point)
    torch.testing.assert_close(gi.scores, (x * grad).sum(-1) * mask, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gs.scores, grad.norm(dim=-1) * mask, rtol=1e-4, atol=1e-5)
    assert gi.position_relevance is None and gs.position_relevance is None


# ---------------------------------------------------------------------------- LRP: conservation
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cp_lrp_conserves_with_zero_biases_and_eps_0(variant):
    """Σ scores + position relevance = target logit (relative 1e-4): nothing but biases absorbs."""
    hf = zero_biases(_hf(variant))
    ids, mask = _batch()
    result = attribute(hf, ids, mask, method="cp_lrp", eps=0.0, target=TARGET)
    torch.testing.assert_close(result.conservation, torch.ones(3), rtol=0, atol=1e-4)
    if variant.startswith("deberta"):  # P constant: nothing reaches the positions
        assert result.position_relevance is not None and not result.position_relevance.any()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_lrp_equals_explicit_float64(variant, method, eps):
    """x ⊙ g of one backward == relevance passed down op by op in float64, tokens and positions (1e-6)."""
    hf64 = copy.deepcopy(_hf(variant)).double()
    ids, mask = _batch()
    ours = attribute(hf64, ids, mask, method=method, target=TARGET, eps=eps, backend="torch")
    relevance, positions, logits = explicit_lrp_modern(hf64, ids, mask, TARGET, method, eps)
    torch.testing.assert_close(ours.logits.double(), logits.float().double(), rtol=1e-6, atol=1e-6)
    expected = relevance.sum(-1) * mask
    assert (ours.scores.double() - expected).abs().max() <= 1e-6 * expected.abs().max()
    if variant.startswith("deberta"):
        scale = max(expected.abs().max(), positions.abs().max())
        assert (ours.position_relevance.double() - positions).abs().max() <= 1e-6 * scale
        assert (positions.abs() > 0).all() == (method == "attnlrp")
    else:
        assert ours.position_relevance is None and not positions.any()


def test_attnlrp_position_relevance_is_part_of_the_budget():
    """DeBERTa under AttnLRP: the position relevance is reported (not zero) and counted in conservation."""
    hf = zero_biases(_hf("deberta_v3"))
    ids, mask = _batch()
    result = attribute(hf, ids, mask, method="attnlrp", eps=0.0, target=TARGET)
    total = result.scores.sum(-1) + result.position_relevance
    torch.testing.assert_close(result.conservation, total / result.target_logit)
    assert (result.position_relevance.abs() > 1e-4 * result.target_logit.abs()).all()


# ------------------------------------------------------------------------------ compiled kernels
def _assert_equals_torch(variant, method, backend, recording):
    """attribute(..., backend=backend) — run inside ``recording``, which notes the kernels launched —
    equals backend="torch" on a padded fp32 batch, and padding gets no relevance."""
    hf = _hf(variant)
    ids, mask = _batch()
    with recording:
        ours = attribute(hf, ids, mask, method=method, target=TARGET, eps=0.1, backend=backend)
    reference = attribute(hf, ids, mask, method=method, target=TARGET, eps=0.1, backend="torch")
    # float32 through 2-4 layers: kernel-vs-eager rounding (rstd summation order, erf/exp polynomials)
    torch.testing.assert_close(ours.logits, reference.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.scores, reference.scores, atol=1e-5, rtol=1e-4)
    assert not ours.scores[mask == 0].any()


@pytest.mark.parametrize("variant", ["modernbert", "eurobert", "eurobert-mean"])
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])  # the rule sets with the norm and gated MLP rules
def test_cpp_backend_equals_torch(variant, method, monkeypatch):
    """attribute(..., backend="cpp") equals backend="torch" (fp32, padded batch), and the compiled
    RMSNorm / gated MLP kernels ran (not the reference they fall back to)."""
    from lrp_kernels.backends import registry
    from lrp_kernels.backends.cpp import _glue

    reason = registry.unavailable_reason("cpp", "cpu")
    if reason is not None:
        pytest.skip(reason)
    launched, compiled = set(), _glue._C

    class Recorder:  # _glue.launch looks every kernel up on _C by name
        def __getattr__(self, name):
            launched.add(name)
            return getattr(compiled, name)

    monkeypatch.setattr(_glue, "_C", Recorder())
    _assert_equals_torch(variant, method, "cpp", contextlib.nullcontext())
    expected = {"gated_mlp_forward", "gated_mlp_backward"} | (
        {"rms_norm_forward", "rms_norm_backward"} if variant.startswith("eurobert") else set())
    assert expected <= launched


@pytest.mark.parametrize("variant", ["modernbert", "eurobert"])
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])
def test_triton_backend_equals_torch(variant, method):
    """attribute(..., backend="triton") equals backend="torch" (fp32, padded batch; Triton through its
    interpreter on the CPU), and Triton's own RMSNorm / gated-MLP kernels ran. Their attention (rotary,
    ModernBERT's windows, EuroBERT's grouped K/V heads) is the torch reference's on every backend."""
    from triton_loader import load_triton_backend  # tests/ helper: TRITON_INTERPRET=1 without a GPU

    package, reason = load_triton_backend()
    if package is None or not package.INTERPRETED:
        pytest.skip(reason or "the Triton kernels are compiled for the GPU here (this test runs them on the CPU)")
    from lrp_kernels.backends.triton import _launch

    launched = set()
    _assert_equals_torch(variant, method, "triton",
                         _launch.launch_hook(lambda launch: launched.add(launch.kernel.name) or False))
    expected = {"_gated_mlp_forward_kernel", "_gated_mlp_backward_kernel"} | (
        {"_rms_norm_forward_kernel", "_norm_backward_kernel"} if variant == "eurobert" else
        {"_layer_norm_forward_kernel", "_norm_backward_kernel"})  # ModernBERT: LayerNorm without bias
    assert expected <= launched


# ------------------------------------------------------------------------------- padding, methods
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp", "grad_x_input", "gradient"])
def test_padding_invariance(variant, method):
    """Each sequence scored alone equals its row of the padded batch (windows, pooling, positions) —
    in float64, where only a semantic difference could show (float32 differs by shape-dependent rounding)."""
    hf = copy.deepcopy(_hf(variant)).double()
    ids, mask = _batch()
    batch = attribute(hf, ids, mask, method=method, target=TARGET)
    for row, n in enumerate(mask.sum(-1).tolist()):
        alone = attribute(hf, ids[row : row + 1, :n], method=method, target=TARGET[row : row + 1])
        torch.testing.assert_close(batch.scores[row, :n], alone.scores[0], rtol=1e-6, atol=1e-9)
        assert not batch.scores[row, n:].any()
        if alone.position_relevance is not None:
            torch.testing.assert_close(batch.position_relevance[row], alone.position_relevance[0], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("variant", KINDS)
def test_every_method_runs(variant):
    hf = _hf(variant)
    ids, mask = _batch()
    for method in METHODS:
        result = attribute(hf, ids, mask, method=method, target=TARGET, ig_steps=4)
        assert result.scores.shape == ids.shape and torch.isfinite(result.scores).all(), method
        assert not result.scores[mask == 0].any(), method


@pytest.mark.parametrize("output_attentions", [False, True], ids=["sdpa", "recorded"])
def test_window_masks_are_built_on_the_inputs_device(output_attentions):
    """ModernBERT without an attention mask: the local layers' window mask must be made where the
    queries are (a CPU mask handed to SDPA on CUDA fails or copies). On the ``meta`` device every
    tensor the plain forward makes elsewhere is an error, so this runs the mask construction as a
    CUDA model would, without a GPU."""
    config = config_from_dict(_hf("modernbert").config.to_dict())
    with torch.device("meta"):
        model = build(config)
    e = torch.empty(2, 12, config.hidden_size, device="meta")
    out = model.forward_from_embeddings(e, None, output_attentions=output_attentions)
    logits = out[0] if output_attentions else out
    assert logits.device.type == "meta" and logits.shape == (2, config.num_labels)


@pytest.mark.parametrize("variant", KINDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_follows_float32(variant, dtype):
    """The rules in a 16-bit model: logits within the dtype's rounding, scores ≈ float32's (correlation)."""
    hf = _hf(variant)
    ids, mask = _batch()
    reference = attribute(hf, ids, mask, method="attnlrp", target=TARGET)
    half = attribute(copy.deepcopy(hf).to(dtype), ids, mask, method="attnlrp", target=TARGET)
    torch.testing.assert_close(half.logits, reference.logits, rtol=0, atol=0.05)
    scores = torch.stack([half.scores.flatten(), reference.scores.flatten()])
    assert torch.corrcoef(scores)[0, 1] > 0.99


# ---------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("variant", KINDS)
def test_load_pretrained_round_trip(tmp_path, variant):
    hf = _hf(variant)
    model = reload_strictly(hf, tmp_path)  # nothing missing, nothing unused
    ids, mask = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), hf(input_ids=ids, attention_mask=mask).logits,
                                   atol=PARITY_ATOL, rtol=0)


def test_headless_modernbert_gets_a_fresh_head(tmp_path):
    hf = _hf("modernbert")
    hf.model.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="initialized randomly"):
        model = load_pretrained(tmp_path, num_labels=2)
    ids, mask = _batch()
    assert model(ids, mask).shape == (3, 2)


def test_published_config_spellings_are_read():
    """config.json as the hub ships them: ModernBERT's pre-5.x rope names, EuroBERT's clf_pooling,
    DeBERTa's pos_att_type as a string and max_relative_positions -1."""
    modern = config_from_dict({"model_type": "modernbert", "hidden_size": 768, "num_attention_heads": 12,
                               "num_hidden_layers": 4, "global_attn_every_n_layers": 3, "global_rope_theta": 160000.0,
                               "local_rope_theta": 10000.0, "local_attention": 128, "norm_eps": 1e-5,
                               "hidden_activation": "gelu"})
    assert modern.layer_types == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    assert (modern.global_rope_theta, modern.local_rope_theta, modern.window("sliding_attention")) == (160000.0, 10000.0, 64)
    euro = config_from_dict({"model_type": "eurobert", "clf_pooling": "mean", "rope_theta": 250000,
                             "num_key_value_heads": 4})
    assert (euro.classifier_pooling, euro.rope_theta, euro.num_key_value_heads) == ("mean", 250000, 4)
    deberta = config_from_dict({"model_type": "deberta-v2", "hidden_size": 768, "num_attention_heads": 12,
                                "relative_attention": True, "pos_att_type": "p2c|c2p", "position_buckets": 256,
                                "max_relative_positions": -1, "max_position_embeddings": 512})
    assert deberta.terms == ("c2p", "p2c") and deberta.span == 256 and deberta.max_relative_positions == 512


@pytest.mark.parametrize("raw, match", [
    ({"model_type": "deberta-v2", "conv_kernel_size": 3}, "convolution"),
    ({"model_type": "deberta-v2", "pos_att_type": "p2p"}, "pos_att_type"),
    ({"model_type": "eurobert", "rope_parameters": {"rope_type": "llama3", "rope_theta": 1.0}}, "rotary"),
    ({"model_type": "modernbert", "classifier_pooling": "max"}, "classifier_pooling"),
    ({"model_type": "eurobert", "num_attention_heads": 12, "num_key_value_heads": 5}, "multiple"),
])
def test_unsupported_configurations_are_refused(raw, match):
    with pytest.raises(CheckpointError, match=match):
        config_from_dict(raw)


# ------------------------------------------------------------------------------------- Explainer
CORPUS = ["a gorgeous witty movie", "unbelievably boring film", "the plot was thin", "it is what it is",
          "an unbelievably gorgeous story", "boring boring plot"] * 4


def _byte_level_bpe(specials, template):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=[(t, tok.token_to_id(t)) for t in specials[:2]])
    return tok


def _unigram(specials, template):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=40, special_tokens=specials, unk_token="[UNK]",
                                                            show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=[(t, tok.token_to_id(t)) for t in specials[:2]])
    return tok


#: kind -> (tokenizer builder, special tokens: first two are the template's, then pad; template)
TOKENIZERS = {
    "modernbert": (_byte_level_bpe, ["[CLS]", "[SEP]", "[PAD]", "[MASK]"], "[CLS] $A [SEP]"),  # ModernBERT: BPE
    "eurobert": (_byte_level_bpe, ["<|begin_of_text|>", "<|end_of_text|>", "<|mask|>"],
                 "<|begin_of_text|> $A <|end_of_text|>"),  # Llama-3 style BPE, pad = eos
    "deberta_v3": (_unigram, ["[CLS]", "[SEP]", "[PAD]", "[UNK]"], "[CLS] $A [SEP]"),  # SentencePiece unigram
}


def _checkpoint(tmp_path, kind):
    build, specials, template = TOKENIZERS[kind]
    tok = build(specials, template)
    pad = specials[2] if kind != "eurobert" else "<|end_of_text|>"
    hf = make_hf(kind, initializer_range=INIT, vocab_size=tok.get_vocab_size(), pad_token_id=tok.token_to_id(pad))
    hf.save_pretrained(tmp_path)
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": pad, "model_max_length": 40}))
    return tmp_path, specials


@pytest.mark.parametrize("kind", list(TOKENIZERS))
def test_explainer_and_cli_with_the_family_tokenizer(tmp_path, kind, capsys):
    directory, specials = _checkpoint(tmp_path, kind)
    explainer = Explainer.from_pretrained(directory, method="attnlrp")
    texts = ["unbelievably boring film", "a gorgeous witty movie about the plot"]
    pieces = explainer.explain(texts)
    words = explainer.explain(texts, merge_subwords=True)
    for text, piece, word in zip(texts, pieces, words):
        assert piece.tokens[0] == specials[0] and piece.tokens[-1] == specials[1]
        assert word.tokens[1:-1] == text.split()  # the words, cut from the text by offsets
        assert len(piece.tokens) > len(word.tokens)  # "film" is several pieces in every tiny vocabulary
        assert sum(word.scores) == pytest.approx(sum(piece.scores), rel=1e-5, abs=1e-7)
    assert main(["explain", "--model", str(directory), "--no-progress", "--merge-subwords", texts[0]]) == 0
    record = json.loads(capsys.readouterr().out)  # the CLI reads the same checkpoint and tokenizer
    assert record["tokens"] == words[0].tokens and record["method"] == "attnlrp"
    batch = explainer.encoder.encode(texts)  # the same padded batch as explain()'s
    direct = attribute(explainer.model, batch.input_ids, batch.attention_mask)
    for row, piece in enumerate(pieces):
        n = len(piece.scores)
        torch.testing.assert_close(torch.tensor(piece.scores), direct.scores[row, :n], rtol=1e-5, atol=1e-7)
