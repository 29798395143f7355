"""attribute(): the single-backward relevance equals the explicit float64 LRP, conservation, padding
invariance, the gradient methods against independent autograd, IG completeness, attention methods."""

import copy
import warnings

import pytest
import torch

import lrp_kernels
from lrp_kernels import InputError, attribute
from lrp_kernels.models import from_hf

transformers = pytest.importorskip("transformers")
import model_factory  # noqa: E402
from explicit_lrp import explicit_lrp, make_random_bert  # noqa: E402  (tests/ helper, needs transformers)


def padded(lengths, vocab=50, seed=3, pad_id=0):
    return model_factory.padded(lengths, pad_id=pad_id, vocab=vocab, seed=seed, first_id=1, token_types=True)


@pytest.fixture(scope="module")
def tiny_hf():
    return make_random_bert(seed=0)


@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])
@pytest.mark.parametrize("eps", [0.0, 1e-2])
def test_single_backward_equals_explicit_float64_lrp(tiny_hf, method, eps):
    """x ⊙ g from one backward pass == relevance passed down layer by layer in float64 (1e-6 rel)."""
    hf64 = copy.deepcopy(tiny_hf).double()
    ids, mask, types = padded([9, 5, 7])
    target = torch.tensor([0, 2, 1])
    ours = attribute(hf64, ids, mask, types, method=method, target=target, eps=eps, backend="torch")
    relevance, logits = explicit_lrp(hf64, ids, mask, types, target=target, mode=method, eps=eps)
    torch.testing.assert_close(ours.logits.double(), logits.float().double(), rtol=1e-6, atol=1e-6)
    expected = relevance.sum(-1)
    scale = expected.abs().max()
    assert (ours.scores.double() - expected).abs().max() <= 1e-6 * scale


def test_cp_lrp_is_exactly_conservative_without_biases(tiny_hf):
    """ε = 0, every bias (LayerNorm β too) zeroed: Σ scores = target logit (fp32, 1e-4 relative)."""
    model = model_factory.zero_biases(copy.deepcopy(tiny_hf))
    ids, mask, types = padded([10, 6])
    result = attribute(model, ids, mask, types, method="cp_lrp", eps=0.0)
    torch.testing.assert_close(result.conservation, torch.ones(2), rtol=1e-4, atol=1e-4)


def test_attnlrp_drops_the_softmax_taylor_remainder(tiny_hf):
    """attnlrp is not conservative even without biases (the softmax rule is first order): the ratio is
    finite and differs from 1 — reported, not asserted equal to 1."""
    model = model_factory.zero_biases(copy.deepcopy(tiny_hf))
    ids, mask, types = padded([10, 6])
    ratio = attribute(model, ids, mask, types, method="attnlrp", eps=0.0).conservation
    assert torch.isfinite(ratio).all()
    assert (ratio - 1).abs().max() > 1e-3


@pytest.mark.parametrize("method", lrp_kernels.METHODS)
def test_padding_invariance(tiny_hf, method):
    """A sentence alone and inside a padded batch of other lengths gets the same scores (1e-5)."""
    ids, mask, types = padded([6, 11, 3, 8])
    batch = attribute(tiny_hf, ids, mask, types, method=method, target=1, ig_steps=8)
    for i in range(ids.shape[0]):
        n = int(mask[i].sum())
        alone = attribute(tiny_hf, ids[i : i + 1, :n], mask[i : i + 1, :n], types[i : i + 1, :n],
                          method=method, target=1, ig_steps=8)
        if method == "random":
            continue  # its noise is drawn per call, not per token identity
        torch.testing.assert_close(batch.scores[i, :n], alone.scores[0], rtol=1e-5, atol=1e-5)
        assert torch.equal(batch.scores[i, n:], torch.zeros_like(batch.scores[i, n:]))


@pytest.mark.parametrize("baseline", ["pad", "zero"])
def test_integrated_gradients_completeness(tiny_hf, baseline):
    """Σ IG ≈ f(x) − f(x′) for the target logit."""
    ids, mask, types = padded([8, 5])
    model = from_hf(tiny_hf)
    result = attribute(model, ids, mask, types, method="integrated_gradients", target=1, ig_steps=128,
                       ig_baseline=baseline, ig_batch_size=64)
    with torch.no_grad():
        e = model.embed(ids, types)
        word = model.backbone.embeddings.word_embeddings
        e0 = e - word(ids) + (0 if baseline == "zero" else word(torch.zeros_like(ids)))
        gap = (model.forward_from_embeddings(e, mask) - model.forward_from_embeddings(e0, mask))[:, 1]
    torch.testing.assert_close(result.scores.sum(-1), gap, rtol=2e-2, atol=2e-2)


def test_integrated_gradients_chunking_does_not_change_the_result(tiny_hf):
    ids, mask, types = padded([8, 5])
    a = attribute(tiny_hf, ids, mask, types, method="integrated_gradients", ig_steps=10, ig_batch_size=2)
    b = attribute(tiny_hf, ids, mask, types, method="integrated_gradients", ig_steps=10, ig_batch_size=1000)
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-5, atol=1e-6)


def _attention_probs(hf, ids, mask, types):
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_attentions=True)
    return [a.double() for a in out.attentions]


def test_lat_chains_each_head_from_cls(tiny_hf):
    ids, mask, types = padded([7, 4])
    probs = _attention_probs(tiny_hf, ids, mask, types)
    result = attribute(tiny_hf, ids, mask, types, method="lat")
    for b in range(2):
        total = torch.zeros(ids.shape[1], dtype=torch.float64)
        for h in range(probs[0].shape[1]):
            a = torch.zeros(ids.shape[1], dtype=torch.float64)
            a[0] = 1
            for layer in reversed(probs):
                a = a @ layer[b, h]
            total += a
        torch.testing.assert_close(result.scores[b].double(), total, rtol=1e-5, atol=1e-6)
    # each head's chain is a distribution, so the sum over tokens is the number of heads
    torch.testing.assert_close(result.scores.sum(-1), torch.full((2,), float(probs[0].shape[1])))


def test_rollout_matches_abnar_zuidema(tiny_hf):
    ids, mask, types = padded([7, 4])
    probs = _attention_probs(tiny_hf, ids, mask, types)
    result = attribute(tiny_hf, ids, mask, types, method="rollout")
    length = ids.shape[1]
    joint = torch.eye(length, dtype=torch.float64).expand(2, length, length)
    for p in probs:
        a = 0.5 * (p.mean(1) + torch.eye(length, dtype=torch.float64))
        a = a / a.sum(-1, keepdim=True)
        joint = a @ joint
    torch.testing.assert_close(result.scores.double(), joint[:, 0] * mask, rtol=1e-5, atol=1e-6)


def test_random_is_seeded_and_masked(tiny_hf):
    ids, mask, types = padded([7, 4])
    a = attribute(tiny_hf, ids, mask, types, method="random", seed=5)
    b = attribute(tiny_hf, ids, mask, types, method="random", seed=5)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.scores[1, 4:], torch.zeros(3))


def test_target_options(tiny_hf):
    ids, mask, types = padded([7, 4])
    predicted = attribute(tiny_hf, ids, mask, types, method="cp_lrp")
    assert torch.equal(predicted.target, predicted.logits.argmax(-1))
    fixed = attribute(tiny_hf, ids, mask, types, method="cp_lrp", target=2)
    assert fixed.target.tolist() == [2, 2]
    each = attribute(tiny_hf, ids, mask, types, method="cp_lrp", target=[0, 1])
    assert each.target.tolist() == [0, 1]
    assert not torch.allclose(fixed.scores, each.scores)


def test_bad_input_gives_clear_errors(tiny_hf):
    ids, mask, types = padded([7, 4])
    with pytest.raises(InputError, match="valid methods: gradient, grad_x_input"):
        attribute(tiny_hf, ids, mask, method="shap")
    with pytest.raises(InputError, match="out of range"):
        attribute(tiny_hf, ids, mask, target=3)
    with pytest.raises(InputError, match="targets for a batch"):
        attribute(tiny_hf, ids, mask, target=[0, 1, 2])
    with pytest.raises(InputError, match="exceeds"):
        attribute(tiny_hf, torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(InputError, match="empty"):
        attribute(tiny_hf, torch.ones(1, 0, dtype=torch.long))


def test_parameters_stay_untouched(tiny_hf):
    """Attribution neither computes parameter gradients nor changes requires_grad flags."""
    flags = [p.requires_grad for p in tiny_hf.parameters()]
    ids, mask, types = padded([7, 4])
    attribute(tiny_hf, ids, mask, types, method="attnlrp")
    assert [p.requires_grad for p in tiny_hf.parameters()] == flags
    assert all(p.grad is None for p in tiny_hf.parameters())


def test_minilm_conservation_ratios_are_finite(minilm_dir):
    """Real pretrained weights (fresh head): every LRP method gives finite scores; cp_lrp keeps most
    relevance (the biases take the rest)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lrp_kernels.load_pretrained(minilm_dir, num_labels=2)
    ids, mask, _ = padded([20, 12], vocab=30000, seed=7)
    ids[:, 0] = 101
    for method in lrp_kernels.LRP_METHODS:
        result = attribute(model, ids, mask, method=method)
        assert torch.isfinite(result.scores).all()
        assert torch.isfinite(result.conservation).all()
