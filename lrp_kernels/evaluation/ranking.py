"""Rank-based studies: word rank, agreement between methods, correlation across models/datasets.

* **Word rank** (Wu & Ong 2021, "On Explaining Your Explanations of BERT", §3.2.1): the words a
  method finds most relevant over a dataset. Per example the token scores are summed per word and
  divided by the example's largest |word score| (so every example weighs the same); a word's score
  is the mean of its normalized scores over its occurrences (lower-cased), per explained class.
  Words seen fewer than ``min_count`` times are left out, and so — unless ``keep_stop_words`` — are
  punctuation and stop words (:func:`is_ranked_word`: :data:`RANK_RULE`), which otherwise fill the
  top of the list on small samples (``'``, ``.``, ``the``, ``a`` …) and say nothing about the model.
* **Method agreement**: Spearman's rank correlation between two methods' scores of the content
  tokens of an example, averaged over examples.
* **Cross-dataset correlation** (Wu & Ong 2021, §3.4: do explanations carry over between
  semantically similar tasks?): the same examples explained by two models fine-tuned on different
  datasets; Spearman between the two models' token scores per example, averaged, per method —
  plus Spearman between the mean normalized word scores (per explained class, as in word rank)
  of model A on dataset A and model B on dataset B, over the (class, word) pairs both have.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lrp_kernels.evaluation.items import Item


#: English function words left out of the word rank by default: articles, pronouns, prepositions,
#: conjunctions, auxiliaries and the pieces a tokenizer splits contractions into (``'s`` → ``s``;
#: ``won't`` → ``wo``, ``n``, ``t``).
#: Negations and intensifiers (not, no, never, very, too, …) are kept: they carry sentiment.
STOP_WORDS = frozenset("""
a an the this that these those i me my myself we our ours ourselves you your yours yourself yourselves
he him his himself she her hers herself it its itself they them their theirs themselves us what which who
whom whose of at by for with about against between into through during before after above below to from
up down in out on off over under again further then once here there when where why how and or but if
because as until while so than also is am are was were be been being have has had having do does did
doing will would shall should can could may might must s t d ll m re ve o y n wo ca n't 's 're 've 'll 'd 'm
lrb rrb -lrb- -rrb- both each other some such own same just any all
""".split())

#: The rule of :func:`is_ranked_word`, in words (the reports print it).
RANK_RULE = ("punctuation (a word with no letter or digit) and English stop words (articles, pronouns, "
             "prepositions, conjunctions, auxiliaries, contraction pieces; negations and intensifiers "
             "kept) are left out")


def is_ranked_word(word: str) -> bool:
    """Whether ``word`` (lower-cased) takes part in the default word rank: it has a letter or a digit
    and is not one of :data:`STOP_WORDS`."""
    return any(c.isalnum() for c in word) and word not in STOP_WORDS


def rankdata(values: Sequence[float]) -> np.ndarray:
    """Ranks 1…n with ties given their average rank (as ``scipy.stats.rankdata``)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ (Pearson correlation of average ranks); NaN when either side is constant or n < 2."""
    if len(a) != len(b):
        raise ValueError(f"spearman: lengths differ ({len(a)} vs {len(b)})")
    if len(a) < 2:
        return float("nan")
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    if denom == 0.0:
        return float("nan")
    return float((ra * rb).sum() / denom)


def nanmean(values: Sequence[float]) -> tuple[float, int]:
    """Mean of the finite values and how many there were."""
    finite = [v for v in values if math.isfinite(v)]
    return (sum(finite) / len(finite) if finite else float("nan")), len(finite)


def word_scores(item: Item) -> list[tuple[str, float]]:
    """(word, summed token score) per word of ``item``, in order; specials left out."""
    totals: dict[tuple[int, int], float] = {}
    names: dict[tuple[int, int], str] = {}
    for t, (wid, sid) in enumerate(zip(item.word_ids, item.sequence_ids)):
        if wid is None or sid is None or not bool(item.content[t]):
            continue
        key = (sid, wid)
        totals[key] = totals.get(key, 0.0) + float(item.scores[t])
        names.setdefault(key, item.words[t])
    return [(names[k], totals[k]) for k in totals]


@dataclass
class RankedWord:
    target: int
    rank: int
    word: str
    score: float
    count: int


def _word_means(items: Sequence[Item]) -> dict[tuple[int, str], tuple[float, int]]:
    """(explained class, lower-cased word) -> (mean normalized score, occurrences).

    Per example the word scores are divided by its largest |word score|; examples without a finite,
    non-zero score are left out.
    """
    sums: dict[tuple[int, str], float] = defaultdict(float)
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for it in items:
        ws = word_scores(it)
        scale = max((abs(s) for _, s in ws), default=0.0)
        if scale == 0.0 or not math.isfinite(scale):
            continue
        for word, s in ws:
            key = (it.target, word.lower())
            sums[key] += s / scale
            counts[key] += 1
    return {key: (sums[key] / count, count) for key, count in counts.items()}


def word_rank(items: Sequence[Item], top: int = 10, min_count: int = 3,
              keep_stop_words: bool = False) -> list[RankedWord]:
    """The ``top`` words by mean normalized attribution, per explained class; punctuation and stop
    words left out unless ``keep_stop_words`` (:data:`RANK_RULE`). Every word still counts in the
    normalization of its example (its largest |word score|)."""
    by_class: dict[int, list[tuple[str, float, int]]] = defaultdict(list)
    for (target, word), (mean, count) in _word_means(items).items():
        if count >= min_count and (keep_stop_words or is_ranked_word(word)):
            by_class[target].append((word, mean, count))
    ranked = []
    for target in sorted(by_class):
        means = sorted(by_class[target], key=lambda x: (-x[1], x[0]))
        ranked += [RankedWord(target, r + 1, w, m, c) for r, (w, m, c) in enumerate(means[:top])]
    return ranked


def mean_word_scores(items: Sequence[Item], min_count: int = 3) -> dict[tuple[int, str], float]:
    """(explained class, word) -> mean normalized word score, for pairs seen ``min_count`` times."""
    return {key: mean for key, (mean, count) in _word_means(items).items() if count >= min_count}


def item_agreement(a: Item, b: Item) -> float:
    """Spearman between two score vectors of the same example over its content tokens."""
    if a.tokens != b.tokens:
        raise ValueError(f"item {a.index}: the two explanations have different tokens")
    mask = a.content
    return spearman(a.scores[mask].tolist(), b.scores[mask].tolist())


def method_agreement(by_method: dict[str, Sequence[Item]]) -> dict[tuple[str, str], tuple[float, int]]:
    """(mean Spearman, number of examples with a defined ρ) for every ordered pair of methods."""
    names = list(by_method)
    out = {}
    for i, m in enumerate(names):
        out[(m, m)] = (1.0, len(by_method[m]))
        for n in names[i + 1 :]:
            value = nanmean([item_agreement(a, b) for a, b in zip(by_method[m], by_method[n])])
            out[(m, n)] = out[(n, m)] = value
    return out


def cross_model_correlation(items_a: Sequence[Item], items_b: Sequence[Item]) -> tuple[float, int]:
    """Mean per-example Spearman between two models' scores of the same examples.

    Examples whose token sequences differ (different tokenizers) are compared word by word when
    their words agree, and skipped otherwise.
    """
    values = []
    for a, b in zip(items_a, items_b):
        if a.tokens == b.tokens:
            values.append(item_agreement(a, b))
            continue
        wa, wb = word_scores(a), word_scores(b)
        if [w for w, _ in wa] == [w for w, _ in wb]:
            values.append(spearman([s for _, s in wa], [s for _, s in wb]))
    return nanmean(values)


def word_rank_correlation(scores_a: dict, scores_b: dict) -> tuple[float, int]:
    """Spearman between two (class, word) → score maps over their shared keys (and how many)."""
    shared = sorted(set(scores_a) & set(scores_b))
    return spearman([scores_a[w] for w in shared], [scores_b[w] for w in shared]), len(shared)
