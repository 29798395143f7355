"""Explaining raw texts: :class:`Explainer` (checkpoint + tokenizer + method) and :class:`Explanation`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from lrp_kernels.attribution import attribute, check_targets
from lrp_kernels.errors import InputError
from lrp_kernels.methods import get_method
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.loading import as_lrp_model
from lrp_kernels.tokenization import TextEncoder

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}


def parse_dtype(dtype) -> torch.dtype | None:
    """``None``, a ``torch.dtype`` or one of the names in ``_DTYPES``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; valid: {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


@dataclass
class Explanation:
    """One explained text: its tokens (or words) with scores, the prediction and the explained class."""

    text: str
    tokens: list[str]
    scores: list[float]
    label: int
    label_name: str
    probability: float
    target: int
    target_name: str
    method: str
    text_pair: str | None = None
    special: list[bool] = field(default_factory=list)

    def _repr_html_(self) -> str:
        from lrp_kernels.visualization import explanation_html

        return explanation_html(self)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "text_pair": self.text_pair,
            "tokens": self.tokens,
            "scores": self.scores,
            "special": self.special,
            "label": self.label,
            "label_name": self.label_name,
            "probability": self.probability,
            "target": self.target,
            "target_name": self.target_name,
            "method": self.method,
        }


def merge_word_pieces(tokens, scores, word_ids, offsets, sequence_ids, texts):
    """Sum the scores of word pieces of one word; the word's text is cut from the input by offsets
    (without the whitespace some tokenizers count into a word's first piece)."""
    merged_tokens, merged_scores, merged_special = [], [], []
    last = None
    for tok, score, wid, (start, end), sid in zip(tokens, scores, word_ids, offsets, sequence_ids):
        if wid is None or sid is None:
            merged_tokens.append(tok)
            merged_scores.append(score)
            merged_special.append(True)
            last = None
            continue
        key = (sid, wid)
        if key == last:
            merged_scores[-1] += score
            merged_tokens[-1] = (merged_tokens[-1][0], merged_tokens[-1][1], end)
        else:
            merged_tokens.append((sid, start, end))
            merged_scores.append(score)
            merged_special.append(False)
        last = key
    # byte-level BPE (RoBERTa without trimmed offsets, ModernBERT, EuroBERT) counts the space before a
    # word into its first piece: a word cut from the text keeps no surrounding whitespace
    words = [t if isinstance(t, str) else texts[t[0]][t[1] : t[2]].strip() for t in merged_tokens]
    return words, merged_scores, merged_special


class Explainer:
    """A model, its tokenizer and a method: ``explain(texts)`` gives one :class:`Explanation` per text."""

    def __init__(self, model, encoder: TextEncoder, method: str = "attnlrp", backend: str | None = None,
                 eps: float = 1e-6, **method_kwargs):
        get_method(method)
        self.model: EncoderClassifier = as_lrp_model(model)
        self.encoder = encoder
        self.encoder.max_length = min(self.encoder.max_length, self.model.config.max_tokens)
        self.method = method
        self.backend = backend
        self.eps = eps
        self.method_kwargs = method_kwargs

    @classmethod
    def from_pretrained(cls, path, method: str = "attnlrp", device="cpu", dtype=None, backend=None,
                        eps: float = 1e-6, num_labels: int | None = None, max_length: int = 512,
                        **method_kwargs) -> "Explainer":
        """Load a Hugging Face checkpoint directory (weights, config and tokenizer files)."""
        from lrp_kernels.models.loading import load_pretrained

        get_method(method)
        model = load_pretrained(path, num_labels=num_labels, dtype=parse_dtype(dtype), device=device)
        encoder = TextEncoder.from_pretrained(Path(path), max_length=max_length)
        return cls(model, encoder, method=method, backend=backend, eps=eps, **method_kwargs)

    @property
    def id2label(self) -> dict[int, str]:
        return self.model.config.id2label

    def batches(self, encodings: Sequence, batch_size: int, bucket: bool) -> Iterable[list[int]]:
        """Index lists of at most ``batch_size``; with ``bucket`` texts of similar length go together."""
        order = list(range(len(encodings)))
        if bucket:
            order.sort(key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]

    def explain(self, texts, text_pairs=None, target=None, batch_size: int = 32, merge_subwords: bool = False,
                bucket: bool = True, progress: bool = False) -> list[Explanation]:
        """Explain ``texts`` (a string or a list); results come back in input order.

        ``target``: None (predicted class), an int, or one per text. ``merge_subwords`` sums the
        scores of the pieces of a word. ``bucket`` batches texts of similar length together.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if text_pairs is not None:
            text_pairs = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
        if not texts:
            raise InputError("no texts to explain")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        targets = self._targets(target, len(texts))
        encodings = self.encoder.tokenize(texts, text_pairs)
        results: list[Explanation | None] = [None] * len(texts)
        batches = list(self.batches(encodings, batch_size, bucket))
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"explain ({self.method})", unit="batch")
        device = next(self.model.parameters()).device
        for index in batches:
            batch = self.encoder.collate([encodings[i] for i in index])
            result = attribute(
                self.model,
                batch.input_ids.to(device),
                batch.attention_mask.to(device),
                batch.token_type_ids.to(device),
                method=self.method,
                target=None if targets is None else [targets[i] for i in index],
                eps=self.eps,
                backend=self.backend,
                **self.method_kwargs,
            )
            probs = result.probabilities.cpu()
            for row, i in enumerate(index):
                n = int(batch.attention_mask[row].sum())
                scores = result.scores[row, :n].cpu().tolist()
                tokens = batch.tokens[row]
                special = [w is None for w in batch.word_ids[row]]
                if merge_subwords:
                    pieces = (texts[i], text_pairs[i] if text_pairs is not None else "")
                    tokens, scores, special = merge_word_pieces(
                        tokens, scores, batch.word_ids[row], batch.offsets[row], batch.sequence_ids[row], pieces
                    )
                label = int(probs[row].argmax())
                tgt = int(result.target[row])
                results[i] = Explanation(
                    text=texts[i],
                    text_pair=text_pairs[i] if text_pairs is not None else None,
                    tokens=list(tokens),
                    scores=scores,
                    special=special,
                    label=label,
                    label_name=self.id2label.get(label, str(label)),
                    probability=float(probs[row, label]),
                    target=tgt,
                    target_name=self.id2label.get(tgt, str(tgt)),
                    method=self.method,
                )
        return results

    def _targets(self, target, n: int) -> list[int] | None:
        checked = check_targets(target, n, self.model.config.num_labels)
        return None if checked is None else checked.tolist()
