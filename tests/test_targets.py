"""What is explained: ``target="all"`` (every class in one backward) and ``contrast=`` (a logit
difference), against per-class calls and plain autograd."""

import copy

import pytest
import torch

import lrp_kernels
from lrp_kernels import InputError, attribute
from lrp_kernels.methods import REGISTRY

transformers = pytest.importorskip("transformers")
from model_factory import make_hf, padded, zero_biases  # noqa: E402

INIT = 0.2
TARGET_METHODS = [m.name for m in REGISTRY.values() if m.depends_on_target]
LINEAR_IN_SEED = [m for m in TARGET_METHODS if not REGISTRY[m].norm]  # GS is a norm


@pytest.fixture(scope="module", params=["bert", "roberta"])
def hf(request):
    return make_hf(request.param, initializer_range=INIT)


def _batch(hf):
    ids, mask, _ = padded((9, 5, 7), pad_id=hf.config.pad_token_id)
    return ids, mask


@pytest.mark.parametrize("method", lrp_kernels.METHODS)
def test_all_equals_stacked_per_class_calls(hf, method):
    ids, mask = _batch(hf)
    every = attribute(hf, ids, mask, method=method, target="all", ig_steps=4)
    stacked = torch.stack([attribute(hf, ids, mask, method=method, target=k, ig_steps=4).scores
                           for k in range(hf.config.num_labels)], dim=1)
    assert every.scores.shape == (3, hf.config.num_labels, ids.shape[1])
    torch.testing.assert_close(every.scores, stacked, rtol=1e-5, atol=1e-5)
    assert every.target.tolist() == [[0, 1, 2]] * 3
    torch.testing.assert_close(every.target_logit, every.logits)
    assert every.conservation.shape == (3, hf.config.num_labels)


@pytest.mark.parametrize("method", ["attnlrp", "grad_x_input"])
def test_all_is_one_forward_and_one_backward(hf, method, monkeypatch):
    calls = {"run": 0, "grad": 0}
    model = lrp_kernels.models.loading.as_lrp_model(hf)
    run, grad = model.run, torch.autograd.grad

    def counted_run(*args, **kwargs):
        calls["run"] += 1
        return run(*args, **kwargs)

    def counted_grad(*args, **kwargs):
        calls["grad"] += 1
        return grad(*args, **kwargs)

    monkeypatch.setattr(model, "run", counted_run)
    monkeypatch.setattr(torch.autograd, "grad", counted_grad)
    ids, mask = _batch(hf)
    attribute(model, ids, mask, method=method, target="all")
    assert calls == {"run": 1, "grad": 1}


@pytest.mark.parametrize("method", LINEAR_IN_SEED)
def test_contrast_is_the_difference_of_two_targets(hf, method):
    ids, mask = _batch(hf)
    a, b = torch.tensor([2, 0, 1]), 1
    diff = attribute(hf, ids, mask, method=method, target=a, contrast=b, ig_steps=4)
    expected = (attribute(hf, ids, mask, method=method, target=a, ig_steps=4).scores
                - attribute(hf, ids, mask, method=method, target=b, ig_steps=4).scores)
    torch.testing.assert_close(diff.scores, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(diff.target_logit, diff.logits[torch.arange(3), a] - diff.logits[:, b])
    assert diff.contrast.tolist() == [1, 1, 1]


def test_gradient_sensitivity_is_the_norm_of_the_contrast_gradient(hf):
    ids, mask = _batch(hf)
    model = lrp_kernels.models.from_hf(hf)
    with torch.no_grad():
        e = model.embed(ids)
    with torch.enable_grad():
        logits, p = model.run(e, mask, taps=("embedding_output",))
        (g,) = torch.autograd.grad((logits[:, 2] - logits[:, 0]).sum(), p.tapped["embedding_output"])
    gs = attribute(hf, ids, mask, method="gradient", target=2, contrast=0)
    torch.testing.assert_close(gs.scores, g.norm(dim=-1) * mask, rtol=1e-4, atol=1e-6)


def test_contrast_with_all_explains_every_class_against_one(hf):
    ids, mask = _batch(hf)
    every = attribute(hf, ids, mask, method="cp_lrp", target="all", contrast=0)
    assert every.contrast.tolist() == [[0, 0, 0]] * 3
    assert torch.count_nonzero(every.scores[:, 0]) == 0  # logit_0 − logit_0
    one = attribute(hf, ids, mask, method="cp_lrp", target=2, contrast=0)
    torch.testing.assert_close(every.scores[:, 2], one.scores, rtol=1e-5, atol=1e-6)


def test_cp_lrp_conserves_the_contrast():
    hf = zero_biases(make_hf("bert", initializer_range=INIT))
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method="cp_lrp", eps=0.0, target=[0, 1, 2], contrast=[1, 2, 0])
    torch.testing.assert_close(result.conservation, torch.ones(3), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["lat", "rollout", "random"])
def test_contrast_is_refused_where_the_target_plays_no_part(hf, method):
    ids, mask = _batch(hf)
    with pytest.raises(InputError, match="does not depend on the explained class"):
        attribute(hf, ids, mask, method=method, contrast=0)


def test_bad_targets_and_contrasts(hf):
    ids, mask = _batch(hf)
    with pytest.raises(InputError, match="or 'all'"):
        attribute(hf, ids, mask, target="every")
    with pytest.raises(InputError, match="out of range"):
        attribute(hf, ids, mask, contrast=7)
    with pytest.raises(InputError, match="got 2 contrasts for a batch of 3"):  # named as given
        attribute(hf, ids, mask, contrast=[0, 1])
    with pytest.raises(InputError, match="^contrast 'nope' is neither a class index nor a label name \\(labels: "
                                         "LABEL_0, LABEL_1, LABEL_2\\)$"):
        attribute(hf, ids, mask, contrast="nope")


def test_all_with_left_padding_and_float64():
    hf = copy.deepcopy(make_hf("bert", initializer_range=INIT)).double()
    ids, mask = _batch(hf)
    left_ids, left_mask = ids.clone(), mask.clone()
    n = int(mask[1].sum())
    left_ids[1] = torch.roll(ids[1], ids.shape[1] - n)
    left_mask[1] = torch.roll(mask[1], ids.shape[1] - n)
    right = attribute(hf, ids, mask, method="attnlrp", target="all")
    left = attribute(hf, left_ids, left_mask, method="attnlrp", target="all")
    torch.testing.assert_close(left.scores[1, :, -n:], right.scores[1, :, :n], rtol=1e-5, atol=1e-7)
    assert (left.scores[1, :, : ids.shape[1] - n] == 0).all()


@pytest.mark.parametrize("method", ["gradient", "grad_x_input"])
@pytest.mark.parametrize("point", ["embedding_sum", "embedding_output", "word_embeddings"])
def test_all_by_the_vmapped_backward_at_every_read_out_point(hf, method, point):
    """The plain-gradient methods take one forward and a vmapped backward (one seed per label)."""
    ids, mask = _batch(hf)
    every = attribute(hf, ids, mask, method=method, target="all", contrast=1, read_at=point)
    stacked = torch.stack([attribute(hf, ids, mask, method=method, target=k, contrast=1, read_at=point).scores
                           for k in range(hf.config.num_labels)], dim=1)
    torch.testing.assert_close(every.scores, stacked, rtol=1e-5, atol=1e-6)
    assert every.contrast.tolist() == [[1, 1, 1]] * 3


def test_targets_reach_the_device_before_the_forward():
    """The checked target and contrast are copied to the inputs' device while the batch is checked,
    not after the forward (on a GPU a host-to-device copy there would wait for the forward)."""
    from lrp_kernels.attribution import _seed
    from lrp_kernels.methods import get_method
    from lrp_kernels.models import Head

    ids = torch.zeros(2, 3, dtype=torch.long, device="meta")
    seed, labels = _seed(get_method("attnlrp"), [1, 0], 0, ids, 2, Head())
    assert labels == "one"
    assert seed.target.device.type == "meta" and seed.contrast.device.type == "meta"
    seed, labels = _seed(get_method("attnlrp"), "all", None, ids, 2, Head())
    assert labels == "all" and seed.target is None
    seed, labels = _seed(get_method("attnlrp"), torch.tensor([[True, False], [True, True]]), 1, ids, 2, Head())
    assert labels == "select" and seed.selection.device.type == "meta" and seed.contrast.device.type == "meta"


# ------------------------------------------------------------------------------------ label names
def test_label_names_are_targets_and_contrasts(hf):
    """One parser (attribution.label_index) for attribute, the Explainer and the CLI: a label name is
    the class of that name, its index's digits the index, per example or for all."""
    ids, mask = _batch(hf)
    by_index = attribute(hf, ids, mask, method="attnlrp", target=[2, 1, 2], contrast=0)
    by_name = attribute(hf, ids, mask, method="attnlrp", target=["LABEL_2", "LABEL_1", 2], contrast="LABEL_0")
    assert by_name.target.tolist() == [2, 1, 2] and by_name.contrast.tolist() == [0, 0, 0]
    torch.testing.assert_close(by_name.scores, by_index.scores, rtol=0, atol=0)  # the same call
    assert attribute(hf, ids, mask, method="grad_x_input", target="1").target.tolist() == [1, 1, 1]


def test_a_list_of_labels_per_example_selects_several(hf):
    ids, mask = _batch(hf)
    chosen = [["LABEL_0", "LABEL_2"], [1], ("LABEL_1", 0)]
    result = attribute(hf, ids, mask, method="attnlrp", target=chosen)
    expected = torch.tensor([[True, False, True], [False, True, False], [True, True, False]])
    assert torch.equal(result.selected.cpu(), expected)
    by_mask = attribute(hf, ids, mask, method="attnlrp", target=expected)
    torch.testing.assert_close(result.scores, by_mask.scores, rtol=0, atol=0)
    with pytest.raises(InputError, match="got 2 label selections for a batch of 3"):
        attribute(hf, ids, mask, target=[["LABEL_0"], [1]])


def test_an_ambiguous_label_name_is_refused():
    from lrp_kernels.attribution import label_index

    assert label_index("1", {0: "0", 1: "1"}, 2) == 1  # names that are their own indices: fine
    with pytest.raises(InputError, match="'1' is ambiguous: label 0 is named '1'"):
        label_index("1", {0: "1", 1: "0"}, 2)
    with pytest.raises(InputError, match="contrast must be a class index or a label name, got 1.5"):
        label_index(1.5, {}, 2, "contrast")
