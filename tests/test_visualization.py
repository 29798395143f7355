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
        # the special token's score is outside the scale and clipped
        ([10.0, 0.2, -0.1, 3.0], [True, False, False, True], [1.0, 1.0, -0.5, 1.0]),
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


def test_colors_follow_sign_and_specials_are_grey():
    expl = _explanation(["[CLS]", "good", "bad", "[SEP]"], [5.0, 2.0, -1.0, 0.0], special=[True, False, False, True])
    fragment = explanation_html(expl)
    colors = re.findall(r"background-color:rgb\((\d+),(\d+),(\d+)\)", fragment)
    assert [tuple(map(int, c)) for c in colors] == [relevance_color(1.0), relevance_color(-0.5)]
    assert fragment.count("lrpk-special") == 2
    assert "p = 0.875" in fragment


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
