"""Heads by ``problem_type``: single-label (softmax), multi-label (a sigmoid per label; ``target=None``
explains every label with sigmoid ≥ 0.5, or the top one) and regression (values, no probability, no
contrast) — in the config, ``attribute``, the Explainer, the HTML, the CLI and the evaluation. Each
expectation is computed independently: from the ``transformers`` model's logits, or by hand."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lrp_kernels import CheckpointError, Explainer, InputError, attribute
from lrp_kernels.evaluation import Item, aopc, word_deletion
from lrp_kernels.models import Head, config_from_dict, from_hf, load_pretrained
from lrp_kernels.models.config import MULTI_LABEL, REGRESSION, SINGLE_LABEL

transformers = pytest.importorskip("transformers")
from model_factory import make_hf, padded  # noqa: E402
from tiny_checkpoint import build_tiny_checkpoint, tiny_sentences  # noqa: E402

INIT = 0.2
#: texts of the tiny vocabulary whose selections, with :data:`BIAS`, are {0, 2}, {0, 1}, {2} and none
#: (→ the top label, 2): the multi-label cases (each checked against the transformers logits below)
TEXTS = ["a gorgeous witty film", "the acting is flat but the music is fine", "never ever",
         tiny_sentences(6, seed=2)[0]]
BIAS = [0.3, -3.5, -2.5]


def _hf_logits(hf, ids, mask, **inputs):
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, **inputs).logits.float()


def _expected_selection(logits):
    """Every label with sigmoid ≥ 0.5, or the top one when none is — by hand."""
    chosen = torch.sigmoid(logits) >= 0.5
    for row in range(len(logits)):
        if not chosen[row].any():
            chosen[row, logits[row].argmax()] = True
    return chosen


def _multi_label_hf(bias=(4.0, -4.0, None)):
    """A multi-label BERT whose label 0 is always predicted, label 1 never, label 2 for half the
    examples (its bias: minus the midpoint of its two middle logits, so that no logit sits at 0,
    where the sigmoid is 0.5 and the ε-rule's z + ε·sign(z) is at its edge) — or every bias given."""
    hf = make_hf("bert", initializer_range=INIT, problem_type=MULTI_LABEL)
    ids, mask, _ = padded((12, 9, 7, 3), pad_id=0, seed=4)
    with torch.no_grad():
        hf.classifier.bias.zero_()
        middle = _hf_logits(hf, ids, mask)[:, 2].sort().values[1:3].mean()
        hf.classifier.bias.copy_(torch.tensor([-middle if b is None else b for b in bias]))
    return hf, ids, mask


# ------------------------------------------------------------------------------------ config
def test_problem_type_is_read_in_one_place(tmp_path):
    assert config_from_dict({"model_type": "bert"}).head == Head(SINGLE_LABEL)
    assert config_from_dict({"model_type": "bert", "num_labels": 1}).head == Head(REGRESSION)  # as transformers
    assert config_from_dict({"model_type": "bert", "problem_type": MULTI_LABEL}).head.is_multi_label
    with pytest.raises(CheckpointError, match="unknown problem_type 'ordinal'") as error:
        config_from_dict({"model_type": "bert", "problem_type": "ordinal"})
    assert len(str(error.value).splitlines()) == 1
    hf = make_hf("roberta", problem_type=MULTI_LABEL)
    assert from_hf(hf).config.head.is_multi_label  # an in-memory model: its config, the same parser
    make_hf("bert", num_labels=1).save_pretrained(tmp_path)  # problem_type None, one label: a regression
    assert load_pretrained(tmp_path).config.head.is_regression


# ------------------------------------------------------------------------------------ attribute
@pytest.mark.parametrize("method", ["attnlrp", "grad_x_input", "integrated_gradients", "rollout"])
def test_multi_label_target_none_explains_every_predicted_label(method):
    hf, ids, mask = _multi_label_hf()
    expected = _expected_selection(_hf_logits(hf, ids, mask))
    assert expected.sum(-1).max() >= 2 and expected.sum(-1).min() == 1  # several labels and single ones
    result = attribute(hf, ids, mask, method=method, ig_steps=4)
    assert result.problem_type == MULTI_LABEL and torch.equal(result.selected.cpu(), expected)
    torch.testing.assert_close(result.probabilities, torch.sigmoid(_hf_logits(hf, ids, mask)), rtol=1e-5, atol=1e-6)
    assert result.scores.shape == (len(ids), 3, ids.shape[1]) and result.target.tolist() == [[0, 1, 2]] * len(ids)
    for k in range(3):
        alone = attribute(hf, ids, mask, method=method, target=k, ig_steps=4).scores
        chosen = expected[:, k]
        torch.testing.assert_close(result.scores[chosen, k], alone[chosen], rtol=1e-5, atol=1e-6)
        assert not result.scores[~chosen, k].any()


def test_multi_label_without_a_predicted_label_explains_the_top_one():
    hf, ids, mask = _multi_label_hf(bias=(-9.0, -9.0, -9.0))
    logits = _hf_logits(hf, ids, mask)
    assert (torch.sigmoid(logits) < 0.5).all()
    result = attribute(hf, ids, mask, method="cp_lrp")
    assert result.selected.sum(-1).tolist() == [1] * len(ids)
    assert result.selected.float().argmax(-1).tolist() == logits.argmax(-1).tolist()


def test_a_boolean_target_selects_labels_and_the_layers_follow():
    hf, ids, mask = _multi_label_hf()
    selection = torch.tensor([[True, False, True], [False, True, False], [True, True, True], [False, False, True]])
    result = attribute(hf, ids, mask, method="attnlrp", target=selection, layers=True)
    assert torch.equal(result.selected.cpu(), selection)
    for k in range(3):
        alone = attribute(hf, ids, mask, method="attnlrp", target=k, layers=True)
        rows = selection[:, k]
        torch.testing.assert_close(result.scores[rows, k], alone.scores[rows], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.layers.relevance[rows, k], alone.layers.relevance[rows], rtol=1e-5, atol=1e-6)
        assert not result.layers.relevance[~rows, k].any()
    with pytest.raises(InputError, match=r"shape \[batch, labels\] = \[4, 3\]"):
        attribute(hf, ids, mask, target=selection[:, :2])
    with pytest.raises(InputError, match="selects no label for example 1"):
        attribute(hf, ids, mask, target=torch.tensor([[True, False, False], [False] * 3, [True] * 3, [True] * 3]))


def test_single_label_keeps_the_softmax_and_one_class():
    hf = make_hf("bert", initializer_range=INIT)
    ids, mask, _ = padded()
    result = attribute(hf, ids, mask, method="attnlrp")
    assert result.selected is None and result.scores.shape == ids.shape
    torch.testing.assert_close(result.probabilities, torch.softmax(_hf_logits(hf, ids, mask), -1), rtol=1e-5, atol=1e-6)


def test_regression_has_no_probability_explains_its_value_and_refuses_a_contrast():
    hf = make_hf("bert", initializer_range=INIT, num_labels=1)
    ids, mask, _ = padded()
    result = attribute(hf, ids, mask, method="cp_lrp")
    assert result.problem_type == REGRESSION and result.probabilities is None and result.selected is None
    assert result.scores.shape == ids.shape and result.target.tolist() == [0, 0, 0]
    torch.testing.assert_close(result.target_logit, _hf_logits(hf, ids, mask)[:, 0], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="this model is a regression") as error:
        attribute(hf, ids, mask, method="grad_x_input", target=0, contrast=0)
    assert len(str(error.value).splitlines()) == 1
    two = make_hf("bert", initializer_range=INIT, num_labels=2, problem_type=REGRESSION)
    every = attribute(two, ids, mask, method="grad_x_input")  # several outputs: every one
    assert every.scores.shape == (3, 2, ids.shape[1]) and every.selected.all()


# ------------------------------------------------------------------------------------ Explainer, HTML, CLI
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    return {
        "single": build_tiny_checkpoint(root / "single"),
        "multi": build_tiny_checkpoint(root / "multi", num_labels=3, problem_type=MULTI_LABEL, classifier_bias=BIAS),
        "regression": build_tiny_checkpoint(root / "regression", num_labels=1),
    }


def _in_memory(path):
    """The checkpoint as a transformers model, and its logits for :data:`TEXTS` (by transformers)."""
    from lrp_kernels.tokenization import TextEncoder

    hf = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    batch = TextEncoder.from_pretrained(path).encode(TEXTS)
    return hf, _hf_logits(hf, batch.input_ids, batch.attention_mask, token_type_ids=batch.token_type_ids)


def test_explainer_multi_label(checkpoints):
    hf, logits = _in_memory(checkpoints["multi"])
    expected = _expected_selection(logits)
    assert [row.nonzero()[:, 0].tolist() for row in expected] == [[0, 2], [0, 1], [2], [2]]  # as TEXTS says
    assert not (torch.sigmoid(logits[3]) >= 0.5).any()
    explainer = Explainer.from_pretrained(checkpoints["multi"], method="attnlrp")
    results = explainer.explain(TEXTS)
    for e, row, chosen in zip(results, logits, expected):
        assert e.problem_type == MULTI_LABEL and e.label == int(row.argmax()) == e.target
        assert e.probabilities == pytest.approx(torch.sigmoid(row).tolist(), abs=1e-5)
        assert e.predicted == (torch.sigmoid(row) >= 0.5).nonzero()[:, 0].tolist()
        assert e.probability == pytest.approx(float(torch.sigmoid(row).max()), abs=1e-5)
        assert [c is not None for c in e.class_scores] == chosen.tolist()
        assert e.scores == e.class_scores[e.label]
        record = e.to_dict()
        assert record["problem_type"] == MULTI_LABEL and record["predicted"] == e.predicted
    page = results.save_html(checkpoints["multi"].parent / "multi.html").read_text()
    p = results[1].probabilities
    assert f"predicted <b>neg&lt;b&gt;</b>: {p[0]:.3f}, <b>pos&amp;amp</b>: {p[1]:.3f}" in page  # "label: p", escaped
    assert "explained labels <b>neg&lt;b&gt;</b>, <b>class2</b>" in page
    assert f"predicted no label (sigmoid ≥ 0.5); top <b>class2</b>: {results[3].probability:.3f}" in page
    # the in-memory transformers model (its config's problem_type) explains the same
    tokenizer_path = checkpoints["multi"]
    from lrp_kernels.tokenization import TextEncoder

    same = Explainer(hf, TextEncoder.from_pretrained(tokenizer_path), method="attnlrp").explain(TEXTS)
    assert [e.class_scores is not None and [c is not None for c in e.class_scores] for e in same] == \
           [[c is not None for c in e.class_scores] for e in results]


def test_explainer_multi_label_targets_by_name(checkpoints):
    """Names work for multi-label targets: one label (for every text), or labels per text."""
    explainer = Explainer.from_pretrained(checkpoints["multi"], method="attnlrp")
    by_name = explainer.explain(TEXTS[:2], target=[["neg<b>", "class2"], ["pos&amp"]])
    by_index = explainer.explain(TEXTS[:2], target=[[0, 2], [1]])
    for a, b in zip(by_name, by_index):
        assert a.class_scores == b.class_scores and a.class_shares == b.class_shares
    assert [c is not None for c in by_name[0].class_scores] == [True, False, True]
    assert [c is not None for c in by_name[1].class_scores] == [False, True, False]
    one = explainer.explain(TEXTS[:2], target="class2", contrast="neg<b>")
    assert [(e.target, e.contrast) for e in one] == [(2, 0), (2, 0)] and one[0].class_scores is None
    assert explainer.explain(TEXTS[0], target="class2")[0].scores == explainer.explain(TEXTS[0], target=2)[0].scores


def test_explainer_multi_label_windows_select_from_the_document_logits(checkpoints):
    explainer = Explainer.from_pretrained(checkpoints["multi"], method="grad_x_input")
    text = " ".join(tiny_sentences(5, seed=9, min_words=8, max_words=8))
    whole = explainer.explain(text, stride=4, max_length=12)[0]
    assert whole.windows > 1
    logits = torch.tensor(whole.logits)  # the mean of the windows' logits
    assert [c is not None for c in whole.class_scores] == _expected_selection(logits[None])[0].tolist()


def test_explainer_regression(checkpoints):
    _, logits = _in_memory(checkpoints["regression"])
    explainer = Explainer.from_pretrained(checkpoints["regression"], method="cp_lrp")
    results = explainer.explain(TEXTS[:2])
    for e, row in zip(results, logits):
        assert e.problem_type == REGRESSION and e.probability is None and e.class_scores is None
        # value: the plain forward (SDPA); target_logit: the LRP forward (the blocked attention kernel) —
        # the same fp32 math summed in another order, a few ulp apart after the layers
        assert e.value == pytest.approx(float(row[0]), abs=1e-5)
        assert e.value == pytest.approx(e.target_logit, rel=1e-5)
        assert e.to_dict()["value"] == e.value and e.to_dict()["probability"] is None
    page = results.save_html(checkpoints["regression"].parent / "regression.html").read_text()
    assert f"predicted value <b>{results[0].value:.4g}</b>" in page and "p = " not in page
    assert "raises the predicted value" in page and "explained the predicted value" in page
    with pytest.raises(InputError, match="this model is a regression"):
        explainer.explain(TEXTS[0], target=0, contrast=0)


def test_cli_shows_each_head(checkpoints, run_cli, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    table = run_cli("explain", "--model", checkpoints["multi"], "--no-progress", *TEXTS[:2])
    assert table.status == 0, table.err
    _, logits = _in_memory(checkpoints["multi"])
    p = torch.sigmoid(logits)
    assert f"id 1: predicted neg<b>: {p[0, 0]:.3f}, class2: {p[0, 2]:.3f}; relevance for neg<b> " in table.out
    assert "(explained labels neg<b>, class2: --json or --html)" in table.out
    lines = run_cli("explain", "--model", checkpoints["multi"], "--json", "--no-progress", *TEXTS[:2]).out.splitlines()
    record = json.loads(lines[1])
    assert record["problem_type"] == MULTI_LABEL and record["predicted"] == [0, 1]
    assert record["probabilities"] == pytest.approx(p[1].tolist(), abs=1e-5)
    single = run_cli("explain", "--model", checkpoints["single"], "--json", "--no-progress", TEXTS[0])
    assert "problem_type" not in json.loads(single.out)  # a single-label record is as it was
    value = run_cli("explain", "--model", checkpoints["regression"], "--no-progress", TEXTS[0])
    assert value.status == 0 and "id 1: predicted value " in value.out
    assert "relevance for the predicted value" in value.out
    run_cli("explain", "--model", checkpoints["regression"], "--contrast", "0", TEXTS[0]).assert_user_error(
        "this model is a regression")


# ------------------------------------------------------------------------------------ evaluation
def _regression_items(n=30, seed=0):
    """Items of a bag-of-words regression "model": value = Σ_t w[id_t] (one output)."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    w = torch.randn(40, generator=g)
    w[:5] = 0.0  # [PAD] … [MASK] carry nothing

    def forward(ids, mask, types):
        return (w[ids] * mask).sum(dim=1, keepdim=True)

    items = []
    for i in range(n):
        words = [rng.randrange(5, 40) for _ in range(rng.randint(10, 20))]
        ids = torch.tensor([2] + words + [3])
        content = torch.tensor([False] + [True] * len(words) + [False])
        logits = forward(ids[None], torch.ones(1, len(ids)), None)[0]
        scores = torch.where(content, w[ids], torch.zeros(()))  # the exact contribution of each token
        items.append(Item(index=i, ids=ids, types=torch.zeros_like(ids), content=content, tokens=[""] * len(ids),
                          word_ids=[None] * len(ids), sequence_ids=[None] * len(ids), text="", label=None,
                          scores=scores, logits=logits, target=0))
    return items, forward, w


def test_deletion_on_a_regression_tracks_the_value():
    items, forward, w = _regression_items()
    result = word_deletion(items, forward, replacement_id=4, pad_id=0, head=Head(REGRESSION))
    assert result.measure == "value" and result.n_examples == len(items)  # no labels needed: every item
    by_hand = []
    for k in result.ks:  # the value after zeroing the k largest contributions, averaged
        top = [it.scores[it.content].sort(descending=True).values[:k].sum() for it in items]
        by_hand.append(sum(float(it.logits[0] - t) for it, t in zip(items, top)) / len(items))
    assert result.values == pytest.approx(by_hand, rel=1e-5, abs=1e-5)
    assert result.start == pytest.approx(sum(float(it.logits[0]) for it in items) / len(items), rel=1e-6)
    comp = aopc(items, forward, pad_id=0, head=Head(REGRESSION)).comprehensiveness
    assert comp > 0  # removing the most positive tokens lowers the value


def test_evaluate_a_regression_checkpoint(checkpoints, tmp_path):
    from cli_helpers import write_sst2_split
    from lrp_kernels.evaluation import StudyConfig, run_study

    data = tmp_path / "data"
    write_sst2_split(data / "dev.tsv", tiny_sentences(16, seed=3, min_words=10, max_words=14), random.Random(1))
    summary = run_study(StudyConfig(model=str(checkpoints["regression"]), task="sst2", data_dir=str(data),
                                    out=str(tmp_path / "out"), methods=("grad_x_input", "random"),
                                    metrics=("deletion", "aopc"), progress=False, heatmaps=1))
    assert summary["accuracy"] is None and summary["problem_type"] == REGRESSION
    row = summary["methods"]["grad_x_input"]
    assert row["deletion_n"] == 16 and "value@1" in row and "acc@1" not in row
    deletion = (tmp_path / "out" / "deletion.csv").read_text().splitlines()
    assert deletion[0] == "method,k,value,examples"
    page = (tmp_path / "out" / "index.html").read_text()
    assert "predicted value <b>" in page and "(p = " not in page
