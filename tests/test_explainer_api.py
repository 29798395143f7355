"""The Explainer as a user holds it: a transformers model + fast tokenizer, a list that renders as
one heatmap, save_html/save_png/to_json, several methods side by side, every class, contrasts,
relevance per layer, tokens on Attribution."""

import json

import pytest
import torch

import lrp_kernels
from lrp_kernels import Explainer, Explanations, InputError

transformers = pytest.importorskip("transformers")
from tiny_checkpoint import shared_tiny_checkpoint  # noqa: E402

TEXTS = ["a good film", "bad and boring plot", "the director & music"]


@pytest.fixture(scope="module")
def held():
    """What a transformers user already holds."""
    path = shared_tiny_checkpoint()
    return (transformers.AutoModelForSequenceClassification.from_pretrained(path),
            transformers.AutoTokenizer.from_pretrained(path))


@pytest.fixture(scope="module")
def explainer(held):
    return Explainer(*held, method="attnlrp")


def test_from_a_transformers_model_and_tokenizer_equals_from_pretrained(explainer):
    ours = explainer.explain(TEXTS)
    reference = Explainer.from_pretrained(shared_tiny_checkpoint(), method="attnlrp").explain(TEXTS)
    assert isinstance(ours, Explanations) and len(ours) == 3
    for a, b in zip(ours, reference):
        assert a.tokens == b.tokens and a.label_name == b.label_name
        torch.testing.assert_close(torch.tensor(a.scores), torch.tensor(b.scores), rtol=1e-5, atol=1e-6)


def test_the_users_tokenizer_is_left_alone(held):
    model, tok = held
    before = tok.backend_tokenizer.to_str()
    with pytest.warns(UserWarning, match="truncated"):
        Explainer(model, tok).explain("a good film", max_length=4)
    assert tok.backend_tokenizer.to_str() == before


def test_slow_tokenizers_are_refused(held):
    class Slow:
        pad_token_id = 0

    with pytest.raises(InputError, match="not a fast tokenizer"):
        Explainer(held[0], Slow())


def test_one_heatmap_for_the_list_and_the_files(explainer, tmp_path):
    results = explainer.explain(TEXTS)
    fragment = results._repr_html_()
    assert fragment.count('class="lrpk-expl"') == 3 and fragment.count('class="lrpk-legend"') == 1
    page = results.save_html(tmp_path / "page.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    results.save_png(tmp_path / "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = results.to_json(tmp_path / "out.jsonl").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["text"] for r in records] == TEXTS
    assert records[0]["conservation"] == pytest.approx(results[0].conservation)
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines() == lines
    single = results[0]
    assert single.to_json() == lines[0] + "\n"
    assert single.save_html(tmp_path / "one.html").is_file()


def test_everything_in_the_html_is_escaped(held):
    """A ``tokenizers.Tokenizer`` (the checkpoint's own tokenizer.json keeps ``<script>`` one token)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(shared_tiny_checkpoint() / "tokenizer.json"))
    results = Explainer(held[0], tok).explain("the <script> & music", target="all", layers=True,
                                              methods=["attnlrp", "cp_lrp"])
    assert "<script>" in results[0].tokens
    fragment = results._repr_html_()
    assert "<script" not in fragment and "&lt;script&gt;" in fragment and "neg&lt;b&gt;" in fragment


def test_several_methods_side_by_side(explainer):
    methods = ["attnlrp", "cp_lrp", "grad_x_input"]
    results = explainer.explain(TEXTS[:2], methods=methods)
    assert [(e.text, e.method) for e in results] == [(t, m) for t in TEXTS[:2] for m in methods]
    alone = explainer.explain(TEXTS[:2], methods=["cp_lrp"])
    assert results[1].scores == pytest.approx(alone[0].scores, rel=1e-5, abs=1e-6)
    fragment = results._repr_html_()
    assert fragment.count('class="lrpk-row"') == 2
    with pytest.raises(InputError, match="valid methods"):
        explainer.explain("a", methods=["attnlrp", "lime"])


def test_every_class_and_contrast(explainer):
    every = explainer.explain(TEXTS, target="all")
    for k in range(2):
        one = explainer.explain(TEXTS, target=k)
        for e, o in zip(every, one):
            # "all" runs the classes as one batched backward: other GEMM shapes, another fp32 summation
            # order; its rounding scales with the largest score of the text, not with each score
            scale = max(abs(s) for s in o.scores)
            assert e.class_scores[k] == pytest.approx(o.scores, rel=1e-5, abs=2e-5 * scale)
    assert every[0].scores == every[0].class_scores[every[0].label]
    assert every[0].class_names == ["neg<b>", "pos&amp"]
    against = explainer.explain(TEXTS, target=1, contrast=0)
    for e, a in zip(every, against):
        difference = torch.tensor(e.class_scores[1]) - torch.tensor(e.class_scores[0])
        torch.testing.assert_close(torch.tensor(a.scores), difference, rtol=1e-4, atol=1e-5)
        assert a.contrast == 0 and a.contrast_name == "neg<b>"
        assert a.target_logit == pytest.approx(a.logits[1] - a.logits[0])


def test_relevance_per_layer_reaches_the_explanation(explainer):
    result = explainer.explain("a good film", layers=True, merge_subwords=True)[0]
    layers = result.layers
    assert layers["points"] == ["embedding_sum", "layer.0", "layer.1", "encoder_output"]
    assert len(layers["relevance"]) == 4 and all(len(r) == len(result.tokens) for r in layers["relevance"])
    assert sum(layers["relevance"][0]) == pytest.approx(result.total, rel=1e-5)
    remaining = [sum(r) + sum(sum(s) for s in layers["absorbed"][k:]) for k, r in enumerate(layers["relevance"])]
    assert remaining == pytest.approx([result.target_logit] * 4, rel=1e-4, abs=1e-5)
    assert "relevance per layer" in result._repr_html_()


def test_attribution_carries_the_tokens(explainer, held):
    result = explainer.attribute(TEXTS[:2], method="cp_lrp")
    assert result.tokens == [["[CLS]", "a", "good", "film", "[SEP]"], ["[CLS]", "bad", "and", "boring", "plot", "[SEP]"]]
    model, tok = held
    batch = tok(TEXTS[:2], return_tensors="pt", padding=True)
    direct = lrp_kernels.attribute(model, **batch, method="cp_lrp").with_tokens(tok)
    assert direct.tokens[0] == ["[CLS]", "a", "good", "film", "[SEP]", "[PAD]"]
    torch.testing.assert_close(direct.scores[1], result.scores[1])


def test_label_names_and_the_one_method_shorthand(explainer):
    """The CLI's language: classes by name (or index), ``method=`` for one method as the constructor."""
    by_name = explainer.explain(TEXTS, target="pos&amp", contrast="neg<b>")
    by_index = explainer.explain(TEXTS, target=1, contrast=0)
    assert [e.scores for e in by_name] == [e.scores for e in by_index]
    assert [e.target_name for e in by_name] == ["pos&amp"] * 3 and by_name[0].contrast_name == "neg<b>"
    assert explainer.explain(TEXTS, target=["neg<b>", 1, "pos&amp"])[0].target == 0
    with pytest.raises(InputError, match="^contrast 'positive' is neither a class index nor a label name "
                                         r"\(labels: neg<b>, pos&amp\)$"):
        explainer.explain(TEXTS, contrast="positive")
    rollout = explainer.explain(TEXTS[0], method="rollout")
    assert [e.method for e in rollout] == ["rollout"]
    assert rollout[0].scores == explainer.explain(TEXTS[0], methods=["rollout"])[0].scores
    with pytest.raises(InputError, match="not both"):
        explainer.explain(TEXTS[0], method="rollout", methods=["attnlrp"])
    with pytest.raises(InputError, match="did you mean attnlrp"):
        explainer.explain(TEXTS[0], method="attn_lrp")


def test_an_explanation_carries_its_account(explainer):
    for e in explainer.explain(TEXTS, methods=["attnlrp", "cp_lrp", "grad_x_input", "gradient"]):
        if e.method == "gradient":
            assert e.shares is None and e.account is None
            continue
        assert e.total + sum(e.shares.values()) == pytest.approx(e.target_logit, rel=1e-4, abs=1e-5)
        assert e.account.startswith(f"Σ relevance {e.total:.3g} = logit {e.target_logit:.3g}".replace("-", "−"))
        record = e.to_dict()
        assert record["shares"] == e.shares and record["account"] == e.account
    every = explainer.explain(TEXTS[0], target="all")[0]
    for k, shares in enumerate(every.class_shares):
        logit = every.logits[k]
        assert sum(every.class_scores[k]) + sum(shares.values()) == pytest.approx(logit, rel=1e-4, abs=1e-5)


def test_an_explanation_prints_on_one_line(explainer):
    e = explainer.explain("a good film and a bad plot with the director and the music", target=1)[0]
    text = repr(e)
    assert "\n" not in text and len(text) < 200 and text.startswith("Explanation('a good film and a bad plot")
    assert "attnlrp" in text and "label=" in text and f"{len(e.tokens)} tokens" in text
    assert not any(len(d) > 6 for d in __import__("re").findall(r"\d+\.(\d+)", text))  # no 16-digit floats
    assert repr(explainer.explain(TEXTS[:2])).count("Explanation(") == 2


def test_warnings_point_at_the_callers_line_and_windows_raise_no_transformers_warning(explainer, held, capfd):
    """The truncation warning is attributed to the user's call (this file), not to a line inside
    lrp_kernels; windowing a text longer than the tokenizer's model_max_length through the user's
    transformers tokenizer prints nothing of transformers' ("Token indices sequence length is longer …")."""
    import logging

    long_text = " ".join(["a good film with a bad plot"] * 40)
    with pytest.warns(UserWarning, match="tokens were truncated") as caught:
        explainer.explain(long_text, max_length=16)
    assert [w.filename for w in caught] == [__file__]
    logging.getLogger("transformers").setLevel(logging.WARNING)
    capfd.readouterr()
    windowed = Explainer(held[0], held[1], method="attnlrp")  # the tokenizer's model_max_length: 64
    result = windowed.explain(long_text, stride=4, max_length=32)[0]
    assert result.windows > 1 and len(result.tokens) > 64
    assert "Token indices sequence length" not in "".join(capfd.readouterr())
