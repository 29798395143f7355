"""Heatmaps: per-text normalization, the diverging colors, HTML escaping, the PNG figure."""

import re

import pytest

from lrp_kernels import Explanation
from lrp_kernels.visualization import (
    explanation_html,
    normalized_scores,
    plot_explanations,
    relevance_color,
    render_html,
)


def _explanation(tokens, scores, special=None, label_name="pos", method="attnlrp"):
    return Explanation(
        text=" ".join(tokens), tokens=list(tokens), scores=list(scores),
        special=list(special) if special is not None else [False] * len(tokens),
        label=1, label_name=label_name, probability=0.875, target=1, target_name=label_name, method=method,
    )


@pytest.mark.parametrize(
    "scores, special, expected",
    [
        ([1.0, -2.0, 0.5], None, [0.5, -1.0, 0.25]),
        # special tokens are on the scale like every token (they often hold the largest scores)
        ([10.0, 0.2, -0.1, 3.0], [True, False, False, True], [1.0, 0.02, -0.01, 0.3]),
        ([0.0, 0.0], None, [0.0, 0.0]),
        ([float("nan"), 2.0], None, [0.0, 1.0]),
        ([3.0], None, [1.0]),
    ],
)
def test_normalized_scores(scores, special, expected):
    assert normalized_scores(scores, special) == pytest.approx(expected)


def test_relevance_color_is_diverging():
    assert relevance_color(0.0) == (255, 255, 255)
    assert relevance_color(1.0) == (214, 39, 40)
    assert relevance_color(-1.0) == (31, 119, 180)
    r, g, b = relevance_color(0.5)
    assert r > g and r > b  # reddish
    r, g, b = relevance_color(-0.5)
    assert b > r  # bluish
    assert relevance_color(7.0) == relevance_color(1.0)  # clipped


def test_tokens_and_labels_are_escaped():
    expl = _explanation(["[CLS]", "<script>", "alert(1)", "</script>", "&amp;", "\"q\"", "[SEP]"],
                        [0.0, 1.0, -1.0, 0.5, 0.1, 0.2, 0.0], special=[True] + [False] * 5 + [True],
                        label_name="<b>pos</b>", method="<i>m</i>")
    page = render_html([expl], title="<title>")
    for raw in ("<script>", "</script>", "<b>pos</b>", "<i>m</i>", "<title><"):
        assert raw not in page
    for escaped in ("&lt;script&gt;", "&lt;/script&gt;", "&amp;amp;", "&quot;q&quot;", "&lt;b&gt;pos&lt;/b&gt;",
                    "&lt;i&gt;m&lt;/i&gt;"):
        assert escaped in page
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page and "<script" not in page  # no external assets


def test_colors_follow_sign_and_specials_are_coloured_and_marked():
    expl = _explanation(["[CLS]", "good", "bad", "[SEP]"], [5.0, 2.0, -1.0, 0.0], special=[True, False, False, True])
    fragment = explanation_html(expl)
    colors = re.findall(r"background-color:rgb\((\d+),(\d+),(\d+)\)", fragment)
    assert [tuple(map(int, c)) for c in colors] == [relevance_color(v) for v in (1.0, 0.4, -0.2, 0.0)]
    assert fragment.count("lrpk-special") == 2 and fragment.count("outline:1px dashed") == 2
    assert "special tokens (dashed) hold 5" in fragment
    assert "p = 0.875" in fragment


def test_a_dominant_cls_keeps_the_words_pale():
    """The issue's random BERT: [CLS] held 0.026 of Σ 0.0257 while words scored ±0.0002 — they were
    drawn fully saturated on a scale without [CLS]; now the scale is [CLS]'s and they stay pale."""
    expl = _explanation(["[CLS]", "good", "bad", "[SEP]"], [0.026, 0.0002, -0.0002, -0.0001],
                        special=[True, False, False, True])
    colors = [tuple(map(int, c)) for c in re.findall(r"background-color:rgb\((\d+),(\d+),(\d+)\)",
                                                     explanation_html(expl))]
    assert colors[0] == relevance_color(1.0)
    assert all(min(c) > 245 for c in colors[1:])  # words nearly white: 0.0002 / 0.026 of the scale


def test_wordpieces_join_and_dicts_render():
    record = {"id": 7, "tokens": ["[CLS]", "un", "##believ", "##able", "[SEP]"], "scores": [0, 1, 1, 1, 0],
              "special": [True, False, False, False, True], "label_name": "pos", "probability": 0.5,
              "target_name": "pos", "method": "gradient"}
    fragment = explanation_html(record)
    assert ">un</span><span" in fragment and ">believ</span><span" in fragment and "##" not in fragment
    assert "id <b>7</b>" in fragment


def test_repr_html_uses_the_fragment():
    expl = _explanation(["a", "<b>"], [1.0, -1.0])
    assert expl._repr_html_() == explanation_html(expl)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="2 tokens but 1 scores"):
        explanation_html({"tokens": ["a", "b"], "scores": [1.0]})


def test_png_figure(tmp_path):
    expls = [_explanation(["[CLS]"] + [f"w{i}$" for i in range(40)] + ["[SEP]"], [0.1 * (i - 20) for i in range(42)]),
             _explanation(["short"], [1.0])]
    path = tmp_path / "fig.png"
    fig = plot_explanations(expls, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert fig.get_figheight() > 1.0
    with pytest.raises(ValueError):
        plot_explanations([])


def test_legends_name_the_explained_class():
    expl = _explanation(["[CLS]", "good", "[SEP]"], [0.1, 1.0, 0.0], special=[True, False, True], label_name="pos")
    fragment = explanation_html(expl)
    assert "supports pos" in fragment and "speaks against pos" in fragment
    assert "positive" not in fragment and "negative" not in fragment
    expl.contrast, expl.contrast_name = 0, "neg"
    fragment = explanation_html(expl)
    assert "supports pos over neg" in fragment and "supports neg over pos" in fragment
    page = render_html([expl])
    assert "speaks against the explained class" in page and "supports the explained class" in page


def test_the_html_states_the_account_not_a_ratio():
    expl = _explanation(["[CLS]", "good", "film", "[SEP]"], [0.5, 1.0, 0.25, 0.25], special=[True, False, False, True])
    expl.logits = [0.0, 4.0]
    fragment = explanation_html(expl)  # no shares measured: the remainder, named by what AttnLRP's rules absorb
    assert ("Σ relevance 2 = logit 4 − 2 absorbed by biases, norm shifts and the softmax rule · special tokens "
            "(dashed) hold 0.75") in fragment
    assert "conservation" not in fragment
    expl.shares = {"softmax": 0.5, "bias+norm": 1.5}
    assert "Σ relevance 2 = logit 4 − 0.5 absorbed by the softmax rule − 1.5 absorbed by biases and norm shifts" in \
        explanation_html(expl)
    expl.shares = {"softmax": 0.5, "bias+norm": -2.5}  # what relevance the biases add shows as added
    assert "logit 4 − 0.5 absorbed by the softmax rule + 2.5 from biases and norm shifts" in explanation_html(expl)
    record = {"tokens": ["a"], "scores": [1.0], "target_name": "x"}  # an old record without logits
    assert "Σ relevance 1<" in explanation_html(record) and "conservation" not in explanation_html(record)
    assert "biases (with the ε of the ε-rule)" in render_html([expl])  # the page says why, once


def test_every_class_is_a_details_block_with_the_prediction_open():
    expl = _explanation(["[CLS]", "a", "[SEP]"], [0.0, 1.0, 0.0], special=[True, False, True])
    expl.class_scores, expl.class_names, expl.logits = [[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]], ["<n>", "p"], [0.1, 0.9]
    fragment = explanation_html(expl)
    assert fragment.count("<details") == 2 and fragment.count("<details open>") == 1
    assert fragment.index("<details open>") > fragment.index("&lt;n&gt;")  # label 1 is the open one
    assert "supports &lt;n&gt;" in fragment and "<n>" not in fragment


def test_png_has_a_colour_bar_naming_the_class(tmp_path):
    fig = plot_explanations([_explanation(["good", "bad"], [1.0, -1.0], label_name="pos")], tmp_path / "f.png")
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    assert labels == ["speaks against pos", "0", "supports pos"]
    assert any("red = supports pos" in t.get_text() for t in fig.texts)
    assert any(t.get_text().startswith("Σ relevance 0 = logit") or t.get_text() == "Σ relevance 0"
               for t in fig.texts)


def test_png_has_one_colour_bar_per_kind_of_row(tmp_path):
    rows = [_explanation(["[CLS]", "good", "[SEP]"], [0.5, 1.0, -0.2], special=[True, False, True], method=m)
            for m in ("attnlrp", "gradient", "rollout")]
    fig = plot_explanations(rows, tmp_path / "f.png")
    bars = {ax.get_xlabel(): [t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes}
    assert bars == {"relevance, normalized per text (special tokens dashed)": ["speaks against pos", "0", "supports pos"],
                    "unsigned scores (not relevance: no class), normalized per text": ["0", "the text's largest score"]}
    only_unsigned = plot_explanations(rows[1:], tmp_path / "g.png")
    assert [ax.get_xlabel() for ax in only_unsigned.axes] == ["unsigned scores (not relevance: no class), normalized "
                                                              "per text"]
    special_boxes = [t for t in fig.texts if t.get_bbox_patch() is not None and t.get_bbox_patch().get_linestyle()
                     == "--" and t.get_bbox_patch().get_edgecolor()[:3] != (1.0, 1.0, 1.0)
                     and t.get_bbox_patch().get_edgecolor()[3] > 0]
    assert sorted(t.get_text() for t in special_boxes) == ["[CLS]"] * 3 + ["[SEP]"] * 3


def test_several_methods_of_a_text_share_one_head():
    one, two = (_explanation(["[CLS]", "good", "[SEP]"], [0.0, 1.0, 0.0], special=[True, False, True], method=m)
                for m in ("attnlrp", "cp_lrp"))
    page = render_html([one, two])
    assert page.count("predicted <b>pos</b>") == 1 and page.count("speaks against pos") == 1
    assert "method <b>attnlrp</b>" in page and "method <b>cp_lrp</b>" in page and page.count('class="lrpk-row"') == 1


def test_a_page_of_every_class_has_a_class_picker_without_scripts():
    expl = _explanation(["[CLS]", "a", "[SEP]"], [0.0, 1.0, 0.0], special=[True, False, True])
    expl.class_scores, expl.class_names, expl.logits = [[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]], ["<n>", "p"], [0.1, 0.9]
    page = render_html([expl])
    assert page.count('type="radio"') == 3 and "class &lt;n&gt;</label>" in page and "<script" not in page
    assert "#lrpk-pick-0:checked ~ .lrpk-page .lrpk-k0 { display: block; }" in page
    assert 'class="lrpk-cls lrpk-k1 lrpk-pred"' in page and "<details" not in page
    assert explanation_html(expl).count("<details") == 2  # a fragment (Jupyter) keeps one block per class


def test_the_layer_table_shows_totals_absorbed_shares_and_the_logit():
    expl = _explanation(["[CLS]", "good", "[SEP]"], [0.5, 1.0, 0.0], special=[True, False, True])
    expl.logits = [0.0, 2.0]
    expl.layers = {"points": ["embedding_sum", "encoder_output"], "stages": ["embeddings", "head"],
                   "kinds": ["bias", "norm", "softmax"], "relevance": [[0.5, 1.0, 0.0], [1.75, 0.0, 0.0]],
                   "absorbed": [[0.0, 0.25, 1e-9], [0.25, 0.0, 0.0]]}
    fragment = explanation_html(expl)
    assert "<details open><summary>relevance per layer" in fragment
    assert ">bias</th>" in fragment and ">norm</th>" in fragment and ">softmax</th>" not in fragment  # noise only
    assert ">1.5</td>" in fragment and ">1.75</td>" in fragment and "explained logit</th>" in fragment
    cls_cell = re.search(r"encoder_output</th>(?:<td[^>]*>[^<]*</td>){3}<td [^>]*background-color:rgb(\([^)]*\))",
                         fragment)
    assert cls_cell.group(1) == str(relevance_color(1.0))  # relevance on [CLS] alone is shown, not white


@pytest.mark.parametrize("method, relevance", [("attnlrp", True), ("grad_x_input", True),
                                               ("integrated_gradients", True), ("gradient", False), ("lat", False),
                                               ("rollout", False), ("random", False)])
def test_the_account_is_stated_for_relevance_only(method, relevance):
    expl = _explanation(["[CLS]", "good", "[SEP]"], [0.5, 1.0, 0.5], special=[True, False, True], method=method)
    expl.logits = [0.0, 4.0]
    fragment = explanation_html(expl)
    assert ("Σ relevance 2 = logit 4 − 2 " in fragment) == relevance
    assert ("Σ scores 2 · unsigned, not relevance: red = a larger score" in fragment) == (not relevance)
    assert ("speaks against pos" in fragment) == relevance  # red is not "supports" for unsigned scores
