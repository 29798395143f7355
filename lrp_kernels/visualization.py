"""Heatmaps of token relevance: HTML (standalone page, Jupyter fragment) and PNG (matplotlib).

Colors follow the LRP convention (Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation"): red for positive relevance (evidence
for the explained class), blue for negative, white for none. The scale is diverging and normalized
per text: a score s becomes s / max_t |s_t| over the text's non-special tokens, clipped to
[-1, 1], so every text uses the full range. Special tokens ([CLS], [SEP]) are shown in grey and take
no part in the normalization (they often collect large relevance that says nothing about words).

Every piece of text that reaches HTML (tokens, texts, label names, method, title) is escaped with
:func:`html.escape`; the page has no scripts and no external assets.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

# Diverging end points: LRP red for positive, blue for negative relevance.
_POSITIVE = (214, 39, 40)
_NEGATIVE = (31, 119, 180)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; }
.lrpk-expl { margin: 0 0 1.2em 0; padding: 0.6em 0.8em; border: 1px solid #ddd; border-radius: 6px; }
.lrpk-head { font-size: 0.85em; color: #555; margin-bottom: 0.4em; }
.lrpk-head b { color: #222; }
.lrpk-tokens { line-height: 2.0; }
.lrpk-tok { padding: 0.15em 0.2em; margin: 0 0.05em; border-radius: 3px; white-space: pre; }
.lrpk-special { color: #999; font-size: 0.8em; }
.lrpk-legend { display: flex; align-items: center; gap: 0.5em; font-size: 0.85em; margin-bottom: 1.5em; }
.lrpk-bar { width: 240px; height: 14px; border: 1px solid #ccc;
  background: linear-gradient(to right, rgb(31,119,180), #ffffff, rgb(214,39,40)); }
"""


def _get(expl, name, default=None):
    if isinstance(expl, Mapping):
        return expl.get(name, default)
    return getattr(expl, name, default)


def normalized_scores(scores: Sequence[float], special: Sequence[bool] | None = None) -> list[float]:
    """Scores divided by the largest |score| among non-special tokens, clipped to [-1, 1].

    A text whose non-special scores are all zero (or non-finite) maps to zeros.
    """
    special = list(special) if special else [False] * len(scores)
    finite = [abs(s) for s, sp in zip(scores, special) if not sp and math.isfinite(s)]
    scale = max(finite, default=0.0)
    if scale == 0.0:
        return [0.0] * len(scores)
    return [max(-1.0, min(1.0, s / scale)) if math.isfinite(s) else 0.0 for s in scores]


def relevance_color(value: float) -> tuple[int, int, int]:
    """RGB for a normalized score in [-1, 1]: white at 0, red at +1, blue at -1 (linear blend)."""
    value = max(-1.0, min(1.0, float(value)))
    end = _POSITIVE if value >= 0 else _NEGATIVE
    a = abs(value)
    return tuple(round(255 + a * (c - 255)) for c in end)


def _display_tokens(tokens: Sequence[str]) -> list[tuple[str, bool]]:
    """(text shown, space before) per token: WordPiece continuations (``##x``) join the previous piece."""
    shown = []
    for i, tok in enumerate(tokens):
        if tok.startswith("##") and len(tok) > 2:
            shown.append((tok[2:], False))
        elif tok.startswith("\u0120"):  # byte-level BPE (RoBERTa): Ġ marks a leading space
            shown.append((tok[1:], i > 0))
        else:
            shown.append((tok, i > 0))
    return shown


def _header(expl) -> str:
    method = html.escape(str(_get(expl, "method", "")))
    label = html.escape(str(_get(expl, "label_name", _get(expl, "label", ""))))
    prob = _get(expl, "probability")
    target = html.escape(str(_get(expl, "target_name", _get(expl, "target", ""))))
    parts = [f"predicted <b>{label}</b>"]
    if prob is not None:
        parts[-1] += f" (p = {float(prob):.3f})"
    parts.append(f"explained class <b>{target}</b>")
    parts.append(f"method <b>{method}</b>")
    ident = _get(expl, "id")
    if ident is not None:
        parts.insert(0, f"id <b>{html.escape(str(ident))}</b>")
    return " · ".join(parts)


def explanation_html(expl) -> str:
    """An HTML fragment for one explanation (an :class:`~lrp_kernels.Explanation` or its dict).

    Inline styles only, so it renders the same in Jupyter (``_repr_html_``) and in a page.
    """
    tokens = [str(t) for t in _get(expl, "tokens", [])]
    scores = [float(s) for s in _get(expl, "scores", [])]
    if len(tokens) != len(scores):
        raise ValueError(f"explanation has {len(tokens)} tokens but {len(scores)} scores")
    special = list(_get(expl, "special", None) or [False] * len(tokens))
    norm = normalized_scores(scores, special)
    spans = []
    for (shown, space), score, value, sp in zip(_display_tokens(tokens), scores, norm, special):
        sep = " " if space else ""
        if sp:
            spans.append(f'{sep}<span class="lrpk-tok lrpk-special" style="color:#999;font-size:0.8em" '
                         f'title="{score:.4g}">{html.escape(shown)}</span>')
            continue
        r, g, b = relevance_color(value)
        spans.append(f'{sep}<span class="lrpk-tok" style="background-color:rgb({r},{g},{b});'
                     f'padding:0.15em 0.2em;border-radius:3px" title="{score:.4g}">{html.escape(shown)}</span>')
    return (
        '<div class="lrpk-expl" style="margin:0 0 1.2em 0;padding:0.6em 0.8em;border:1px solid #ddd;'
        'border-radius:6px">'
        f'<div class="lrpk-head" style="font-size:0.85em;color:#555;margin-bottom:0.4em">{_header(expl)}</div>'
        f'<div class="lrpk-tokens" style="line-height:2.0">{"".join(spans)}</div>'
        "</div>"
    )


def legend_html() -> str:
    """The color bar: negative (blue) … 0 (white) … positive (red), per-text normalized."""
    return ('<div class="lrpk-legend"><span>negative</span><div class="lrpk-bar"></div><span>positive</span>'
            "<span>relevance, normalized per text (hover a token for its raw score)</span></div>")


def render_html(explanations, title: str = "lrp-kernels explanations", intro: str | None = None) -> str:
    """A standalone HTML page (no scripts, no external assets) with one heatmap per explanation."""
    body = "\n".join(explanation_html(e) for e in explanations)
    intro_html = f"<p>{html.escape(intro)}</p>" if intro else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{intro_html}\n{legend_html()}\n{body}\n</body>\n</html>\n"
    )


def save_html(explanations, path, title: str = "lrp-kernels explanations", intro: str | None = None) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(explanations, title=title, intro=intro), encoding="utf-8")
    return path


def _mpl_text(text: str) -> str:
    """Text shown literally by matplotlib ($ would start mathtext)."""
    return text.replace("$", r"\$")


_LINE_H = 0.32  # inches per wrapped line of tokens in plot_explanations


def _wrap(expl, max_chars: int) -> list[list[tuple[str, bool, float, bool]]]:
    """The explanation's tokens as lines of (shown text, space before, normalized score, special)."""
    tokens = [str(t) for t in _get(expl, "tokens", [])]
    scores = [float(s) for s in _get(expl, "scores", [])]
    special = list(_get(expl, "special", None) or [False] * len(tokens))
    norm = normalized_scores(scores, special)
    lines, line, used = [], [], 0
    for (shown, space), value, sp in zip(_display_tokens(tokens), norm, special):
        cost = len(shown) + (1 if space else 0)
        if line and used + cost > max_chars:
            lines.append(line)
            line, used, space = [], 0, False
        line.append((shown, space, value, sp))
        used += cost
    if line:
        lines.append(line)
    return lines


def _draw(fig, expl, lines, top: float, total: float, char_w: float, fontsize: float) -> None:
    """One explanation's header and wrapped, colored tokens, from ``top`` (inches from the bottom) down."""
    header = (f"{_get(expl, 'method', '')}: predicted {_get(expl, 'label_name', '')}"
              f" (p = {float(_get(expl, 'probability', float('nan'))):.3f}),"
              f" explained {_get(expl, 'target_name', '')}")
    fig.text(0.01, (top - 0.2) / total, _mpl_text(header), fontsize=8, color="#555", va="center")
    for i, line in enumerate(lines):
        ly = (top - 0.35 - _LINE_H * (i + 0.5)) / total
        x = 0.01
        for shown, space, value, sp in line:
            if space:
                x += char_w
            color = "#999999" if sp else "black"
            face = (1.0, 1.0, 1.0) if sp else tuple(c / 255 for c in relevance_color(value))
            fig.text(x, ly, _mpl_text(shown), fontsize=fontsize, family="monospace", color=color, va="center",
                     bbox=dict(boxstyle="square,pad=0.15", facecolor=face, edgecolor="none"))
            x += char_w * max(1, len(shown))


def plot_explanations(explanations, path=None, width: float = 10.0, fontsize: float = 9.0, dpi: int = 150):
    """A matplotlib figure with one heatmap per explanation (tokens as colored boxes, wrapped).

    Saved to ``path`` (PNG, PDF or SVG by suffix) when given. Returns the figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    explanations = list(explanations)
    if not explanations:
        raise ValueError("no explanations to plot")
    char_w = 0.6 * fontsize / 72 / width  # a monospace glyph is about 0.6 em wide, in figure fractions
    layouts = [(expl, _wrap(expl, max(10, int(0.96 / char_w)))) for expl in explanations]
    heights = [0.35 + _LINE_H * max(1, len(lines)) + 0.2 for _, lines in layouts]
    fig = plt.figure(figsize=(width, sum(heights) + 0.2))
    total = sum(heights) + 0.2
    y = total - 0.1
    for (expl, lines), h in zip(layouts, heights):
        _draw(fig, expl, lines, y, total, char_w, fontsize)
        y -= h
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig
