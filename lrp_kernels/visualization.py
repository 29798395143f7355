"""Heatmaps of token relevance: HTML (standalone page, Jupyter fragment) and PNG (matplotlib).

Colors follow the LRP convention (Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation"): red for positive relevance — the token
**supports** the explained class — blue for negative — it **speaks against** that class — white
for none. Every legend names the class (with a contrast: "supports ‹a› over ‹b›"), so that red is
never read as "positive sentiment". The scale is diverging and normalized per text: a score s
becomes s / max_t |s_t| over EVERY token of the text, special tokens ([CLS], [SEP]) included — they
often hold the largest scores, and a scale without them would saturate words that score little —
so every text uses the full range. Special tokens are drawn in their colour with a dashed outline,
and each block says how much relevance they hold.

Each HTML block states the account of its relevance: "Σ relevance 5.19 = logit 1.67 + 3.52 from
biases and norm shifts" — what reached the tokens, the explained logit and where the rest went
(:func:`lrp_kernels.layer_relevance.account_text`; the page's legend says why in one sentence).
Scores that are not relevance — Gradient Sensitivity's norms, attention (LAT, rollout), the random
control — have no sign and do not add up to a logit: their blocks say so, and red is "a larger
score" there, not support for a class.
Explanations of the same text by several methods stand side by side under one head (id,
prediction, explained class and its colours, stated once). With ``target="all"`` a page gets a
class picker (radio buttons and CSS ``:checked`` rules, no script) that shows one class — or each
text's predicted class — in every heatmap at once; a fragment (Jupyter) shows every class as a
``<details>`` block, the predicted one open. With ``layers`` a token × layer table shows per block
the relevance reaching its input, what the block absorbs by kind (bias, norm, softmax, …) and the
relevance per token.

The prediction is stated by the model's head (:func:`prediction_text`): "predicted ‹class› (p = …)"
(softmax), "predicted ‹a›: p, ‹b›: p" for a multi-label model (each label with sigmoid ≥ 0.5), or
"predicted value …" for a regression, whose colours read "raises / lowers the predicted value".

Every piece of text that reaches HTML (tokens, texts, label names, method, title) is escaped with
:func:`html.escape`; the page has no scripts and no external assets.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from lrp_kernels.models.config import MULTI_LABEL, REGRESSION

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
.lrpk-special { outline: 1px dashed #555; font-size: 0.8em; }
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
    """Scores divided by the largest |score| of the text, in [-1, 1]: every token counts, special
    tokens too (``special`` changes nothing: a scale that left them out would saturate the words
    while [CLS] holds most of the relevance). A text whose scores are all zero (or non-finite) maps to
    zeros; a non-finite score maps to 0."""
    finite = [abs(s) for s in scores if math.isfinite(s)]
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
    with a contrast ("supports ‹a› over ‹b›", "supports ‹b› over ‹a›"); for a regression ("raises
    the predicted value", "lowers …", naming the output when there are several). Not escaped."""
    target = target_name if target_name is not None else _get(expl, "target_name", _get(expl, "target", ""))
    if _get(expl, "problem_type") == REGRESSION:
        value = "the predicted value" + (f" of {target}" if len(_get(expl, "logits") or ()) > 1 else "")
        return f"raises {value}", f"lowers {value}"
    contrast = _get(expl, "contrast_name", _get(expl, "contrast"))
    if contrast is None:
        return f"supports {target}", f"speaks against {target}"
    return f"supports {target} over {contrast}", f"supports {contrast} over {target}"


def _names(expl) -> list[str]:
    """The label names of an explanation: ``class_names``, else the indices."""
    return _get(expl, "class_names") or [str(k) for k in range(len(_get(expl, "logits") or ()))]


def prediction_text(expl, bold=lambda text: text) -> str:
    """What the model predicts, in words (``bold`` marks the names and values — escape first for HTML):
    "predicted ‹class› (p = 0.912)" (single-label: the softmax probability); "predicted ‹a›: 0.912,
    ‹b›: 0.634" (multi-label: every label whose sigmoid is ≥ 0.5, or "no label ≥ 0.5; top ‹c›:
    0.412"); "predicted value 0.0283" (regression; with several outputs "predicted values ‹a›: …";
    "reward 0.0283" for an explained conversation, a reward model's input)."""
    kind, label = _get(expl, "problem_type"), _get(expl, "label_name", _get(expl, "label", ""))
    if kind == MULTI_LABEL:
        p, names = _get(expl, "probabilities") or [], _names(expl)
        chosen = [f"{bold(names[k])}: {p[k]:.3f}" for k in _get(expl, "predicted") or []]
        if chosen:
            return "predicted " + ", ".join(chosen)
        return f"predicted no label (sigmoid ≥ 0.5); top {bold(label)}: {float(_get(expl, 'probability')):.3f}"
    if kind == REGRESSION:
        values = _get(expl, "logits") or [_get(expl, "value")]
        if len(values) == 1:
            return f"{'reward' if _get(expl, 'messages') else 'predicted value'} {bold(f'{float(values[0]):.4g}')}"
        return "predicted values " + ", ".join(f"{bold(n)}: {float(v):.4g}" for n, v in zip(_names(expl), values))
    prob = _get(expl, "probability")
    return f"predicted {bold(label)}" + ("" if prob is None else f" (p = {float(prob):.3f})")


def _explained_text(expl, bold=lambda text: text) -> str:
    """What was explained, in words: the class, every class, or the labels selected per text."""
    classes = _get(expl, "class_scores")
    if classes is not None:
        if all(c is not None for c in classes):
            return "every class"
        return "explained labels " + ", ".join(bold(n) for n, c in zip(_names(expl), classes) if c is not None)
    target = _get(expl, "target_name", _get(expl, "target", ""))
    if _get(expl, "problem_type") == REGRESSION:
        return "explained the predicted value" + (f" of {bold(target)}" if len(_get(expl, "logits") or ()) > 1 else "")
    return f"explained {'label' if _get(expl, 'problem_type') == MULTI_LABEL else 'class'} {bold(target)}"


UNSIGNED = "red: a larger score (unsigned: not support for a class)"  # the key of scores that are not relevance


def _key(expl, target_name=None) -> str:
    """The legend of one heatmap: the colours for its explained class (scores that are not
    relevance — gradient norms, attention, the random control — have no sign: red = larger)."""
    if not _is_relevance(_get(expl, "method")):
        return f'{_BAR} <span style="color:rgb{_POSITIVE}">{UNSIGNED}</span>'
    red, blue = _class_words(expl, target_name)
    return (f'<span style="color:rgb{_NEGATIVE}">blue: {_esc(blue)}</span> {_BAR} '
            f'<span style="color:rgb{_POSITIVE}">red: {_esc(red)}</span>')


def _is_relevance(method) -> bool:
    """Whether a method's scores are relevance, meant to add up to the explained logit (the LRP rules,
    Gradient × Input, integrated gradients; not gradient norms, attention maps or the random control)."""
    from lrp_kernels.methods import REGISTRY

    spec = REGISTRY.get(method) if isinstance(method, str) else None
    return spec is None or (spec.kind in ("gradient", "integrated_gradients") and not spec.norm)


def _totals(expl, scores=None, logit=None, shares=None) -> str:
    """The account of a heatmap: "Σ relevance 5.19 = logit 1.67 + 3.52 from biases and norm shifts"
    (``shares``, else the explanation's; without any the remainder is one share named by what the
    method's rules absorb), then what the special tokens hold; for scores that are not relevance only
    their sum, said so."""
    from lrp_kernels.layer_relevance import account_text

    scores = _get(expl, "scores", []) if scores is None else scores
    total = sum(float(s) for s in scores)
    specials = _specials_text(expl, scores)
    if not _is_relevance(_get(expl, "method")):
        return f"Σ scores {total:.4g} · unsigned, not relevance: red = a larger score, not support for a class" + specials
    logit = _get(expl, "target_logit") if logit is None else logit
    if logit is None or not math.isfinite(float(logit)):
        return f"Σ relevance {total:.4g}" + specials
    shares = _get(expl, "shares") if shares is None else shares
    if shares is None:
        shares = {_lumped(_get(expl, "method")): float(logit) - total}
    return account_text(total, float(logit), shares) + specials


def _lumped(method) -> str:
    """The name of an account's one share when it was not split (by the method's rules)."""
    from lrp_kernels.attribution import lumped_share
    from lrp_kernels.methods import REGISTRY

    return lumped_share(REGISTRY[method]) if method in REGISTRY else "rules"


def _specials_text(expl, scores) -> str:
    """" · special tokens (dashed) hold 0.0259" when the text has special tokens."""
    special = list(_get(expl, "special", None) or [])
    held = [float(s) for s, sp in zip(scores, special) if sp]
    return f" · special tokens (dashed) hold {sum(held):.3g}".replace("-", "−") if held else ""


def _header(expl, shared: bool = True, method: bool = True) -> str:
    """The head line of a heatmap: (``shared``) the id, prediction, explained class and windows — what
    every method of a text shares — and (``method``) the method."""
    parts = []
    if shared:
        ident = _get(expl, "id")
        if ident is not None:
            parts.append(f"id <b>{_esc(ident)}</b>")
        parts.append(prediction_text(expl, _bold))
        explained = _explained_text(expl, _bold)
        contrast = _get(expl, "contrast_name", _get(expl, "contrast"))
        parts.append(explained + ("" if contrast is None else f" against <b>{_esc(contrast)}</b>"))
        windows = _get(expl, "windows") or 1
        if windows > 1:
            parts.append(f"{windows} windows")
    if method:
        parts.append(f"method <b>{_esc(_get(expl, 'method', ''))}</b>")
    return " · ".join(parts)


def _bold(text) -> str:
    return f"<b>{_esc(text)}</b>"


def _token_spans(tokens, scores, special, messages=None) -> str:
    """The heatmap of one text (colours normalized over the whole text); with ``messages`` (a
    conversation) one line per message, headed by its role."""
    norm = normalized_scores(scores, special)
    if messages:
        blocks = []
        for m in messages:
            part = slice(m["start"], m["end"])
            blocks.append(f'<div class="lrpk-msg" style="margin:0.2em 0"><span style="font-size:0.75em;color:#555;'
                          f'font-weight:600;margin-right:0.5em">{_esc(m["role"])}</span>'
                          f'{_spans(tokens[part], scores[part], norm[part], special[part], inline=True)}</div>')
        return f'<div class="lrpk-tokens" style="line-height:2.0">{"".join(blocks)}</div>'
    return _spans(tokens, scores, norm, special)


def _spans(tokens, scores, norm, special, inline: bool = False) -> str:
    spans = []
    for (shown, space), score, value, sp in zip(_display_tokens(tokens), scores, norm, special):
        sep = " " if space else ""
        r, g, b = relevance_color(value)
        marker = ("lrpk-tok lrpk-special", "outline:1px dashed #555;font-size:0.8em;", "special token ") if sp else \
            ("lrpk-tok", "", "")
        spans.append(f'{sep}<span class="{marker[0]}" style="background-color:rgb({r},{g},{b});{marker[1]}'
                     f'padding:0.15em 0.2em;border-radius:3px" title="{marker[2]}{score:.4g}">{_esc(shown)}</span>')
    return "".join(spans) if inline else f'<div class="lrpk-tokens" style="line-height:2.0">{"".join(spans)}</div>'


def _small(text: str) -> str:
    return f'<div class="lrpk-key" style="font-size:0.8em;color:#555;margin:0.2em 0">{text}</div>'


def _classes(expl):
    """``target="all"`` (or labels selected per text): (index, name, scores, explained logit, title) per
    class explained — a multi-label title gives the label's sigmoid, a regression's its value."""
    names = _get(expl, "class_names") or [str(k) for k in range(len(_get(expl, "class_scores")))]
    logits = _get(expl, "logits") or []
    contrast, label, kind = _get(expl, "contrast"), _get(expl, "label"), _get(expl, "problem_type")
    p, predicted = _get(expl, "probabilities") or [], _get(expl, "predicted") or []
    for k, (name, scores) in enumerate(zip(names, _get(expl, "class_scores"))):
        if scores is None:  # not selected
            continue
        logit = logits[k] - (logits[contrast] if contrast is not None else 0.0) if logits else None
        if kind == MULTI_LABEL:
            title = f"label <b>{_esc(name)}</b>: {p[k]:.3f}" + (" (predicted)" if k in predicted else "")
        elif kind == REGRESSION:
            title = f"output <b>{_esc(name)}</b>: value {float(logits[k]):.4g}"
        else:
            title = f"class <b>{_esc(name)}</b>" + (" (predicted)" if k == label else "")
        yield k, name, [float(s) for s in scores], logit, title


def _picked(expl, k: int, content: str) -> str:
    """``content`` shown when the page's class picker selects class ``k`` (or the predicted class)."""
    shown = f"lrpk-cls lrpk-k{k}" + (" lrpk-pred" if k == _get(expl, "label") else "")
    return f'<div class="{shown}">{content}</div>'


def _class_heads(expl) -> str:
    """Per class, its title and colour key, each shown by the class picker."""
    return "".join(_picked(expl, k, _small(f"{title} · {_key(expl, name)}")) for k, name, _, _, title in _classes(expl))


def _per_class(expl, tokens, special, picker: bool = False, grouped: bool = False) -> str:
    """``target="all"``: a block per class — a ``<details>`` each, the predicted one open, or with
    ``picker`` one that the page's class picker shows (:func:`_class_picker`; ``grouped``: its title
    and key are in the group's head)."""
    blocks = []
    class_shares = _get(expl, "class_shares") or []
    for k, name, scores, logit, title in _classes(expl):
        shares = class_shares[k] if k < len(class_shares) else None
        body = _small(_totals(expl, scores, logit, shares)) + _token_spans(tokens, scores, special,
                                                                          _get(expl, "messages"))
        if picker:
            head = "" if grouped else _small(f"{title} · {_key(expl, name)}")
            blocks.append(_picked(expl, k, head + body))
        else:
            opened = " open" if k == _get(expl, "label") else ""
            blocks.append(f"<details{opened}><summary>{title}</summary>{_small(_key(expl, name))}{body}</details>")
    return "".join(blocks)


def _class_picker(explanations) -> tuple[str, str]:
    """``target="all"`` on a page: radio buttons that show one class in every heatmap at once (CSS
    ``:checked`` rules, no script). (CSS, the buttons); empty when no explanation has every class."""
    names = next((_get(e, "class_names") or [str(k) for k in range(len(_get(e, "class_scores")))]
                  for e in explanations if _get(e, "class_scores") is not None), None)
    if names is None:
        return "", ""
    css = [".lrpk-cls { display: none; }", "#lrpk-pick-p:checked ~ .lrpk-page .lrpk-pred { display: block; }"]
    css += [f"#lrpk-pick-{k}:checked ~ .lrpk-page .lrpk-k{k} {{ display: block; }}" for k in range(len(names))]
    options = [("p", "the predicted class")] + [(str(k), f"class {name}") for k, name in enumerate(names)]
    buttons = "".join(f'<input type="radio" name="lrpk-pick" id="lrpk-pick-{key}"{" checked" if key == "p" else ""}>'
                      f'<label for="lrpk-pick-{key}" style="margin-right:1em">{_esc(text)}</label>'
                      for key, text in options)
    return "\n".join(css), (f'<span style="font-weight:600;margin-right:0.6em">show the relevance for:</span>{buttons}'
                            '<div style="margin-bottom:0.8em"></div>')


def _number(value: float, scale: float) -> str:
    """``value`` with 3 significant digits; "0" when it is below 1e-4 of ``scale`` (rounding noise)."""
    return "0" if abs(value) < 1e-4 * max(abs(scale), 1e-12) else f"{value:.3g}"


def layers_html(expl) -> str:
    """A token × layer table of ``expl``'s ``layers``: per point of the residual stream its total
    relevance, what the stage after it absorbs by kind (the kinds that absorb anything), and the
    relevance reaching each token (colours normalized per row); closed by the explained logit."""
    layers = _get(expl, "layers")
    tokens = [shown for shown, _ in _display_tokens([str(t) for t in _get(expl, "tokens", [])])]
    logit = _get(expl, "target_logit")
    scale = logit if logit is not None else max((abs(sum(r)) for r in layers["relevance"]), default=1.0)
    kinds = [j for j, _ in enumerate(layers["kinds"]) if any(_number(a[j], scale) != "0" for a in layers["absorbed"])]
    cell = 'style="padding:0.1em 0.35em;border:1px solid #eee;white-space:nowrap;{}"'
    head = f"<th {cell.format('')}>Σ</th>" + "".join(f"<th {cell.format('color:#555')}>{_esc(layers['kinds'][j])}</th>"
                                                     for j in kinds)
    head += "".join(f"<th {cell.format('font-weight:normal')}>{_esc(t)}</th>" for t in tokens)
    rows = []
    for point, values, stage, shares in zip(layers["points"], layers["relevance"], layers["stages"], layers["absorbed"]):
        cells = "".join(f'<td {cell.format("background-color:rgb" + str(relevance_color(v)))} title="{s:.4g}"></td>'
                        for v, s in zip(normalized_scores(values), values))
        absorbed = "".join(f"<td {cell.format('color:#555')} title=\"absorbed by {_esc(stage)}\">"
                           f"{_number(shares[j], scale)}</td>" for j in kinds)
        rows.append(f"<tr><th {cell.format('text-align:left')}>{_esc(point)}</th>"
                    f"<td {cell.format('')}>{sum(values):.4g}</td>{absorbed}{cells}</tr>")
    if logit is not None:
        rows.append(f"<tr><th {cell.format('text-align:left')}>explained logit</th><td {cell.format('')}>"
                    f"{float(logit):.4g}</td><td colspan=\"{len(kinds) + len(tokens)}\"></td></tr>")
    note = ("rows: the input of each block; Σ: the relevance reaching it; "
            + ", ".join(layers["kinds"][j] for j in kinds) + ": what the block after it absorbs (a row's Σ plus "
            "all absorbed from it on is the explained logit); cells: relevance per token, colours normalized per row")
    return (f'<details open><summary>relevance per layer</summary>{_small(note)}<div style="overflow-x:auto">'
            f'<table style="border-collapse:collapse;font-size:0.75em"><tr><th></th>{head}</tr>{"".join(rows)}'
            "</table></div></details>")


def _card(head: str, body: str) -> str:
    return ('<div class="lrpk-expl" style="margin:0 0 1.2em 0;padding:0.6em 0.8em;border:1px solid #ddd;'
            'border-radius:6px">'
            f'<div class="lrpk-head" style="font-size:0.85em;color:#555;margin-bottom:0.4em">{head}</div>'
            f"{body}</div>")


def explanation_html(expl, grouped: bool = False, picker: bool = False) -> str:
    """An HTML fragment for one explanation (an :class:`~lrp_kernels.Explanation` or its dict).

    ``grouped``: one of several methods of a text (:func:`explanations_html` states what they share
    once, and the card names its method). ``picker``: the page has a class picker (``target="all"``).
    Inline styles only, so it renders the same in Jupyter (``_repr_html_``) and in a page.
    """
    tokens = [str(t) for t in _get(expl, "tokens", [])]
    scores = [float(s) for s in _get(expl, "scores", [])]
    if len(tokens) != len(scores):
        raise ValueError(f"explanation has {len(tokens)} tokens but {len(scores)} scores")
    special = list(_get(expl, "special", None) or [False] * len(tokens))
    if _get(expl, "class_scores") is not None:
        body = _per_class(expl, tokens, special, picker, grouped)
    else:
        key = "" if grouped else _small(_key(expl))
        body = key + _small(_totals(expl, scores)) + _token_spans(tokens, scores, special, _get(expl, "messages"))
    if _get(expl, "layers"):
        body += layers_html(expl)
    return _card(_header(expl, shared=not grouped), body)


def legend_html(target_name: str | None = None) -> str:
    """The color bar: what blue and red mean for ``target_name`` (default: the explained class), the
    scale (every token of a text, special tokens dashed) and why Σ relevance is not the logit."""
    from lrp_kernels.layer_relevance import ACCOUNT_NOTE

    red, blue = _class_words({}, target_name or "the explained class")
    return (f'<div class="lrpk-legend"><span>{_esc(blue)}</span><div class="lrpk-bar"></div><span>{_esc(red)}</span>'
            "<span>relevance, normalized per text over every token, special tokens included (dashed outline); "
            "hover a token for its raw score</span></div>" + _small(_esc(ACCOUNT_NOTE)))


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


def group_html(group, picker: bool = False) -> str:
    """Several methods' explanations of one text: what they share once (id, prediction, explained
    class and its colours), then a card per method side by side (wrapping on narrow screens)."""
    first = group[0]
    every = _get(first, "class_scores") is not None
    signed = next((e for e in group if _is_relevance(_get(e, "method"))), first)  # the key of relevance, if any
    key, heads = ("", _class_heads(signed) if picker else "") if every else (" · " + _key(signed), "")
    width = "32em" if _get(first, "layers") else "20em"  # the layer tables need room
    cells = "".join(f'<div style="flex:1 1 0;min-width:{width};max-width:48em">{explanation_html(e, True, picker)}</div>'
                    for e in group)
    return ('<div class="lrpk-group" style="margin:0 0 0.4em 0">'
            f'<div class="lrpk-head" style="font-size:0.85em;color:#555;margin-bottom:0.3em">{_header(first, method=False)}'
            f"{key}</div>{heads}"
            f'<div class="lrpk-row" style="display:flex;flex-wrap:wrap;gap:0.8em;align-items:flex-start">{cells}</div></div>')


def explanations_html(explanations, picker: bool = False) -> str:
    """The legend and every explanation; several methods of one text side by side (a fragment)."""
    parts = [legend_html()]
    for group in _groups(explanations):
        parts.append(explanation_html(group[0], picker=picker) if len(group) == 1 else group_html(group, picker))
    return "\n".join(parts)


def render_html(explanations, title: str = "lrp-kernels explanations", intro: str | None = None) -> str:
    """A standalone HTML page (no scripts, no external assets) with one heatmap per explanation; with
    ``target="all"`` a class picker above them."""
    explanations = list(explanations)
    intro_html = f"<p>{_esc(intro)}</p>" if intro else ""
    css, picker = _class_picker(explanations)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{_CSS}{css}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n{intro_html}\n{picker}\n"
        f'<div class="lrpk-page">{explanations_html(explanations, picker=bool(picker))}</div>\n</body>\n</html>\n'
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


def _plot_header(expl) -> tuple[str, str]:
    """The two head lines of a heatmap: method, prediction and colours; the account."""
    red = f"; red = {_class_words(expl)[0]}" if _is_relevance(_get(expl, "method")) else ""  # else _totals says it
    return f"{_get(expl, 'method', '')}: {prediction_text(expl)}{red}", _totals(expl)


def _colour_bar(fig, explanations, bottom: float, box: tuple[float, float]) -> None:
    """A colour bar of relevance (its ends named for the explained class, when all share one) at
    ``box`` (left, width in figure fractions) of the bottom strip."""
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import ListedColormap, Normalize

    classes = {(_get(e, "target_name"), _get(e, "contrast_name"), _get(e, "problem_type"),
                len(_get(e, "logits") or ())) for e in explanations}
    only = next(iter(classes)) if len(classes) == 1 else (None, None, None, 0)
    red, blue = _class_words({"contrast_name": only[1], "problem_type": only[2], "logits": [0.0] * only[3]},
                             only[0] or "the explained class")
    colours = ListedColormap([tuple(c / 255 for c in relevance_color(v / 127.5 - 1)) for v in range(256)])
    ax = fig.add_axes([box[0], bottom, box[1], 0.12 / fig.get_figheight()])
    bar = ColorbarBase(ax, cmap=colours, norm=Normalize(-1, 1), orientation="horizontal")
    bar.set_ticks([-1, 0, 1])
    bar.set_ticklabels([_mpl_text(blue), "0", _mpl_text(red)], fontsize=7)
    bar.set_label("relevance, normalized per text (special tokens dashed)", fontsize=7)


def _unsigned_bar(fig, bottom: float, box: tuple[float, float]) -> None:
    """The colour bar of scores that are not relevance (gradient norms, attention, the random
    control): white at 0, red at the text's largest score — no sign, no class."""
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import ListedColormap, Normalize

    colours = ListedColormap([tuple(c / 255 for c in relevance_color(v / 255)) for v in range(256)])
    ax = fig.add_axes([box[0], bottom, box[1], 0.12 / fig.get_figheight()])
    bar = ColorbarBase(ax, cmap=colours, norm=Normalize(0, 1), orientation="horizontal")
    bar.set_ticks([0, 1])
    bar.set_ticklabels(["0", "the text's largest score"], fontsize=7)
    bar.set_label("unsigned scores (not relevance: no class), normalized per text", fontsize=7)


def plot_explanations(explanations, path=None, width: float = 10.0, fontsize: float = 9.0, dpi: int = 150):
    """A matplotlib figure with one heatmap per explanation (tokens as colored boxes, wrapped; special
    tokens in their colour with a dashed edge), each headed by its method, prediction, explained class
    and account, and a colour bar per kind of row: relevance (signed, naming the class) and, when
    some rows are unsigned scores (gradient norms, attention, random), theirs.

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
    line_h, bar_h, head_h = 0.32, 0.75, 0.55
    heights = [head_h + line_h * max(1, len(lines)) + 0.2 for _, lines in layouts]
    total = sum(heights) + 0.2 + bar_h
    fig = plt.figure(figsize=(width, total))
    y = total - 0.1
    for (expl, lines), h in zip(layouts, heights):
        for k, head in enumerate(_plot_header(expl)):
            fig.text(0.01, (y - 0.2 - 0.2 * k) / total, _mpl_text(head), fontsize=8 - k, color="#555", va="center")
        for i, line in enumerate(lines):
            ly, x = (y - head_h - line_h * (i + 0.5)) / total, 0.01
            for shown, space, value, sp in line:
                x += char_w if space else 0.0
                face = tuple(c / 255 for c in relevance_color(value))
                fig.text(x, ly, _mpl_text(shown), fontsize=fontsize, family="monospace", va="center", color="black",
                         bbox=dict(boxstyle="square,pad=0.15", facecolor=face, edgecolor="#555" if sp else "none",
                                   linestyle="--", linewidth=0.8))
                x += char_w * max(1, len(shown))
        y -= h
    signed = [e for e in explanations if _is_relevance(_get(e, "method"))]
    if signed and len(signed) < len(explanations):  # both kinds of rows: a bar each
        _colour_bar(fig, signed, 0.45 / total, (0.06, 0.38))
        _unsigned_bar(fig, 0.45 / total, (0.56, 0.38))
    elif signed:
        _colour_bar(fig, signed, 0.45 / total, (0.3, 0.4))
    else:
        _unsigned_bar(fig, 0.45 / total, (0.3, 0.4))
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


# ---------------------------------------------------------------------------------------- language models
_GENERATION_IDS = iter(range(1 << 62))  # radio ids unique within a page or a notebook


def _score_words(expl) -> tuple[str, str]:
    """(what is explained, in words; its unit) for a generation explanation."""
    if _get(expl, "contrast_token") is not None:
        return f"the logit of each token minus the logit of {_get(expl, 'contrast_token')!r}", "logit difference"
    if _get(expl, "score") == "logprob":
        return "the log-probability of each token (as z − Σ p·z: the softmax held constant)", "z − Σ p·z"
    return "the logit of each token at the position that predicts it", "logit"


def _generation_legend() -> str:
    return (f'<div class="lrpk-legend" style="display:flex;align-items:center;gap:0.5em;font-size:0.85em;'
            f'margin-bottom:1em"><span style="color:rgb{_NEGATIVE}">blue: speaks against the chosen token '
            f'(lowers its logit)</span>{_BAR}<span style="color:rgb{_POSITIVE}">red: supports the chosen token '
            '(raises its logit)</span><span style="color:#555">· colours normalized per chosen token, special tokens '
            'included (dashed outline); the chosen token is boxed; tokens after it are greyed (its logit did not see them); hover a token for its '
            'score</span></div>')


def _context_spans(expl, row: list[float] | None, chosen: int | None, scores: list[float]) -> str:
    """The prompt and the explained tokens coloured by ``scores`` (one explained token's row, or the sum):
    the token at entry ``chosen`` boxed, the entries after it greyed, the explained part underlined."""
    tokens = [str(t) for t in _get(expl, "tokens")]
    special = list(_get(expl, "special") or [False] * len(tokens))
    first = _get(expl, "prompt_length")
    seen = [chosen is None or i < chosen for i in range(len(tokens))]
    norm = normalized_scores(scores, [sp or not ok for sp, ok in zip(special, seen)])
    spans = []
    for i, ((shown, space), score, value, sp) in enumerate(zip(_display_tokens(tokens), scores, norm, special)):
        style = "padding:0.15em 0.2em;border-radius:3px;"
        if i >= first:
            style += "text-decoration:underline dotted #888;"
        if chosen is not None and i == chosen:
            style += "outline:2px solid #111;outline-offset:1px;background-color:#fff;font-weight:600;"
        elif not seen[i]:
            style += "color:#bbb;"
        else:  # special tokens too (on the same scale), marked by a dashed outline
            r, g, b = relevance_color(value)
            style += f"background-color:rgb({r},{g},{b});"
            if sp:
                style += "outline:1px dashed #555;font-size:0.8em;"
        title = "explained here" if chosen is not None and i == chosen else (
            "not seen by this token's logit" if not seen[i] else f"{score:.4g}")
        spans.append(f'{" " if space else ""}<span class="lrpk-tok" style="{style}" title="{_esc(title)}">'
                     f"{_esc(shown)}</span>")
    return f'<div class="lrpk-tokens" style="line-height:2.2">{"".join(spans)}</div>'


def _token_caption(expl, k: int) -> str:
    """What row ``k`` explains: the token, its position, logit and probability, the totals, the alternatives."""
    n, token = len(_get(expl, "generated")), _get(expl, "generated_tokens")[k]
    shown = _display_tokens([str(token)])[0][0]
    logit, value = _get(expl, "logits")[k], _get(expl, "explained")[k]
    p = math.exp(_get(expl, "logprobs")[k])
    total = sum(_get(expl, "matrix")[k])
    text = f"explaining token {k + 1} of {n}: <b>{_esc(repr(shown))}</b> · logit {logit:.4g} · p = {p:.3f} · "
    method = _get(expl, "method")
    if _is_relevance(method) and math.isfinite(value):  # the account, as every heatmap states it
        from lrp_kernels.layer_relevance import account_text

        account = account_text(total, value, {_lumped(method): value - total})
        text += _esc(account.replace(" = logit ", f" = {_score_words(expl)[1]} ", 1))
    else:
        text += f"Σ scores {total:.4g}"
    others = _get(expl, "alternatives") or []
    if k < len(others) and others[k]:
        top = ", ".join(f"{_esc(repr(_display_tokens([str(t)])[0][0]))} {float(q):.3f}" for t, q in others[k])
        text += f" · most likely there: {top}"
    return _small(text)


def generation_matrix_html(expl) -> str:
    """The N × context heat matrix: a row per explained token (colours normalized per row), a column per
    entry of ``tokens``; cells at and after the row's own token are empty (not seen)."""
    tokens = [shown for shown, _ in _display_tokens([str(t) for t in _get(expl, "tokens")])]
    special = list(_get(expl, "special") or [False] * len(tokens))
    cell = "padding:0;border:1px solid #f3f3f3;width:1.1em;min-width:1.1em;height:1.1em;"
    head = "".join(f'<th style="font-weight:normal;writing-mode:vertical-rl;transform:rotate(180deg);'
                   f'white-space:pre;padding:0.1em;font-size:0.9em">{_esc(t)}</th>' for t in tokens)
    rows = []
    for k, (row, at) in enumerate(zip(_get(expl, "matrix"), _get(expl, "positions"))):
        norm = normalized_scores(row, [sp or i >= at for i, sp in enumerate(special)])
        cells = []
        for i, (score, value) in enumerate(zip(row, norm)):
            if i >= at:
                colour = "#111" if i == at else "#f7f7f7"
                cells.append(f'<td style="{cell}background-color:{colour}" title="{"explained" if i == at else ""}">'
                             "</td>")
            else:
                cells.append(f'<td style="{cell}background-color:rgb{relevance_color(value)}" title="{score:.4g}"></td>')
        label = _display_tokens([str(_get(expl, "generated_tokens")[k])])[0][0]
        rows.append(f'<tr><th style="text-align:right;font-weight:normal;white-space:pre;padding-right:0.4em">'
                    f"{_esc(repr(label))}</th>{''.join(cells)}</tr>")
    note = ("rows: the explained tokens in order; columns: the prompt and the explained tokens; a cell: the relevance "
            "of that column's token for that row's token (colours normalized per row); black: the row's own token, "
            "after it: not seen")
    return (f'<details open><summary>all explained tokens × context</summary>{_small(_esc(note))}'
            '<div style="overflow-x:auto"><table style="border-collapse:collapse;font-size:0.7em">'
            f'<tr><th></th>{head}</tr>{"".join(rows)}</table></div></details>')


def generation_html(expl, index: int | None = None) -> str:
    """One :class:`~lrp_kernels.generation.GenerationExplanation` as a card: buttons that choose an
    explained token (CSS ``:checked`` rules, no script), that token's relevance over its context, and the
    N × context matrix. Returns (CSS rules, HTML)."""
    gid = f"lrpk-g{next(_GENERATION_IDS) if index is None else index}"
    n = len(_get(expl, "generated"))
    css = [f".{gid}-r {{ display: none; }}", f"#{gid}-all:checked ~ .{gid}-body .{gid}-rall {{ display: block; }}"]
    css += [f"#{gid}-{k}:checked ~ .{gid}-body .{gid}-r{k} {{ display: block; }}" for k in range(n)]
    css += [f"#{gid}-{k}:checked + label {{ outline: 2px solid #111; }}" for k in range(n)]
    css.append(f"#{gid}-all:checked + label {{ outline: 2px solid #111; }}")
    buttons, panels = [], []
    for k, token in enumerate(_get(expl, "generated_tokens")):
        shown = _display_tokens([str(token)])[0][0]
        p = math.exp(_get(expl, "logprobs")[k])
        buttons.append(f'<input type="radio" name="{gid}" id="{gid}-{k}"{" checked" if k == 0 else ""} '
                       'style="position:absolute;opacity:0;width:0">'
                       f'<label for="{gid}-{k}" title="p = {p:.3f}" style="display:inline-block;margin:0.1em;'
                       f'padding:0.1em 0.35em;border:1px solid #ccc;border-radius:4px;cursor:pointer;white-space:pre;'
                       f'background:#fafafa">{_esc(shown)}</label>')
        at = _get(expl, "positions")[k]
        row = [float(s) for s in _get(expl, "matrix")[k]]
        panels.append(f'<div class="{gid}-r {gid}-r{k}">{_token_caption(expl, k)}{_context_spans(expl, row, at, row)}'
                      "</div>")
    buttons.append(f'<input type="radio" name="{gid}" id="{gid}-all" style="position:absolute;opacity:0;width:0">'
                   f'<label for="{gid}-all" style="display:inline-block;margin:0.1em 0.1em 0.1em 0.8em;padding:0.1em '
                   f'0.35em;border:1px solid #ccc;border-radius:4px;cursor:pointer">all {n} (sum)</label>')
    summed = [float(s) for s in _get(expl, "scores")]
    panels.append(f'<div class="{gid}-r {gid}-rall">{_small(f"the sum over all {n} explained tokens")}'
                  f"{_context_spans(expl, summed, None, summed)}</div>")
    what, _ = _score_words(expl)
    unit = "word" if _get(expl, "words") else "token"
    length = _get(expl, "prompt_length")
    head = (f"method <b>{_esc(_get(expl, 'method'))}</b> · explains {_esc(what)} · {_esc(_get(expl, 'kind'))}: "
            f"{n} token{'s' if n != 1 else ''} after a prompt of {length} {unit}{'s' if length != 1 else ''}")
    body = (f'<div style="font-size:0.85em;margin:0.3em 0">choose a token to explain: {"".join(buttons)}'
            f'<div class="{gid}-body">{"".join(panels)}</div></div>{generation_matrix_html(expl)}')
    return "\n".join(css), _card(head, body)


def generations_html(explanations) -> str:
    """A fragment (Jupyter): the legend and every generation explanation, with its own style rules."""
    parts, rules = [_generation_legend()], []
    for expl in explanations:
        css, html_part = generation_html(expl)
        rules.append(css)
        parts.append(html_part)
    return f"<style>{chr(10).join(rules)}</style>\n" + "\n".join(parts)


def save_generation_html(explanations, path, title: str = "lrp-kernels: generated tokens explained",
                         intro: str | None = None) -> Path:
    """A standalone page (no scripts, no external assets) of :func:`generations_html`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    intro_html = f"<p>{_esc(intro)}</p>" if intro else ""
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<h1>{_esc(title)}</h1>\n"
            f"{intro_html}\n{generations_html(explanations)}\n</body>\n</html>\n")
    path.write_text(page, encoding="utf-8")
    return path
