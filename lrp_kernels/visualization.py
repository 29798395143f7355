"""Heatmaps of token relevance: HTML (standalone page, Jupyter fragment) and PNG (matplotlib).

Colors follow the LRP convention (Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation"): red for positive relevance — the token
**supports** the explained class — blue for negative — it **speaks against** that class — white
for none. Every legend names the class (with a contrast: "supports ‹a› over ‹b›"), so that red is
never read as "positive sentiment". The scale is diverging and normalized per text: a score s
becomes s / max_t |s_t| over the text's non-special tokens, clipped to [-1, 1], so every text uses
the full range. Special tokens ([CLS], [SEP]) are shown in grey and take no part in the
normalization (they often collect large relevance that says nothing about words).

Each HTML block states the total relevance, the explained logit and their ratio (conservation).
With ``target="all"`` every class is a ``<details>`` block (the predicted one open) — the reader
picks a class without scripts; with ``layers`` a token × layer table shows the relevance reaching
each block and what each block absorbs. Explanations of the same text by several methods stand
side by side.

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
_BAR = ('<span class="lrpk-bar" style="display:inline-block;width:120px;height:10px;border:1px solid #ccc;'
        'vertical-align:middle;background:linear-gradient(to right, rgb(31,119,180), #ffffff, rgb(214,39,40))"></span>')


def _get(expl, name, default=None):
    if isinstance(expl, Mapping):
        return expl.get(name, default)
    return getattr(expl, name, default)


def _esc(value) -> str:
    return html.escape(str(value))


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
    """(text shown, space before) per token: WordPiece continuations (``##x``) join the previous
    piece; byte-level BPE's ``Ġ`` and SentencePiece's ``▁`` mark a leading space."""
    shown = []
    for i, tok in enumerate(tokens):
        if tok.startswith("##") and len(tok) > 2:
            shown.append((tok[2:], False))
        elif tok[:1] in ("\u0120", "\u2581") and len(tok) > 1:
            shown.append((tok[1:], i > 0))
        else:
            shown.append((tok, i > 0))
    return shown


def _class_words(expl, target_name=None) -> tuple[str, str]:
    """What red and blue mean for this explanation: ("supports ‹a›", "speaks against ‹a›"), or
    with a contrast ("supports ‹a› over ‹b›", "supports ‹b› over ‹a›"). Not escaped."""
    target = target_name if target_name is not None else _get(expl, "target_name", _get(expl, "target", ""))
    contrast = _get(expl, "contrast_name", _get(expl, "contrast"))
    if contrast is None:
        return f"supports {target}", f"speaks against {target}"
    return f"supports {target} over {contrast}", f"supports {contrast} over {target}"


def _key(expl, target_name=None) -> str:
    """The legend of one heatmap: the colours for its explained class."""
    red, blue = _class_words(expl, target_name)
    return (f'<span style="color:rgb{_NEGATIVE}">blue: {_esc(blue)}</span> {_BAR} '
            f'<span style="color:rgb{_POSITIVE}">red: {_esc(red)}</span>')


def _totals(expl, scores=None, logit=None) -> str:
    """"Σ relevance … · explained logit … · conservation …" (as far as known)."""
    scores = _get(expl, "scores", []) if scores is None else scores
    total = sum(float(s) for s in scores)
    logit = _get(expl, "target_logit") if logit is None else logit
    text = f"Σ relevance {total:.4g}"
    if logit is not None and math.isfinite(float(logit)):
        text += f" · explained logit {float(logit):.4g}"
        if float(logit) != 0.0:
            text += f" · conservation {total / float(logit):.3f}"
    return text


def _header(expl) -> str:
    method = _esc(_get(expl, "method", ""))
    label = _esc(_get(expl, "label_name", _get(expl, "label", "")))
    prob = _get(expl, "probability")
    target = _esc(_get(expl, "target_name", _get(expl, "target", "")))
    parts = [f"predicted <b>{label}</b>"]
    if prob is not None:
        parts[-1] += f" (p = {float(prob):.3f})"
    if _get(expl, "class_scores") is None:
        parts.append(f"explained class <b>{target}</b>")
    contrast = _get(expl, "contrast_name", _get(expl, "contrast"))
    if contrast is not None:
        parts[-1] += f" against <b>{_esc(contrast)}</b>"
    parts.append(f"method <b>{method}</b>")
    windows = _get(expl, "windows") or 1
    if windows > 1:
        parts.append(f"{windows} windows")
    ident = _get(expl, "id")
    if ident is not None:
        parts.insert(0, f"id <b>{_esc(ident)}</b>")
    return " · ".join(parts)


def _token_spans(tokens, scores, special) -> str:
    norm = normalized_scores(scores, special)
    spans = []
    for (shown, space), score, value, sp in zip(_display_tokens(tokens), scores, norm, special):
        sep = " " if space else ""
        if sp:
            spans.append(f'{sep}<span class="lrpk-tok lrpk-special" style="color:#999;font-size:0.8em" '
                         f'title="{score:.4g}">{_esc(shown)}</span>')
            continue
        r, g, b = relevance_color(value)
        spans.append(f'{sep}<span class="lrpk-tok" style="background-color:rgb({r},{g},{b});'
                     f'padding:0.15em 0.2em;border-radius:3px" title="{score:.4g}">{_esc(shown)}</span>')
    return f'<div class="lrpk-tokens" style="line-height:2.0">{"".join(spans)}</div>'


def _small(text: str) -> str:
    return f'<div class="lrpk-key" style="font-size:0.8em;color:#555;margin:0.2em 0">{text}</div>'


def _per_class(expl, tokens, special) -> str:
    """``target="all"``: one ``<details>`` per class, the predicted one open."""
    names = _get(expl, "class_names") or [str(k) for k in range(len(_get(expl, "class_scores")))]
    logits = _get(expl, "logits") or []
    contrast = _get(expl, "contrast")
    blocks = []
    for k, (name, scores) in enumerate(zip(names, _get(expl, "class_scores"))):
        logit = logits[k] - (logits[contrast] if contrast is not None else 0.0) if logits else None
        opened = " open" if k == _get(expl, "label") else ""
        blocks.append(f"<details{opened}><summary>class <b>{_esc(name)}</b></summary>"
                      f"{_small(_key(expl, name) + ' · ' + _totals(expl, scores, logit))}"
                      f"{_token_spans(tokens, [float(s) for s in scores], special)}</details>")
    return "".join(blocks)


def layers_html(expl) -> str:
    """A token × layer table of ``expl``'s ``layers``: the relevance reaching each point (colours
    normalized per row), its total, and what the stage after it absorbs."""
    layers = _get(expl, "layers")
    tokens = [shown for shown, _ in _display_tokens([str(t) for t in _get(expl, "tokens", [])])]
    special = list(_get(expl, "special", None) or [False] * len(tokens))
    cell = 'style="padding:0.1em 0.3em;border:1px solid #eee;{}"'
    head = "".join(f"<th {cell.format('font-weight:normal')}>{_esc(t)}</th>" for t in tokens)
    rows = []
    for point, values, stage, shares in zip(layers["points"], layers["relevance"], layers["stages"], layers["absorbed"]):
        cells = "".join(f'<td {cell.format("background-color:rgb" + str(relevance_color(v)))} title="{s:.4g}"></td>'
                        for v, s in zip(normalized_scores(values, special), values))
        detail = ", ".join(f"{k} {float(x):.3g}" for k, x in zip(layers["kinds"], shares))
        rows.append(f"<tr><th {cell.format('text-align:left')}>{_esc(point)}</th>{cells}"
                    f"<td {cell.format('')}>{sum(values):.4g}</td>"
                    f"<td {cell.format('')} title=\"{_esc(detail)}\">{_esc(stage)}: {sum(shares):.3g}</td></tr>")
    return ('<details><summary>relevance per layer</summary><div style="overflow-x:auto">'
            '<table style="border-collapse:collapse;font-size:0.75em">'
            f"<tr><th></th>{head}<th>Σ</th><th>absorbed after (hover: by kind)</th></tr>{''.join(rows)}"
            "</table></div></details>")


def explanation_html(expl) -> str:
    """An HTML fragment for one explanation (an :class:`~lrp_kernels.Explanation` or its dict).

    Inline styles only, so it renders the same in Jupyter (``_repr_html_``) and in a page.
    """
    tokens = [str(t) for t in _get(expl, "tokens", [])]
    scores = [float(s) for s in _get(expl, "scores", [])]
    if len(tokens) != len(scores):
        raise ValueError(f"explanation has {len(tokens)} tokens but {len(scores)} scores")
    special = list(_get(expl, "special", None) or [False] * len(tokens))
    if _get(expl, "class_scores") is not None:
        body = _per_class(expl, tokens, special)
    else:
        body = _small(_key(expl) + " · " + _totals(expl, scores)) + _token_spans(tokens, scores, special)
    if _get(expl, "layers"):
        body += layers_html(expl)
    return (
        '<div class="lrpk-expl" style="margin:0 0 1.2em 0;padding:0.6em 0.8em;border:1px solid #ddd;'
        'border-radius:6px">'
        f'<div class="lrpk-head" style="font-size:0.85em;color:#555;margin-bottom:0.4em">{_header(expl)}</div>'
        f"{body}</div>"
    )


def legend_html(target_name: str | None = None) -> str:
    """The color bar: what blue and red mean for ``target_name`` (default: the explained class)."""
    red, blue = _class_words({}, target_name or "the explained class")
    return (f'<div class="lrpk-legend"><span>{_esc(blue)}</span><div class="lrpk-bar"></div><span>{_esc(red)}</span>'
            "<span>relevance, normalized per text (hover a token for its raw score)</span></div>")


def _groups(explanations) -> list[list]:
    """Consecutive explanations of the same text (pair) by different methods, grouped."""
    groups: list[list] = []
    for expl in explanations:
        last = groups[-1] if groups else None
        same = last and all(_get(expl, k) == _get(last[0], k) for k in ("text", "text_pair", "id"))
        if same and _get(expl, "method") not in {_get(e, "method") for e in last}:
            last.append(expl)
        else:
            groups.append([expl])
    return groups


def explanations_html(explanations) -> str:
    """The legend and every explanation; several methods of one text side by side (a fragment)."""
    parts = [legend_html()]
    for group in _groups(explanations):
        if len(group) == 1:
            parts.append(explanation_html(group[0]))
            continue
        cells = "".join(f'<div style="flex:1 1 0;min-width:16em">{explanation_html(e)}</div>' for e in group)
        parts.append(f'<div class="lrpk-row" style="display:flex;gap:0.8em;align-items:flex-start">{cells}</div>')
    return "\n".join(parts)


def render_html(explanations, title: str = "lrp-kernels explanations", intro: str | None = None) -> str:
    """A standalone HTML page (no scripts, no external assets) with one heatmap per explanation."""
    intro_html = f"<p>{_esc(intro)}</p>" if intro else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n{intro_html}\n{explanations_html(explanations)}\n</body>\n</html>\n"
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


def _layout(expl, max_chars: int) -> list[list[tuple[str, bool, float, bool]]]:
    """Lines of (shown, space before, normalized score, special) wrapped at ``max_chars``."""
    tokens = [str(t) for t in _get(expl, "tokens", [])]
    scores = [float(s) for s in _get(expl, "scores", [])]
    special = list(_get(expl, "special", None) or [False] * len(tokens))
    lines, line, used = [], [], 0
    for (shown, space), value, sp in zip(_display_tokens(tokens), normalized_scores(scores, special), special):
        cost = len(shown) + (1 if space else 0)
        if line and used + cost > max_chars:
            lines.append(line)
            line, used, space = [], 0, False
        line.append((shown, space, value, sp))
        used += cost
    return lines + [line] if line else lines


def _plot_header(expl) -> str:
    red, _ = _class_words(expl)
    return (f"{_get(expl, 'method', '')}: predicted {_get(expl, 'label_name', '')}"
            f" (p = {float(_get(expl, 'probability', float('nan'))):.3f}); red = {red}; {_totals(expl)}")


def _colour_bar(fig, explanations, bottom: float) -> None:
    """A colour bar across the bottom, its ends named for the explained class (when all share one)."""
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import ListedColormap, Normalize

    classes = {(_get(e, "target_name"), _get(e, "contrast_name")) for e in explanations}
    only = next(iter(classes)) if len(classes) == 1 else (None, None)
    red, blue = _class_words({"contrast_name": only[1]}, only[0] or "the explained class")
    colours = ListedColormap([tuple(c / 255 for c in relevance_color(v / 127.5 - 1)) for v in range(256)])
    ax = fig.add_axes([0.3, bottom, 0.4, 0.12 / fig.get_figheight()])
    bar = ColorbarBase(ax, cmap=colours, norm=Normalize(-1, 1), orientation="horizontal")
    bar.set_ticks([-1, 0, 1])
    bar.set_ticklabels([_mpl_text(blue), "0", _mpl_text(red)], fontsize=7)
    bar.set_label("relevance, normalized per text", fontsize=7)


def plot_explanations(explanations, path=None, width: float = 10.0, fontsize: float = 9.0, dpi: int = 150):
    """A matplotlib figure with one heatmap per explanation (tokens as colored boxes, wrapped), each
    headed by its method, prediction and explained class, and a colour bar naming the class.

    Saved to ``path`` (PNG, PDF or SVG by suffix) when given. Returns the figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    explanations = list(explanations)
    if not explanations:
        raise ValueError("no explanations to plot")
    char_w = 0.6 * fontsize / 72 / width  # a monospace glyph is about 0.6 em wide, in figure fractions
    layouts = [(expl, _layout(expl, max(10, int(0.96 / char_w)))) for expl in explanations]
    line_h, bar_h = 0.32, 0.75
    heights = [0.35 + line_h * max(1, len(lines)) + 0.2 for _, lines in layouts]
    total = sum(heights) + 0.2 + bar_h
    fig = plt.figure(figsize=(width, total))
    y = total - 0.1
    for (expl, lines), h in zip(layouts, heights):
        fig.text(0.01, (y - 0.2) / total, _mpl_text(_plot_header(expl)), fontsize=8, color="#555", va="center")
        for i, line in enumerate(lines):
            ly, x = (y - 0.35 - line_h * (i + 0.5)) / total, 0.01
            for shown, space, value, sp in line:
                x += char_w if space else 0.0
                face = (1.0, 1.0, 1.0) if sp else tuple(c / 255 for c in relevance_color(value))
                fig.text(x, ly, _mpl_text(shown), fontsize=fontsize, family="monospace", va="center",
                         color="#999999" if sp else "black",
                         bbox=dict(boxstyle="square,pad=0.15", facecolor=face, edgecolor="none"))
                x += char_w * max(1, len(shown))
        y -= h
    _colour_bar(fig, explanations, 0.45 / total)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig
