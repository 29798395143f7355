"""A tiny random BERT sequence classifier saved as a Hugging Face checkpoint, for end-to-end tests.

Two layers, hidden 32, 4 heads, intermediate 37 (odd on purpose), a 60-word vocabulary with a
whitespace-split WordPiece ``tokenizer.json``. The vocabulary holds ``<script>`` and the label
names hold ``<``/``&`` so that HTML escaping is exercised. Everything is built offline.
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = (
    "good great fine fun gorgeous witty moving bad awful dull boring bland flat the a an film movie "
    "story plot acting is was and but not very too it this that of to with <script> alert & ' quite "
    "really so its ever never most less more cast director music script scene ending"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = {0: "neg<b>", 1: "pos&amp"}


def tiny_vocab() -> list[str]:
    return SPECIAL + WORDS


def build_tiny_checkpoint(directory, seed: int = 0, num_labels: int = 2, problem_type: str | None = None,
                          classifier_bias: list[float] | None = None) -> Path:
    """Write config.json, model.safetensors, tokenizer.json and tokenizer_config.json; return the dir
    (``problem_type``: transformers' — multi-label, regression — saved in config.json;
    ``classifier_bias``: the final linear's bias, to move the predictions)."""
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertForSequenceClassification

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(tiny_vocab())}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]", "model_max_length": 64})
    )
    torch.manual_seed(seed)
    labels = {i: LABELS.get(i, f"class{i}") for i in range(num_labels)}
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, num_labels=num_labels, id2label=labels, initializer_range=0.5,
        label2id={v: k for k, v in labels.items()}, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        problem_type=problem_type,
    )
    model = BertForSequenceClassification(config).eval()
    if classifier_bias is not None:
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor(classifier_bias))
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def tiny_sentences(n: int, seed: int = 0, min_words: int = 3, max_words: int = 16) -> list[str]:
    """``n`` random sentences over the tiny vocabulary (lengths vary, for bucketing)."""
    import random

    rng = random.Random(seed)
    plain = [w for w in WORDS if w not in ("<script>", "&")]
    return [" ".join(rng.choice(plain) for _ in range(rng.randint(min_words, max_words))) for _ in range(n)]


_SHARED: dict[int, Path] = {}


def shared_tiny_checkpoint(seed: int = 0) -> Path:
    """One read-only tiny checkpoint per test process (building it imports ``transformers``: slow)."""
    if seed not in _SHARED:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="lrpk-tiny-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SHARED[seed] = build_tiny_checkpoint(root / "model", seed=seed)
    return _SHARED[seed]
