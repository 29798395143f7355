"""Tokenizing texts for a checkpoint directory with the ``tokenizers`` library (no ``transformers`` needed).

``tokenizer.json`` is used when present — WordPiece (BERT, DistilBERT, ELECTRA), byte-level BPE
(RoBERTa) or SentencePiece Unigram (ALBERT, XLM-R, CamemBERT) alike; a WordPiece ``vocab.txt`` (BERT)
or ``vocab.json`` + ``merges.txt`` (RoBERTa) otherwise. A directory with only a SentencePiece model
file gets an error saying how to write its tokenizer.json. Truncation and padding are ours: the
saved ones are switched off.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from lrp_kernels.errors import CheckpointError, InputError


@dataclass
class Encoded:
    """A padded batch and, per text, its tokens, the word index of each token and char offsets."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    tokens: list[list[str]]
    word_ids: list[list[int | None]]
    offsets: list[list[tuple[int, int]]]
    sequence_ids: list[list[int | None]]


#: the SentencePiece model files of ALBERT / T5-style (spiece.model) and XLM-R / CamemBERT checkpoints
SENTENCEPIECE_FILES = ("spiece.model", "sentencepiece.bpe.model")


def _sentencepiece_hint(directory: Path) -> str:
    """How to get a tokenizer.json when ``directory`` holds only a SentencePiece model."""
    found = [name for name in SENTENCEPIECE_FILES if (directory / name).is_file()]
    if not found:
        return ""
    return (f"; it holds only the SentencePiece model {found[0]}: write tokenizer.json once with transformers "
            "(AutoTokenizer.from_pretrained(dir).save_pretrained(dir), needs the sentencepiece package)")


class TextEncoder:
    """Turns texts (and optional text pairs) into padded id tensors for a BERT-family model."""

    def __init__(self, tokenizer, pad_id: int, max_length: int):
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.max_length = max_length
        tokenizer.no_padding()
        tokenizer.no_truncation()

    @classmethod
    def from_pretrained(cls, path, max_length: int = 512) -> "TextEncoder":
        from tokenizers import Tokenizer

        directory = Path(path)
        config = {}
        if (directory / "tokenizer_config.json").is_file():
            config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        if (directory / "tokenizer.json").is_file():
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        elif (directory / "vocab.txt").is_file():
            from tokenizers.implementations import BertWordPieceTokenizer

            tokenizer = BertWordPieceTokenizer(
                str(directory / "vocab.txt"), lowercase=config.get("do_lower_case", True)
            )._tokenizer
        elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            from tokenizers import processors
            from tokenizers.implementations import ByteLevelBPETokenizer

            bpe = ByteLevelBPETokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
            tokenizer = bpe._tokenizer
            tokenizer.post_processor = processors.RobertaProcessing(
                ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>"))
            )
        else:
            raise CheckpointError(f"{directory}: missing file tokenizer.json (or vocab.txt){_sentencepiece_hint(directory)}")
        pad_token = config.get("pad_token", "[PAD]")
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content", "[PAD]")
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            pad_id = tokenizer.token_to_id("<pad>") if tokenizer.token_to_id("<pad>") is not None else 0
        model_max = config.get("model_max_length", max_length)
        if not isinstance(model_max, int) or model_max > 10**6:
            model_max = max_length
        return cls(tokenizer, pad_id, min(max_length, model_max))

    def tokenize(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list:
        """``tokenizers.Encoding`` per text (pair), truncated to ``max_length`` with a warning."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text {i} is a {type(text).__name__}, not a string")
            if not text.strip():
                raise InputError(f"text {i} is empty")
        if text_pairs is not None:
            if len(text_pairs) != len(texts):
                raise InputError(f"got {len(text_pairs)} text pairs for {len(texts)} texts")
            for i, pair in enumerate(text_pairs):
                if not isinstance(pair, str) or not pair.strip():
                    raise InputError(f"text pair {i} is empty")
        self.tokenizer.enable_truncation(self.max_length)
        try:
            if text_pairs is None:
                encodings = self.tokenizer.encode_batch(list(texts))
            else:
                encodings = self.tokenizer.encode_batch(list(zip(texts, text_pairs)))
        finally:
            self.tokenizer.no_truncation()
        truncated = [i for i, enc in enumerate(encodings) if enc.overflowing]
        if truncated:
            warnings.warn(
                f"{len(truncated)} text(s) longer than {self.max_length} tokens were truncated "
                f"(first: text {truncated[0]})",
                stacklevel=3,
            )
        return encodings

    def collate(self, encodings: Sequence) -> Encoded:
        """Pad a list of encodings into one batch."""
        length = max(len(enc.ids) for enc in encodings)
        batch = len(encodings)
        ids = torch.full((batch, length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((batch, length), dtype=torch.long)
        types = torch.zeros((batch, length), dtype=torch.long)
        for i, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[i, :n] = torch.tensor(enc.ids)
            mask[i, :n] = 1
            types[i, :n] = torch.tensor(enc.type_ids)
        return Encoded(
            input_ids=ids,
            attention_mask=mask,
            token_type_ids=types,
            tokens=[list(enc.tokens) for enc in encodings],
            word_ids=[list(enc.word_ids) for enc in encodings],
            offsets=[list(enc.offsets) for enc in encodings],
            sequence_ids=[list(enc.sequence_ids) for enc in encodings],
        )

    def encode(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> Encoded:
        """Tokenize and pad in one go."""
        return self.collate(self.tokenize(texts, text_pairs))
