"""Evaluation examples as unpadded token sequences, their attributions, and batched forward passes.

An :class:`Item` is one tokenized example: ids, token types, which tokens are content (not
[CLS]/[SEP]/[PAD]), the word each token belongs to, and — once a method has run — the token scores,
the original logits and the explained class. Perturbation metrics build many variants of items and
score them with :func:`batched_logits`, which sorts variants by length and pads per chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch

from lrp_kernels.attribution import attribute
from lrp_kernels.errors import InputError
from lrp_kernels.models.loading import as_lrp_model

# forward(input_ids [B, L], attention_mask [B, L], token_type_ids [B, L]) -> logits [B, C]
Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Item:
    """One example. ``content[t]`` is False for special tokens; ``scores`` are set per method."""

    index: int
    ids: torch.Tensor
    types: torch.Tensor
    content: torch.Tensor
    tokens: list[str]
    word_ids: list[int | None]
    sequence_ids: list[int | None]
    text: str
    text_pair: str | None = None
    label: int | None = None
    scores: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    target: int | None = None
    words: list[str] = field(default_factory=list)

    @property
    def n_content(self) -> int:
        return int(self.content.sum())

    @property
    def prediction(self) -> int:
        return int(self.logits.argmax())

    def with_scores(self, scores: torch.Tensor, logits: torch.Tensor, target: int) -> "Item":
        return replace(self, scores=scores, logits=logits, target=target)


def _words(encoding, text: str, text_pair: str | None) -> list[str]:
    """The surface word of each token, cut from its text by character offsets; '' for specials."""
    sources = (text, text_pair or "")
    spans: dict[tuple[int, int], list[int]] = {}
    for wid, sid, (start, end) in zip(encoding.word_ids, encoding.sequence_ids, encoding.offsets):
        if wid is not None and sid is not None:
            span = spans.setdefault((sid, wid), [start, end])
            span[1] = end
    words = []
    for wid, sid in zip(encoding.word_ids, encoding.sequence_ids):
        if wid is None or sid is None:
            words.append("")
        else:
            start, end = spans[(sid, wid)]
            words.append(sources[sid][start:end])
    return words


def make_items(encoder, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
               labels: Sequence[int] | None = None) -> list[Item]:
    """Tokenize ``texts`` (and pairs) with a :class:`~lrp_kernels.tokenization.TextEncoder`."""
    encodings = encoder.tokenize(list(texts), None if text_pairs is None else list(text_pairs))
    items = []
    for i, enc in enumerate(encodings):
        special = [w is None or s is None for w, s in zip(enc.word_ids, enc.sequence_ids)]
        pair = text_pairs[i] if text_pairs is not None else None
        items.append(Item(
            index=i,
            ids=torch.tensor(enc.ids, dtype=torch.long),
            types=torch.tensor(enc.type_ids, dtype=torch.long),
            content=~torch.tensor(special, dtype=torch.bool),
            tokens=list(enc.tokens),
            word_ids=list(enc.word_ids),
            sequence_ids=list(enc.sequence_ids),
            text=texts[i],
            text_pair=pair,
            label=None if labels is None else int(labels[i]),
            words=_words(enc, texts[i], pair),
        ))
    return items


def pad_batch(seqs: Sequence[tuple[torch.Tensor, torch.Tensor]], pad_id: int):
    """(ids, mask, types) padded to the longest of ``seqs`` (pairs of ids and token types)."""
    length = max(int(ids.numel()) for ids, _ in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    types = torch.zeros((len(seqs), length), dtype=torch.long)
    for row, (i, t) in enumerate(seqs):
        n = int(i.numel())
        ids[row, :n] = i
        mask[row, :n] = 1
        types[row, :n] = t
    return ids, mask, types


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index lists of at most ``batch_size``, texts of similar length together (stable order)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def model_forward(model) -> Forward:
    """Plain logits of a :class:`~lrp_kernels.models.EncoderClassifier` on its own device."""
    device = next(model.parameters()).device

    def forward(ids, mask, types):
        with torch.inference_mode():
            return model(ids.to(device), mask.to(device), types.to(device)).float().cpu()

    return forward


def sequence_key(ids: torch.Tensor, types: torch.Tensor) -> bytes:
    """A hashable key of an unpadded sequence (its ids and token types)."""
    return ids.numpy().tobytes() + b"|" + types.numpy().tobytes()


def batched_logits(forward: Forward, seqs: Sequence[tuple[torch.Tensor, torch.Tensor]], pad_id: int,
                   batch_size: int = 256, cache: dict[bytes, torch.Tensor] | None = None) -> torch.Tensor:
    """Logits [N, C] of N unpadded (ids, types) sequences, batched by length, in input order.

    Identical sequences are scored once. With ``cache`` (a dict shared between calls, e.g. across
    methods whose perturbations coincide) sequences scored before are not scored again.
    """
    if not seqs:
        raise InputError("no sequences to score")
    cache = {} if cache is None else cache
    keys = [sequence_key(ids, types) for ids, types in seqs]
    todo: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        if key not in cache and key not in todo:
            todo[key] = i
    pending = list(todo.values())
    for index in length_batches([int(seqs[i][0].numel()) for i in pending], batch_size):
        chosen = [pending[j] for j in index]
        ids, mask, types = pad_batch([seqs[i] for i in chosen], pad_id)
        logits = forward(ids, mask, types)
        for row, i in enumerate(chosen):
            cache[keys[i]] = logits[row].clone()
    return torch.stack([cache[key] for key in keys])


def attribute_items(model, items: Sequence[Item], method: str, pad_id: int, batch_size: int = 32,
                    target=None, progress: bool = False, on_batch: Callable[[int], object] | None = None,
                    **kwargs) -> tuple[list[Item], float]:
    """``items`` with ``method``'s scores (explaining ``target``, default the prediction: for a head that
    explains several labels per input — multi-label, several regression outputs — the top one) and
    the seconds the attribution took. Batches are length-bucketed; ``on_batch(n)`` follows each batch
    of n."""
    model = as_lrp_model(model)
    device = next(model.parameters()).device
    several = model.config.head.explains_several(model.config.num_labels)
    out: list[Item | None] = [None] * len(items)
    batches = length_batches([int(it.ids.numel()) for it in items], batch_size)
    if progress:
        from lrp_kernels.progress import progress_bar

        batches = progress_bar(batches, desc=f"attribute ({method})", unit="batch", leave=False)
    seconds = 0.0
    for index in batches:
        ids, mask, types = pad_batch([(items[i].ids, items[i].types) for i in index], pad_id)
        ids, mask, types = ids.to(device), mask.to(device), types.to(device)
        started = time.perf_counter()
        chosen = None if target is None else [target[i] for i in index]
        if chosen is None and several:  # one label per item: the top one
            with torch.no_grad():
                chosen = model(ids, mask, types).argmax(dim=-1)
        result = attribute(model, ids, mask, types, method=method, target=chosen, **kwargs)
        seconds += time.perf_counter() - started
        scores, logits = result.scores.cpu(), result.logits.cpu()
        for row, i in enumerate(index):
            n = int(items[i].ids.numel())
            out[i] = items[i].with_scores(scores[row, :n].clone(), logits[row].clone(), int(result.target[row]))
        if on_batch is not None:
            on_batch(len(index))
    return out, seconds
