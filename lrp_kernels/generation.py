"""Causal language models through the :class:`~lrp_kernels.explainer.Explainer`: the next token, a given
continuation, or a whole generation, each explained token by token from one packed forward
(:func:`~lrp_kernels.token_attribution.attribute_tokens`).

A prompt is tokenized as the model reads it (the tokenizer's BOS included) and never truncated (too
long: :class:`~lrp_kernels.errors.InputError`); a continuation is tokenized on its own, without
special tokens, and appended (" Paris." keeps its leading space: the tokens are those of the text
given). Every continuation (or generated) token c_i is a target at the position that predicts it,
P + i − 1. :class:`GenerationExplanation` holds one prompt and its explained tokens: ``tokens`` over
prompt + continuation (with ``merge_subwords`` the prompt's words — a word's score is the sum of its
pieces' — and the explained tokens as tokens, since each is a row of the matrix),
``matrix`` [N][prompt + N] (row i: the relevance of every token before c_i for c_i — exactly 0 at
and after c_i's own position) and ``scores`` (the explanation of the sum of the N explained
quantities: the sum of the rows). The next token alone is the case N = 1, its token the one the
model predicts (or ``target``).

``explain_generation`` runs ``transformers``' ``generate`` on the Explainer's ``transformers`` model
(greedy unless ``do_sample=True``; every keyword passes through — sampling, ``stop_strings``, …; the
tokenizer is passed along for ``stop_strings``), then explains every generated token up to and
including an end-of-sequence token in one packed call: prompts of a batch are left-padded for
``generate``, and positions count real tokens as ``generate`` counts them, so the padding changes
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from lrp_kernels.errors import InputError
from lrp_kernels.token_attribution import PREDICTED, SCORES, TokenAttribution, attribute_tokens, continuation_targets
from lrp_kernels.tokenization import ids_to_tokens, merge_rows, word_index

#: how many most likely tokens an explanation lists per explained position
TOP_K = 5


@dataclass
class GenerationExplanation:
    """A prompt and the tokens after it, each explained over everything before it.

    ``kind``: ``"next token"``, ``"continuation"`` or ``"generation"``. ``tokens`` (and ``special``): the
    prompt's tokens (``words``: its words, each scored with the sum of its pieces) then the explained
    tokens (always tokens: each is a row), ``prompt_length`` of them the prompt's.
    ``generated``: the ids of the N explained tokens, ``generated_tokens`` their token strings,
    ``generated_text`` their text; ``positions[i]``: the entry of ``tokens`` that holds token i.
    ``matrix`` [N][len(tokens)]: row i, the relevance of every entry for token i (0 at and after its
    own entry). ``scores``: the explanation of the sum of the N explained quantities (Σ of the rows;
    Gradient Sensitivity: the norm of the summed gradient). ``logits`` [N]: each token's logit at the
    position that predicts it; ``explained`` [N]: the explained quantity (``score="logit"``: the logit,
    minus the contrast's; ``"logprob"``: z − Σ p·z, see :mod:`lrp_kernels.token_attribution`);
    ``logprobs`` [N]: log p of each token; ``alternatives`` [N]: the most likely tokens there
    (``[token, p]``); ``contrast``/``contrast_token``: the token each is explained against, or None.
    """

    prompt: str
    kind: str
    tokens: list[str]
    special: list[bool]
    prompt_length: int
    generated: list[int]
    generated_tokens: list[str]
    generated_text: str
    positions: list[int]
    matrix: list[list[float]]
    scores: list[float]
    logits: list[float]
    explained: list[float]
    logprobs: list[float]
    method: str
    score: str = "logit"
    words: bool = False
    alternatives: list[list[list]] = field(default_factory=list)
    contrast: int | None = None
    contrast_token: str | None = None

    @property
    def conservation(self) -> list[float | None]:
        """Per explained token: Σ row / explained quantity (1 = all of it reached the input)."""
        return [sum(row) / value if value else None for row, value in zip(self.matrix, self.explained)]

    def to_dict(self) -> dict:
        out = {name: getattr(self, name) for name in (
            "prompt", "kind", "tokens", "special", "prompt_length", "generated", "generated_tokens",
            "generated_text", "positions", "matrix", "scores", "logits", "explained", "logprobs", "alternatives",
            "method", "score", "words", "contrast", "contrast_token")}
        out["conservation"] = self.conservation
        return out

    def to_json(self, path=None) -> str:
        return GenerationExplanations([self]).to_json(path)

    def save_html(self, path, **kwargs) -> Path:
        return GenerationExplanations([self]).save_html(path, **kwargs)

    def _repr_html_(self) -> str:
        from lrp_kernels.visualization import generations_html

        return generations_html([self])


class GenerationExplanations(list):
    """The list of :class:`GenerationExplanation` that an explainer of a language model returns: one
    page in Jupyter (choose a token to see its explanation), ``save_html``, ``to_json``."""

    def _repr_html_(self) -> str:
        from lrp_kernels.visualization import generations_html

        return generations_html(self)

    def save_html(self, path, title: str = "lrp-kernels: generated tokens explained", intro: str | None = None) -> Path:
        """A standalone HTML page (no scripts, everything escaped); returns the path."""
        from lrp_kernels.visualization import save_generation_html

        return save_generation_html(self, path, title=title, intro=intro)

    def to_json(self, path=None) -> str:
        """JSON lines, one :meth:`GenerationExplanation.to_dict` per line; written to ``path`` when given."""
        text = "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in self)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


# ------------------------------------------------------------------------------------------ inputs
@dataclass
class _Sequence:
    """One prompt and the tokens after it: ids, token strings, character offsets into the prompt (sequence
    0) or the continuation text (sequence 1), None for special tokens."""

    prompt: str
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    sequence_ids: list[int | None]
    prompt_length: int
    continuation: str = ""


def _prompt(encoder, text: str, following: int = 0) -> _Sequence:
    """A prompt's tokens (the tokenizer's special tokens included), with room for ``following`` more."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("a prompt must be a non-empty string")
    enc = encoder.tokenizer.encode(text)
    if len(enc.ids) + following > encoder.max_length:
        more = f" and the {following} tokens after it" if following else ""
        raise InputError(f"the prompt has {len(enc.ids)} tokens{more}: more than the model's {encoder.max_length} "
                         "positions (a prompt is not truncated)")
    return _Sequence(text, list(enc.ids), list(enc.tokens), list(enc.offsets), list(enc.sequence_ids), len(enc.ids))


def _append_text(seq: _Sequence, encoder, text: str) -> None:
    """The tokens of ``text`` (no special tokens added) after the prompt."""
    if not isinstance(text, str) or not text:
        raise InputError("a continuation must be a non-empty string")
    enc = encoder.tokenizer.encode(text, add_special_tokens=False)
    if not enc.ids:
        raise InputError(f"the continuation {text!r} has no tokens")
    seq.ids += enc.ids
    seq.tokens += enc.tokens
    seq.offsets += enc.offsets
    seq.sequence_ids += [1] * len(enc.ids)
    seq.continuation = text


def _append_ids(seq: _Sequence, encoder, ids: Sequence[int], specials: set[int]) -> None:
    """Generated (or predicted) ids after the prompt (``specials``: those shown as special tokens)."""
    seq.ids += list(ids)
    seq.tokens += ids_to_tokens(encoder.tokenizer, ids)
    seq.offsets += [(0, 0)] * len(ids)
    seq.sequence_ids += [None if i in specials else 1 for i in ids]
    seq.continuation = encoder.tokenizer.decode(list(ids), skip_special_tokens=False)


def _collate(seqs: Sequence[_Sequence], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L] ids and mask, each sequence right-aligned (``left`` padding) or left-aligned."""
    length = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, seq in enumerate(seqs):
        cols = slice(length - len(seq.ids), length) if left else slice(0, len(seq.ids))
        ids[b, cols], mask[b, cols] = torch.tensor(seq.ids), 1
    return ids, mask


# ------------------------------------------------------------------------------------------ explanations
def _explanation(seq: _Sequence, kind: str, result: TokenAttribution, index: torch.Tensor, columns: torch.Tensor,
                 merge: bool, tokenizer) -> GenerationExplanation:
    """The explanation of one row: its targets ``index`` (into the result's pairs) over its real
    ``columns``, token strings and words from ``seq``."""
    rows = [result.matrix[m, columns].tolist() for m in index.tolist()]
    summed = result.scores[int(result.rows[index[0]]), columns].tolist()
    targets = result.target[index].tolist()
    tokens, special = list(seq.tokens), [s is None for s in seq.sequence_ids]
    entry, first = list(range(len(tokens))), seq.prompt_length
    if merge:  # the prompt's words; the explained tokens stay tokens (each is a row)
        words, marks, entry = word_index(seq.tokens[:first], seq.offsets[:first], seq.sequence_ids[:first], [seq.prompt])
        entry += range(len(words), len(words) + len(tokens) - first)
        tokens, special = words + tokens[first:], marks + special[first:]
        rows, summed = merge_rows(entry, rows, len(tokens)), merge_rows(entry, [summed], len(tokens))[0]
    probs = torch.softmax(result.logits[index], dim=-1)
    top = probs.topk(min(TOP_K, probs.shape[-1]), dim=-1)
    alternatives = [[[t, round(float(p), 6)] for t, p in zip(ids_to_tokens(tokenizer, i.tolist()), ps)]
                    for i, ps in zip(top.indices, top.values)]
    contrast = None if result.contrast is None else int(result.contrast[index[0]])
    return GenerationExplanation(
        prompt=seq.prompt, kind=kind, tokens=tokens, special=special, words=merge,
        prompt_length=entry[first] if first < len(entry) else len(tokens), generated=targets,
        generated_tokens=ids_to_tokens(tokenizer, targets), generated_text=tokenizer.decode(targets),
        positions=[entry[first + i] for i in range(len(targets))], matrix=rows, scores=summed,
        logits=result.logits[index].gather(1, result.target[index, None])[:, 0].tolist(),
        explained=result.explained[index].tolist(), logprobs=result.logprob[index].tolist(), method=result.method,
        score=result.score, alternatives=alternatives, contrast=contrast,
        contrast_token=None if contrast is None else ids_to_tokens(tokenizer, [contrast])[0])


def _explain_rows(explainer, seqs: list[_Sequence], kind: str, left: bool, start: torch.Tensor, predicted: bool,
                  merge: bool, method: str | None, score: str, contrast, ids=None, mask=None):
    """One packed attribution of ``seqs`` (targets from column ``start`` per row; ``predicted``: the one
    next token the model predicts), one explanation per row."""
    encoder = explainer.encoder
    if ids is None:
        ids, mask = _collate(seqs, encoder.pad_id, left)
    device = next(explainer.model.parameters()).device
    if predicted:
        targets = torch.full_like(ids, -1)
        targets[torch.arange(len(ids)), explainer.model.read_index(ids, mask)] = PREDICTED
    else:
        targets = continuation_targets(ids, mask, start)
    kwargs = {"method": method or explainer.method, "eps": explainer.eps, "backend": explainer.backend,
              **explainer.method_kwargs}
    result = attribute_tokens(explainer.model, ids.to(device), mask.to(device), targets.to(device), score=score,
                              contrast=contrast, **kwargs)
    result = _to_cpu(result)
    if predicted:  # the predicted token joins each sequence as its continuation: one column more (0: unseen)
        result.matrix = torch.cat([result.matrix, torch.zeros(len(result.matrix), 1)], dim=1)
        result.scores = torch.cat([result.scores, torch.zeros(len(result.scores), 1)], dim=1)
    out = []
    for b, seq in enumerate(seqs):
        index = (result.rows == b).nonzero()[:, 0]
        columns = mask[b].bool().nonzero()[:, 0]
        if predicted:
            _append_ids(seq, encoder, result.target[index].tolist(), set())
            columns = torch.cat([columns, torch.tensor([ids.shape[1]])])
        out.append(_explanation(seq, kind, result, index, columns, merge, encoder.tokenizer))
    return out


def _to_cpu(result: TokenAttribution) -> TokenAttribution:
    for name in ("matrix", "scores", "rows", "positions", "target", "logits", "explained", "logprob", "contrast"):
        value = getattr(result, name)
        if value is not None:
            setattr(result, name, value.detach().cpu())
    return result


def _token_id(encoder, value, what: str, vocab: int) -> int | None:
    """A token given as an id or as a string that is exactly one token (``" Paris"``)."""
    if value is None:
        return None
    if isinstance(value, str):
        ids = encoder.tokenizer.encode(value, add_special_tokens=False).ids
        if len(ids) != 1:
            raise InputError(f"{what} {value!r} is {len(ids)} tokens, not one; give a token id or a one-token string")
        return ids[0]
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a token id or a one-token string, got {value!r}") from None
    if index != value or not 0 <= index < vocab:
        raise InputError(f"{what} {value!r} is not a token id of the model's vocabulary (0..{vocab - 1})")
    return index


def explain_tokens(explainer, prompts, continuation=None, target=None, contrast=None, score: str = "logit",
                   merge_subwords: bool = False, method: str | None = None,
                   batch_size: int = 8) -> GenerationExplanations:
    """:meth:`Explainer.explain` of a language model (see the module docstring): the next token of each
    prompt (``target``: a token id or one-token string to explain instead of the prediction;
    ``contrast``: one to explain it against), or ``continuation`` (a string, or one per prompt)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise InputError("no prompts to explain")
    if score not in SCORES:
        raise InputError(f"unknown score {score!r}; valid: {', '.join(SCORES)}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    vocab = explainer.model.config.num_labels
    target, contrast = _token_id(explainer.encoder, target, "target", vocab), _token_id(explainer.encoder, contrast,
                                                                                       "contrast", vocab)
    limit = explainer.encoder.max_length
    seqs = [_prompt(explainer.encoder, p) for p in prompts]
    if continuation is not None:
        if target is not None:
            raise InputError("target names the next token; a continuation's tokens are its targets")
        texts = [continuation] * len(seqs) if isinstance(continuation, str) else list(continuation)
        if len(texts) != len(seqs):
            raise InputError(f"got {len(texts)} continuations for {len(seqs)} prompts")
        for seq, text in zip(seqs, texts):
            _append_text(seq, explainer.encoder, text)
            if len(seq.ids) > limit:
                raise InputError(f"prompt and continuation have {len(seq.ids)} tokens, more than the model's {limit}")
    results = GenerationExplanations()
    for begin in range(0, len(seqs), batch_size):
        part = seqs[begin : begin + batch_size]
        if continuation is not None:
            start = torch.tensor([s.prompt_length for s in part])
            results += _explain_rows(explainer, part, "continuation", False, start, False, merge_subwords, method,
                                     score, contrast)
        elif target is not None:
            for seq in part:
                _append_ids(seq, explainer.encoder, [target], set())
            results += _explain_rows(explainer, part, "next token", False, torch.tensor([s.prompt_length for s in part]),
                                     False, merge_subwords, method, score, contrast)
        else:
            results += _explain_rows(explainer, part, "next token", False, torch.zeros(len(part)), True,
                                     merge_subwords, method, score, contrast)
    return results


def _eos_ids(hf_model, generate_kwargs: dict) -> set[int]:
    """The end-of-sequence ids ``generate`` stops at (its keyword, the generation config, the config)."""
    value = generate_kwargs.get("eos_token_id")
    if value is None:
        config = getattr(hf_model, "generation_config", None)
        value = getattr(config, "eos_token_id", None)
    if value is None:
        value = getattr(hf_model.config, "eos_token_id", None)
    if value is None:
        return set()
    return {int(v) for v in (value if isinstance(value, (list, tuple)) else [value])}


def _generated(new: torch.Tensor, eos: set[int], pad: int | None) -> list[list[int]]:
    """Each row's generated ids up to and including its first end-of-sequence id; a row that stopped
    early otherwise (a stop string) loses the trailing padding ``generate`` filled in (when the pad id
    is no end-of-sequence id)."""
    rows = []
    for row in new.tolist():
        cut = next((k + 1 for k, i in enumerate(row) if i in eos), len(row))
        row = row[:cut]
        if pad is not None and pad not in eos and cut == len(new[0]):
            while len(row) > 1 and row[-1] == pad:
                row.pop()
        rows.append(row)
    return rows


def explain_generation(explainer, prompts, max_new_tokens: int, merge_subwords: bool = False,
                       method: str | None = None, score: str = "logit", batch_size: int = 8,
                       **generate_kwargs) -> GenerationExplanations:
    """:meth:`Explainer.explain_generation` (see the module docstring): ``generate`` on each batch of
    prompts (left-padded), then every generated token explained in one packed call per batch."""
    hf = explainer.hf_model
    if hf is None:
        raise InputError("explain_generation runs transformers' generate: build the Explainer from the transformers "
                         "model (Explainer(hf_model, tokenizer) or Explainer.from_pretrained)")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if score not in SCORES:
        raise InputError(f"unknown score {score!r}; valid: {', '.join(SCORES)}")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise InputError("no prompts to explain")
    encoder = explainer.encoder
    seqs = [_prompt(encoder, p, max_new_tokens) for p in prompts]
    pad = getattr(hf.generation_config, "pad_token_id", None)
    eos = _eos_ids(hf, generate_kwargs)
    pad = encoder.pad_id if pad is None else pad
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": pad, **generate_kwargs}
    if "stop_strings" in kwargs and "tokenizer" not in kwargs:
        if explainer.hf_tokenizer is None:
            raise InputError("stop_strings needs the transformers tokenizer: pass tokenizer=… to explain_generation")
        kwargs["tokenizer"] = explainer.hf_tokenizer
    results = GenerationExplanations()
    device = next(hf.parameters()).device
    for begin in range(0, len(seqs), batch_size):
        part = seqs[begin : begin + batch_size]
        ids, mask = _collate(part, pad, left=True)
        with torch.no_grad():
            out = hf.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        sequences = getattr(out, "sequences", out).cpu()
        new = _generated(sequences[:, ids.shape[1]:], eos, pad)
        for seq, row in zip(part, new):
            _append_ids(seq, encoder, row, {i for i in row if i in eos})
        width = max(len(row) for row in new)
        full = torch.cat([ids, torch.full((len(part), width), pad, dtype=torch.long)], dim=1)
        full_mask = torch.cat([mask, torch.zeros(len(part), width, dtype=torch.long)], dim=1)
        for b, row in enumerate(new):
            full[b, ids.shape[1] : ids.shape[1] + len(row)], full_mask[b, ids.shape[1] : ids.shape[1] + len(row)] = (
                torch.tensor(row), 1)
        start = torch.full((len(part),), ids.shape[1])
        results += _explain_rows(explainer, part, "generation", True, start, False, merge_subwords, method, score,
                                 None, full, full_mask)
    return results
