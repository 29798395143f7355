"""Perturbation metrics of attribution faithfulness: word deletion, AOPC and ABPC.

Every function takes an optional ``cache`` (a dict shared across calls): a perturbed sequence that
was scored before — by another metric or another method — is not scored again.

All three perturb content tokens only — [CLS], [SEP] and padding are never touched — in the order
of an item's scores (stable sort, so ties keep token order), and score every variant of a whole
set of items in length-bucketed batches (:func:`~lrp_kernels.evaluation.items.batched_logits`).

* **Word deletion** (Wu & Ong 2021, "On Explaining Your Explanations of BERT: An Empirical Study
  with Sequence Classification", §3.2.2): on correctly classified examples with at least
  ``min_tokens`` content tokens, replace the top-k attributed tokens by a replacement token
  (``[PAD]`` as in the paper, or ``[MASK]``/``[UNK]``), k = 1…10, keeping the attention mask, and
  report the accuracy at each k. Accuracy at k = 0 is 1 by construction; a faithful method makes
  it fall fast. By the model's head (:class:`~lrp_kernels.models.config.Head`): a multi-label
  model's curve is the share of items whose explained label is still predicted (sigmoid ≥ 0.5),
  on the items where it was; a regression's is the mean predicted value of the explained output,
  on every item with enough tokens (no labels: a value is not right or wrong).
* **AOPC comprehensiveness and sufficiency** (DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate
  Rationalized NLP Models"; bins and edge cases as in ferret, Attanasio et al. 2023): for
  q = 10 %, 20 %, …, 100 % take the top v = ⌊q·n⌋ tokens of the n content tokens (bins with v = 0,
  or the same v as the bin before, are skipped); comprehensiveness averages p(target) − p(target |
  top-v tokens removed), sufficiency p(target) − p(target | only the top-v tokens kept) — p the
  softmax, a multi-label model's sigmoid, a regression's predicted value (:meth:`Head.measure`). Tokens are
  removed (the sequence gets shorter), not replaced. Higher comprehensiveness and lower
  sufficiency are better. Kept tokens stay in their original order.
* **ABPC** (area between perturbation curves; Achtibat et al. 2024, "AttnLRP: Attention-Aware
  Layer-Wise Relevance Propagation for Transformers", after Schulz et al. 2020): the target logit
  as the most-relevant-first (MoRF) and least-relevant-first (LeRF) fractions of content tokens
  are replaced, at 0 %, 10 %, …, 100 %; ABPC = ∫ (LeRF − MoRF) over the fraction axis
  (trapezoid rule). Higher is better; a random ordering gives about 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lrp_kernels.errors import InputError
from lrp_kernels.evaluation.items import Forward, Item, batched_logits
from lrp_kernels.models.config import Head

DELETION_KS = tuple(range(1, 11))
AOPC_PERCENTS = tuple(range(10, 101, 10))
ABPC_STEPS = 10
REPLACEMENTS = ("pad", "mask", "unk")
#: what a word-deletion curve tracks, by head: single-label, multi-label, regression
ACCURACY, STILL_PREDICTED, VALUE = "accuracy", "still_predicted", "value"
#: the short name of each in the tables' columns (``acc@3``, ``pred@3``, ``value@3``)
CURVE_COLUMN = {ACCURACY: "acc", STILL_PREDICTED: "pred", VALUE: "value"}


def ranked_positions(item: Item, most_first: bool = True) -> torch.Tensor:
    """Positions of the content tokens of ``item``, most (or least) relevant first; ties by position."""
    if item.scores is None:
        raise InputError(f"item {item.index} has no scores")
    positions = torch.nonzero(item.content, as_tuple=False)[:, 0]
    scores = item.scores[positions].float()
    order = torch.sort(scores if not most_first else -scores, stable=True).indices
    return positions[order]


def replaced(item: Item, positions: torch.Tensor, replacement_id: int) -> torch.Tensor:
    ids = item.ids.clone()
    ids[positions] = replacement_id
    return ids


def kept(item: Item, drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, types) of ``item`` without the positions ``drop``."""
    keep = torch.ones_like(item.content)
    keep[drop] = False
    return item.ids[keep], item.types[keep]


def target_measure(logits: torch.Tensor, target: int, head: Head = Head()) -> float:
    """p(target) — softmax, or a multi-label model's sigmoid —, or a regression's predicted value."""
    return float(head.measure(logits)[target])


def deletion_measure(head: Head) -> str:
    """What the word-deletion curve of a model with ``head`` tracks."""
    return VALUE if head.is_regression else STILL_PREDICTED if head.is_multi_label else ACCURACY


def deletion_subset(items: Sequence[Item], min_tokens: int = 10, head: Head = Head()) -> list[Item]:
    """The items word deletion uses, with at least ``min_tokens`` content tokens: correctly classified
    ones (prediction == label); multi-label: those whose explained label is predicted; regression: all."""
    enough = [it for it in items if it.n_content >= min_tokens]
    if head.is_regression:
        return enough
    if head.is_multi_label:
        return [it for it in enough if bool(head.predicted(it.logits)[it.target])]
    return [it for it in enough if it.label is not None and it.prediction == it.label]


@dataclass
class DeletionResult:
    """The word-deletion curve: ``values`` at each k of ``ks`` (``measure``: the accuracy, the share
    still predicted, or the mean value), ``start`` at k = 0, on ``n_examples`` items."""

    ks: list[int]
    values: list[float]
    n_examples: int
    indices: list[int]
    measure: str = ACCURACY
    start: float = 1.0


def deletion_variants(subset: Sequence[Item], replacement_id: int, ks: Sequence[int] = DELETION_KS) -> list:
    """(ids, types) of every item of ``subset`` with its top-k tokens replaced, for each k."""
    seqs = []
    for it in subset:
        ranked = ranked_positions(it, most_first=True)
        for k in ks:
            seqs.append((replaced(it, ranked[: min(k, len(ranked))], replacement_id), it.types))
    return seqs


def word_deletion(items: Sequence[Item], forward: Forward, replacement_id: int, pad_id: int,
                  ks: Sequence[int] = DELETION_KS, min_tokens: int = 10, batch_size: int = 256,
                  cache: dict | None = None, head: Head = Head()) -> DeletionResult:
    """The accuracy (by ``head``: the share still predicted, the mean value) after replacing the top-k
    tokens, for each k, on :func:`deletion_subset`."""
    measure = deletion_measure(head)
    subset = deletion_subset(items, min_tokens, head)
    if not subset:
        return DeletionResult(list(ks), [float("nan")] * len(ks), 0, [], measure, float("nan"))
    seqs = deletion_variants(subset, replacement_id, ks)
    logits = batched_logits(forward, seqs, pad_id, batch_size, cache).view(len(subset), len(ks), -1)
    targets = torch.tensor([it.target for it in subset])[:, None, None].expand(-1, len(ks), 1)
    start = 1.0
    if measure == VALUE:
        curve = logits.float().gather(-1, targets)[..., 0]
        start = float(torch.stack([it.logits[it.target] for it in subset]).float().mean())
    elif measure == STILL_PREDICTED:
        curve = head.predicted(logits).gather(-1, targets)[..., 0].float()
    else:
        curve = logits.argmax(dim=-1).eq(torch.tensor([it.label for it in subset])[:, None]).float()
    return DeletionResult(list(ks), curve.mean(dim=0).tolist(), len(subset), [it.index for it in subset], measure,
                          start)


@dataclass
class AOPCResult:
    comprehensiveness: float
    sufficiency: float
    per_item_comprehensiveness: list[float]
    per_item_sufficiency: list[float]
    n_examples: int


def aopc_variants(items: Sequence[Item], percents: Sequence[int] = AOPC_PERCENTS) -> tuple[list, list[int]]:
    """Per kept bin of each item: (its top v removed, only its top v kept); and the item of each pair."""
    seqs, owners = [], []
    for n_item, it in enumerate(items):
        ranked = ranked_positions(it, most_first=True)
        n = len(ranked)
        previous = None
        for q in percents:
            v = q * n // 100
            if v == 0 or v == previous:
                continue
            previous = v
            seqs.append(kept(it, ranked[:v]))  # comprehensiveness: the top v removed
            seqs.append(kept(it, ranked[v:]))  # sufficiency: only the top v (and specials) kept
            owners.append(n_item)
    return seqs, owners


def aopc(items: Sequence[Item], forward: Forward, pad_id: int, percents: Sequence[int] = AOPC_PERCENTS,
         batch_size: int = 256, cache: dict | None = None, head: Head = Head()) -> AOPCResult:
    """AOPC comprehensiveness and sufficiency (mean over items of the mean over the kept bins) of
    p(target) — by ``head`` (:func:`target_measure`)."""
    seqs, owners = aopc_variants(items, percents)
    if not seqs:
        raise InputError("AOPC: no item has a content token")
    logits = batched_logits(forward, seqs, pad_id, batch_size, cache)
    comp: list[list[float]] = [[] for _ in items]
    suff: list[list[float]] = [[] for _ in items]
    for j, n_item in enumerate(owners):
        it = items[n_item]
        p0 = target_measure(it.logits, it.target, head)
        comp[n_item].append(p0 - target_measure(logits[2 * j], it.target, head))
        suff[n_item].append(p0 - target_measure(logits[2 * j + 1], it.target, head))
    comp_items = [sum(c) / len(c) for c in comp if c]
    suff_items = [sum(s) / len(s) for s in suff if s]
    return AOPCResult(sum(comp_items) / len(comp_items), sum(suff_items) / len(suff_items),
                      comp_items, suff_items, len(comp_items))


@dataclass
class ABPCResult:
    fractions: list[float]
    morf: list[float]
    lerf: list[float]
    abpc: float
    per_item: list[float]
    n_examples: int


def abpc_variants(items: Sequence[Item], replacement_id: int, steps: int = ABPC_STEPS) -> tuple[list, list[dict]]:
    """The MoRF and LeRF variants of every item, and per item the index of each (order, step) in them
    (None: the unperturbed input). Everything replaced is one variant for both orders."""
    seqs: list[tuple[torch.Tensor, torch.Tensor]] = []
    plan = []
    for it in items:
        rankings = (("morf", ranked_positions(it, most_first=True)), ("lerf", ranked_positions(it, most_first=False)))
        n = len(rankings[0][1])
        rows = {}
        variant_row: dict[tuple[str, int], int] = {}
        for order, ranked in rankings:
            for j in range(steps + 1):
                k = j * n // steps
                if k == 0:
                    rows[(order, j)] = None
                    continue
                key = ("all", n) if k == n else (order, k)
                if key not in variant_row:
                    variant_row[key] = len(seqs)
                    seqs.append((replaced(it, ranked[:k], replacement_id), it.types))
                rows[(order, j)] = variant_row[key]
        plan.append(rows)
    return seqs, plan


def abpc(items: Sequence[Item], forward: Forward, replacement_id: int, pad_id: int, steps: int = ABPC_STEPS,
         batch_size: int = 256, cache: dict | None = None) -> ABPCResult:
    """Mean MoRF and LeRF curves of the target logit and the mean area between them."""
    if not items:
        raise InputError("ABPC: no items")
    seqs, plan = abpc_variants(items, replacement_id, steps)
    logits = batched_logits(forward, seqs, pad_id, batch_size, cache) if seqs else None
    curves = {"morf": torch.zeros(len(items), steps + 1), "lerf": torch.zeros(len(items), steps + 1)}
    for i, (it, rows) in enumerate(zip(items, plan)):
        for (order, j), row in rows.items():
            source = it.logits if row is None else logits[row]
            curves[order][i, j] = float(source[it.target])
    gap = curves["lerf"] - curves["morf"]
    per_item = torch.trapezoid(gap, dx=1.0 / steps, dim=1)
    return ABPCResult(
        fractions=[j / steps for j in range(steps + 1)],
        morf=curves["morf"].mean(dim=0).tolist(),
        lerf=curves["lerf"].mean(dim=0).tolist(),
        abpc=float(per_item.mean()),
        per_item=per_item.tolist(),
        n_examples=len(items),
    )


def planned_sequences(items: Sequence[Item], logits: torch.Tensor, metrics: Sequence[str], replacement_id: int,
                      min_tokens: int, head: Head = Head()) -> int:
    """How many perturbed sequences ``metrics`` score for ``items`` (whose logits are ``logits``), before
    de-duplication. The count does not depend on the scores: it is taken from uniform ones."""
    scored = [it.with_scores(torch.zeros(it.ids.numel()), row, int(row.argmax())) for it, row in zip(items, logits)]
    count = 0
    if "deletion" in metrics:
        count += len(deletion_variants(deletion_subset(scored, min_tokens, head), replacement_id))
    if "aopc" in metrics:
        count += len(aopc_variants(scored)[0])
    if "abpc" in metrics:
        count += len(abpc_variants(scored, replacement_id)[0])
    return count


def replacement_token_id(encoder, replacement: str) -> int:
    """The id of the replacement token (``pad`` / ``mask`` / ``unk``) in the encoder's vocabulary."""
    if replacement not in REPLACEMENTS:
        raise InputError(f"unknown replacement {replacement!r}; valid: {', '.join(REPLACEMENTS)}")
    if replacement == "pad":
        return encoder.pad_id
    tok = encoder.tokenizer
    candidates = {"mask": ("[MASK]", "<mask>"), "unk": ("[UNK]", "<unk>")}[replacement]
    for name in candidates:
        token_id = tok.token_to_id(name)
        if token_id is not None:
            return token_id
    raise InputError(f"the tokenizer has no {replacement} token ({' or '.join(candidates)})")
