"""Tiny saved checkpoints of each family with the family's own tokenizer, built offline.

The tokenizers are ``transformers``' classes of each family (all backed by the ``tokenizers``
library in transformers 5) constructed from an in-memory vocabulary: WordPiece for DistilBERT and
ELECTRA (``##`` continuation pieces), SentencePiece-style Unigram with the ``▁`` word marker for
ALBERT, XLM-R and CamemBERT (with each family's special tokens and ids). ``save_pretrained`` then
writes ``tokenizer.json`` + ``tokenizer_config.json`` exactly as a hub checkpoint has them, so the
same directory loads in ``transformers`` (``AutoTokenizer``, ``AutoModelForSequenceClassification``)
and in lrp-kernels. Nothing is downloaded.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from model_factory import make_hf
from tiny_checkpoint import WORDS

#: families whose checkpoints these helpers build
KINDS = ("distilbert", "electra", "albert", "xlm-roberta", "camembert")
LABELS = {0: "negative", 1: "positive"}
#: suffixes that are separate pieces, so that a word splits into several tokens ("films" → film + s)
SUFFIXES = ("s", "ing", "ed", "ly")
_CHARS = "abcdefghijklmnopqrstuvwxyz<>&',."


def _wordpiece_vocab() -> dict[str, int]:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *(f"##{s}" for s in SUFFIXES),
              *_CHARS, *(f"##{c}" for c in _CHARS)]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def _pieces() -> list[tuple[str, float]]:
    """Unigram pieces: whole words (likely), suffixes, then single characters (unlikely)."""
    words = [(f"▁{w}", -1.0 - i / 100) for i, w in enumerate(WORDS)]
    return words + [(s, -3.0) for s in SUFFIXES] + [("▁", -4.0)] + [(c, -8.0) for c in _CHARS]


def family_tokenizer(kind: str):
    """A ``transformers`` tokenizer of ``kind``'s class over the tiny vocabulary."""
    import pytest
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip(f"transformers {transformers.__version__}: the tiny {kind} tokenizer is built from an in-memory "
                    "vocabulary, which the family tokenizer classes accept from transformers 5 on")

    if kind in ("distilbert", "electra"):
        cls = transformers.DistilBertTokenizer if kind == "distilbert" else transformers.BertTokenizer
        return cls(vocab=_wordpiece_vocab())
    if kind == "albert":
        special = [("<pad>", 0.0), ("<unk>", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[MASK]", 0.0)]
        return transformers.AlbertTokenizer(vocab=special + _pieces())
    if kind == "xlm-roberta":
        special = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
        return transformers.XLMRobertaTokenizer(vocab=special + _pieces() + [("<mask>", 0.0)])
    if kind == "camembert":
        special = [("<s>NOTUSED", 0.0), ("<pad>", 0.0), ("</s>NOTUSED", 0.0), ("<unk>", 0.0), ("<unk>NOTUSED", -100.0),
                   ("<s>", 0.0), ("</s>", 0.0)]
        return transformers.CamembertTokenizer(vocab=special + _pieces() + [("<mask>", 0.0)])
    raise ValueError(f"no tiny tokenizer for {kind!r}")


def build_family_checkpoint(kind: str, directory, seed: int = 0, **config) -> Path:
    """Save a random ``kind`` classifier (2 labels, weights of std 0.2) and its tokenizer in ``directory``."""
    tokenizer = family_tokenizer(kind)
    directory = Path(directory)
    model = make_hf(kind, seed=seed, **{"vocab_size": len(tokenizer), "num_labels": 2, "id2label": LABELS,
                                        "label2id": {v: k for k, v in LABELS.items()}, "initializer_range": 0.2,
                                        "max_position_embeddings": 64, **config})
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


_SHARED: dict[str, Path] = {}


def shared_family_checkpoint(kind: str) -> Path:
    """One read-only checkpoint of ``kind`` per test process."""
    if kind not in _SHARED:
        root = Path(tempfile.mkdtemp(prefix=f"lrpk-{kind}-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SHARED[kind] = build_family_checkpoint(kind, root / "model")
    return _SHARED[kind]
