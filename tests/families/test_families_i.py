"""Model families I: DistilBERT, ELECTRA, ALBERT, and XLM-R / CamemBERT proven.

Per family, on seeded random small classifiers built from ``transformers``' own config classes
(``tests/model_factory.py``), padded batches: logits equal transformers'; GS and GI equal plain
autograd on the unmodified transformers model at every read-out point; CP-LRP without biases at
ε = 0 conserves; AttnLRP and CP-LRP equal the explicit float64 layer-by-layer LRP
(``tests/explicit_lrp.py``); padding and batch composition do not change scores; checkpoints load
by ``load_pretrained`` and ``from_hf``; the Explainer runs each family's own tokenizer.
"""

import warnings

import pytest
import torch

from lrp_kernels import CheckpointError, Explainer, attribute, available_backends
from lrp_kernels.methods import METHODS, READ_OUT_POINTS
from lrp_kernels.models import EncoderClassifier, as_lrp_model, from_hf, load_pretrained, supported_model_types
from lrp_kernels.rules import Rules, lrp_rules

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.family  # parity with transformers: also run at the lowest supported release
from explicit_lrp import explicit_lrp  # noqa: E402
from family_checkpoints import shared_family_checkpoint  # noqa: E402
from model_factory import hf_gradient_at, make_hf, padded, zero_biases  # noqa: E402

NEW = ["distilbert", "electra", "albert"]
PROVEN = ["xlm-roberta", "camembert"]
KINDS = NEW + PROVEN
# weights of std 0.2: with the default 0.02 a random model's logits are mostly its biases
INIT = 0.2
TARGET = torch.tensor([2, 0, 1])


def batch(hf, lengths=(9, 5, 7), seed=1):
    """Right-padded ids, mask and (where the family has token types) a second segment."""
    types = getattr(hf.config, "type_vocab_size", 0) > 1
    return padded(lengths, pad_id=hf.config.pad_token_id, seed=seed, token_types=types)


def hf_inputs(ids, mask, types):
    return dict(input_ids=ids, attention_mask=mask, **({} if types is None else {"token_type_ids": types}))


# ------------------------------------------------------------------ parity and loading
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_equal_transformers(kind, attn):
    hf = make_hf(kind, attn_implementation=attn)
    ids, mask, types = batch(hf)
    with torch.no_grad():
        expected = hf(**hf_inputs(ids, mask, types)).logits
        ours = from_hf(hf)(ids, mask, types)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_from_hf_shares_every_parameter(kind):
    hf = make_hf(kind)
    ours = from_hf(hf)
    hf_params = {p.data_ptr() for p in hf.parameters()}
    assert all(p.data_ptr() in hf_params for p in ours.parameters())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_load_pretrained_reads_the_saved_directory(tmp_path, kind):
    hf = make_hf(kind)
    hf.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    assert isinstance(model, EncoderClassifier) and model.config.model_type == hf.config.model_type
    assert not any(p.requires_grad for p in model.parameters())
    ids, mask, types = batch(hf)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask, types), hf(**hf_inputs(ids, mask, types)).logits,
                                   atol=1e-5, rtol=0)


def test_albert_shares_one_layer_group_without_copies():
    """num_hidden_layers applications of one group: the parameters exist once, as in transformers."""
    hf = make_hf("albert")
    ours = from_hf(hf)
    assert hf.config.num_hidden_layers == 3 and len(ours.albert.encoder.albert_layer_groups) == 1
    assert len(list(ours.parameters())) == len(list(hf.parameters()))
    ids, mask, types = batch(hf)
    _, p = ours.run(ours.embed(ids, types), mask, taps=[f"layer.{i}" for i in range(3)])
    assert sorted(p.tapped) == ["layer.0", "layer.1", "layer.2"]


def test_albert_with_several_groups_and_inner_layers():
    """num_hidden_groups = 2, inner_group_num = 2 over 4 applications: transformers' group schedule,
    logits and AttnLRP relevance (explicit float64 reference) alike."""
    hf = make_hf("albert", num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2, initializer_range=INIT)
    ids, mask, types = batch(hf)
    with torch.no_grad():
        torch.testing.assert_close(from_hf(hf)(ids, mask, types), hf(**hf_inputs(ids, mask, types)).logits,
                                   atol=1e-5, rtol=0)
    hf = hf.double()
    relevance, _ = explicit_lrp(hf, ids, mask, types, target=TARGET, mode="attnlrp")
    scores = attribute(hf, ids, mask, types, method="attnlrp", target=TARGET, eps=0.0).scores.double()
    assert (scores - relevance.sum(-1)).abs().max() <= 1e-6 * relevance.sum(-1).abs().max()


def test_electra_without_projection_when_sizes_agree():
    hf = make_hf("electra", embedding_size=36)
    ours = from_hf(hf)
    assert not hasattr(ours.electra, "embeddings_project")
    ids, mask, types = batch(hf)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask, types), hf(**hf_inputs(ids, mask, types)).logits, atol=1e-5, rtol=0)


def test_unsupported_family_gets_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "mpnet"}')
    with pytest.raises(CheckpointError) as info:
        load_pretrained(tmp_path)
    message = str(info.value)
    assert "mpnet" in message and len(message.splitlines()) == 1
    assert all(kind in message for kind in supported_model_types())
    assert all(kind in supported_model_types() for kind in KINDS + ["bert", "roberta"])


# ------------------------------------------------------------------ read-out points
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("point", READ_OUT_POINTS)
def test_gi_and_gs_equal_autograd_on_the_transformers_model(kind, point):
    hf = make_hf(kind, initializer_range=INIT)
    ids, mask, types = batch(hf)
    extra = {} if types is None else {"token_type_ids": types}
    x, grad = hf_gradient_at(hf, ids, mask, TARGET, point, **extra)
    gi = attribute(hf, ids, mask, types, method="grad_x_input", target=TARGET, read_at=point)
    gs = attribute(hf, ids, mask, types, method="gradient", target=TARGET, read_at=point)
    torch.testing.assert_close(gi.scores, (x * grad).sum(-1) * mask, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gs.scores, grad.norm(dim=-1) * mask, rtol=1e-4, atol=1e-5)
    if point != "embedding_sum":  # at the norm's input x·∂f/∂x is 0 per token (the scale-invariance trap)
        assert (gi.scores.abs().amax(-1) > 1e-2 * gi.target_logit.abs()).all()


# ------------------------------------------------------------------ LRP
@pytest.mark.parametrize("kind", KINDS)
def test_cp_lrp_conserves_without_biases(kind):
    """ε = 0, every bias (norm β included) zeroed: Σ scores = target logit (fp32, 1e-4 relative)."""
    hf = zero_biases(make_hf(kind, initializer_range=INIT))
    ids, mask, types = batch(hf)
    result = attribute(hf, ids, mask, types, method="cp_lrp", eps=0.0, target=TARGET)
    torch.testing.assert_close(result.conservation, torch.ones(3), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])
@pytest.mark.parametrize("eps", [0.0, 1e-2])
def test_lrp_equals_explicit_float64_lrp(kind, method, eps):
    """attribute() (float32 scores of a float64 run) == the explicit reference to 1e-6 relative, and
    the relevance tensor x ⊙ g itself to 1e-10 (float64 rounding only)."""
    hf = make_hf(kind, initializer_range=INIT).double()
    ids, mask, types = batch(hf)
    relevance, logits = explicit_lrp(hf, ids, mask, types, target=TARGET, mode=method, eps=eps)
    ours = attribute(hf, ids, mask, types, method=method, target=TARGET, eps=eps, backend="torch")
    torch.testing.assert_close(ours.logits.double(), logits, rtol=1e-6, atol=1e-6)
    expected = relevance.sum(-1)
    assert (ours.scores.double() - expected).abs().max() <= 1e-6 * expected.abs().max()
    model = from_hf(hf)
    e = model.embed(ids, types).detach().requires_grad_(True)
    out, _ = model.run(e, mask, lrp_rules(method, eps))
    (g,) = torch.autograd.grad(out.gather(1, TARGET[:, None]).sum(), e)
    assert ((e * g).detach() - relevance).abs().max() <= 1e-10 * relevance.abs().max()


def test_distilbert_relu_under_the_identity_rule_is_its_gradient():
    """relu(x)/x = 1[x > 0]: the identity rule's modified gradient IS ReLU's gradient. With ReLU in the
    head and the FFN, the rule set "identity on activations, plain gradient elsewhere" gives the plain
    gradient exactly."""
    from lrp_kernels.ops.activation import lrp_activation

    x = torch.randn(4, 50, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 50, dtype=torch.float64)
    (rule,) = torch.autograd.grad(lrp_activation(x, "relu"), x, g)
    (plain,) = torch.autograd.grad(torch.relu(x), x, g)
    assert torch.equal(rule, plain)
    hf = make_hf("distilbert", initializer_range=INIT, hidden_act="relu").double()
    model = from_hf(hf)
    ids, mask, _ = batch(hf)
    grads = []
    for rules in (lrp_rules("lrp_epsilon", 0.0), Rules("relu-identity", 0.0, "grad", "identity", "grad")):
        e = model.embed(ids).detach().requires_grad_(True)
        out, _ = model.run(e, mask, rules)
        grads.append(torch.autograd.grad(out.gather(1, TARGET[:, None]).sum(), e)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ backends
BACKEND_METHODS = ["attnlrp", "cp_lrp", "lrp_epsilon"]


@pytest.fixture(scope="module", params=["cpp", "triton"])
def backend(request):
    """Every backend that runs here besides the torch reference; Triton through its interpreter on the
    CPU (tests/triton_loader.py sets TRITON_INTERPRET=1 before the kernels are imported)."""
    if request.param == "triton":
        from triton_loader import load_triton_backend

        load_triton_backend()
    reason = available_backends("cpu")[request.param]
    if reason is not None:
        pytest.skip(reason)
    return request.param


@pytest.mark.parametrize("kind", KINDS)
def test_every_backend_runs_the_family_and_equals_torch(backend, kind):
    hf = make_hf(kind, initializer_range=INIT, hidden_size=32, num_attention_heads=2, intermediate_size=40)
    ids, mask, types = batch(hf, lengths=(7, 4))
    for method in BACKEND_METHODS:
        got = attribute(hf, ids, mask, types, method=method, target=1, backend=backend)
        want = attribute(hf, ids, mask, types, method=method, target=1, backend="torch")
        torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-5)
        # float32, kernel vs reference summation order; measured in units of the explained logit
        scale = want.target_logit.abs().max().item()
        torch.testing.assert_close(got.scores, want.scores, atol=2e-5 * scale, rtol=1e-4)
        assert torch.count_nonzero(got.scores[1, 4:]) == 0


# ------------------------------------------------------------------ invariances
INVARIANCE_METHODS = [m for m in METHODS if m != "random"]  # random draws its noise per call


@pytest.fixture(scope="module", params=KINDS)
def hf64(request):
    return make_hf(request.param, initializer_range=INIT).double()


def _scores(hf, ids, mask, types, method):
    return attribute(hf, ids, mask, types, method=method, target=1, ig_steps=4).scores


@pytest.mark.parametrize("method", INVARIANCE_METHODS)
def test_padding_and_batch_composition_invariance(hf64, method):
    """float64: a sentence alone, in a padded batch, and in a batch of other sentences gets the same
    scores (1e-5); padding gets exactly 0."""
    ids, mask, types = batch(hf64, lengths=(6, 11, 3, 8), seed=2)
    together = _scores(hf64, ids, mask, types, method)
    shuffled = [2, 0, 3, 1]
    others = _scores(hf64, ids[shuffled], mask[shuffled], None if types is None else types[shuffled], method)
    torch.testing.assert_close(others, together[shuffled], rtol=1e-5, atol=1e-5)
    for i in range(len(ids)):
        n = int(mask[i].sum())
        alone = _scores(hf64, ids[i:i + 1, :n], mask[i:i + 1, :n], None if types is None else types[i:i + 1, :n],
                        method)
        torch.testing.assert_close(together[i, :n], alone[0], rtol=1e-5, atol=1e-5)
        assert torch.equal(together[i, n:], torch.zeros_like(together[i, n:]))


# ------------------------------------------------------------------ XLM-R, CamemBERT: the big vocabulary
@pytest.mark.parametrize("kind", PROVEN)
def test_no_gradient_ever_reaches_the_embedding_matrix(kind):
    """A 250k vocabulary costs nothing in the backward: parameters never require grad during
    attribution, so no gradient is ever computed for the embedding matrix (a hook on the tensor
    would see it) and the embedding lookup is outside the graph."""
    hf = make_hf(kind, vocab_size=250002)
    ids, mask, _ = batch(hf)
    word = hf.base_model.embeddings.word_embeddings.weight
    computed, in_graph = [], []
    tensor_hook = word.register_hook(lambda grad: computed.append(grad.shape))
    ours = as_lrp_model(hf)
    assert ours.word_embeddings.weight is word  # shared, not copied
    module_hook = ours.word_embeddings.register_forward_hook(lambda m, args, out: in_graph.append(out.requires_grad))
    try:
        for method in ("attnlrp", "cp_lrp", "grad_x_input", "integrated_gradients"):
            attribute(hf, ids, mask, method=method, ig_steps=2)
    finally:
        tensor_hook.remove()
        module_hook.remove()
    assert computed == [] and in_graph and not any(in_graph)
    assert word.grad is None and all(p.grad is None for p in hf.parameters())
    assert word.requires_grad  # the transformers model's own flags are restored


@pytest.mark.parametrize("kind", KINDS)
def test_explainer_runs_the_family_tokenizer(kind):
    """The saved checkpoint's own tokenizer (WordPiece ``##`` or SentencePiece ``▁``) through the
    Explainer: tokens as the transformers tokenizer makes them, probabilities as its model gives."""
    path = shared_family_checkpoint(kind)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    texts = ["the films were dull", "a witty and moving story, never boring"]
    explainer = Explainer.from_pretrained(path, method="attnlrp")
    explanations = explainer.explain(texts, target=1)
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = hf(**encoded).logits.softmax(-1)
    for i, explanation in enumerate(explanations):
        n = int(encoded.attention_mask[i].sum())
        assert explanation.tokens == tokenizer.convert_ids_to_tokens(encoded.input_ids[i, :n])
        assert explanation.probability == pytest.approx(probs[i].max().item(), abs=1e-5)
        assert explanation.label_name in ("negative", "positive") and len(explanation.scores) == n
    marker = "▁" if kind in ("albert", "xlm-roberta", "camembert") else "##"
    assert any(marker in t for t in explanations[0].tokens)
    merged = explainer.explain(texts[:1], target=1, merge_subwords=True)[0]
    assert [t for t, s in zip(merged.tokens, merged.special) if not s] == ["the", "films", "were", "dull"]
    assert sum(merged.scores) == pytest.approx(sum(explanations[0].scores), abs=1e-5)


def test_a_sentencepiece_model_without_tokenizer_json_says_how_to_convert(tmp_path):
    from lrp_kernels.tokenization import TextEncoder

    (tmp_path / "spiece.model").write_bytes(b"\x0a")
    with pytest.raises(CheckpointError, match="only the SentencePiece model spiece.model.*save_pretrained"):
        TextEncoder.from_pretrained(tmp_path)


def test_headless_checkpoints_get_a_fresh_head(tmp_path):
    """A pre-training checkpoint (DistilBertForMaskedLM, ElectraForPreTraining, AlbertForMaskedLM):
    the encoder loads, the pre-training head is ignored, the classification head is initialized."""
    heads = {"distilbert": "DistilBertForMaskedLM", "electra": "ElectraForPreTraining", "albert": "AlbertForMaskedLM"}
    for kind, cls in heads.items():
        config = make_hf(kind).config
        getattr(transformers, cls)(config).save_pretrained(tmp_path / kind)
        with pytest.warns(UserWarning, match="initialized randomly"):
            model = load_pretrained(tmp_path / kind, num_labels=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert torch.isfinite(model(*batch(make_hf(kind))[:2])).all()


# ------------------------------------------------------------------ base-size benchmark models
@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra",
                                        "albert"])
def test_base_configs_build_what_transformers_builds(model_type):
    """benchmarking.BASE_CONFIGS read as config.json: our classifier has the parameter names and
    shapes of transformers' model of the same config (both on the meta device: nothing allocated)."""
    from lrp_kernels.benchmarking import BASE_CONFIGS
    from lrp_kernels.models import build, config_from_dict

    raw = BASE_CONFIGS[model_type]
    with torch.device("meta"):
        ours = build(config_from_dict(raw, num_labels=2))
        hf = transformers.AutoModelForSequenceClassification.from_config(
            transformers.AutoConfig.for_model(**raw, num_labels=2))
    shapes = {name: tuple(p.shape) for name, p in ours.named_parameters()}
    assert shapes == {name: tuple(p.shape) for name, p in hf.named_parameters()}
