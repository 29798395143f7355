"""Explainer: texts in, per-token (or per-word) scores out, in input order, with clear errors."""

import warnings

import pytest
import torch

import lrp_kernels
from lrp_kernels import Explainer, InputError


@pytest.fixture(scope="module")
def explainer(minilm_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Explainer.from_pretrained(minilm_dir, method="attnlrp", num_labels=2)


TEXTS = ["A gorgeous, witty, seductive movie.", "unbelievably boring", "it is what it is , i guess ."]


def test_explain_returns_tokens_scores_and_prediction(explainer):
    results = explainer.explain(TEXTS)
    assert [r.text for r in results] == TEXTS
    first = results[0]
    assert first.tokens[0] == "[CLS]" and first.tokens[-1] == "[SEP]"
    assert len(first.tokens) == len(first.scores) == len(first.special)
    assert first.special[0] and first.special[-1] and not any(first.special[1:-1])
    assert 0.5 <= first.probability <= 1.0 and first.label in (0, 1)
    assert first.method == "attnlrp" and first.target == first.label


def test_scores_match_attribute_on_the_same_ids(explainer):
    result = explainer.explain(TEXTS[1])[0]
    batch = explainer.encoder.encode([TEXTS[1]])
    direct = lrp_kernels.attribute(explainer.model, batch.input_ids, batch.attention_mask, batch.token_type_ids)
    torch.testing.assert_close(torch.tensor(result.scores), direct.scores[0], rtol=1e-5, atol=1e-7)


def test_bucketing_keeps_input_order_and_results(explainer):
    texts = TEXTS + ["short", "a much longer sentence that has quite a few more words than the others do"]
    bucketed = explainer.explain(texts, batch_size=2, bucket=True)
    plain = explainer.explain(texts, batch_size=2, bucket=False)
    for a, b in zip(bucketed, plain):
        assert a.text == b.text and a.tokens == b.tokens
        torch.testing.assert_close(torch.tensor(a.scores), torch.tensor(b.scores), rtol=1e-5, atol=1e-6)


def test_merge_subwords_sums_pieces_into_words(explainer):
    text = "unbelievably boring"
    pieces = explainer.explain(text)[0]
    words = explainer.explain(text, merge_subwords=True)[0]
    assert words.tokens == ["[CLS]", "unbelievably", "boring", "[SEP]"]
    assert len(pieces.tokens) > len(words.tokens)  # "unbelievably" is several word pieces
    assert sum(words.scores) == pytest.approx(sum(pieces.scores), rel=1e-5, abs=1e-7)


def test_sentence_pairs_get_token_types(explainer):
    result = explainer.explain("the plot", text_pairs="was thin", merge_subwords=True)[0]
    assert result.tokens == ["[CLS]", "the", "plot", "[SEP]", "was", "thin", "[SEP]"]
    batch = explainer.encoder.encode(["the plot"], ["was thin"])
    assert batch.token_type_ids[0].tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_long_text_is_truncated_with_a_warning(explainer):
    with pytest.warns(UserWarning, match="truncated"):
        result = explainer.explain("word " * 700)[0]
    assert len(result.tokens) == 512


def test_bad_input(explainer):
    with pytest.raises(InputError, match="text 1 is empty"):
        explainer.explain(["fine", "   "])
    with pytest.raises(InputError, match="out of range"):
        explainer.explain(["fine"], target=5)
    with pytest.raises(InputError, match="no texts"):
        explainer.explain([])
    with pytest.raises(InputError, match="valid methods"):
        Explainer(explainer.model, explainer.encoder, method="lime")


def test_explicit_target_is_used(explainer):
    a, b = explainer.explain(["fine", "fine"], target=[0, 1])
    assert (a.target, b.target) == (0, 1)
    assert a.scores != b.scores
