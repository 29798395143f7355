"""Tiny saved decoder checkpoints with the tokenizers decoders ship, built offline.

Three kinds of tokenizer, trained here with the ``tokenizers`` library on a small corpus and saved as
``tokenizer.json`` + ``tokenizer_config.json`` (which ``transformers``' ``AutoTokenizer`` and
lrp-kernels both read):

- ``tiktoken``: byte-level BPE behind the cl100k / Llama 3 split pattern (GPT-4's regex, then the
  byte-level alphabet), ``<|begin_of_text|>`` added first, Llama 3's chat template;
- ``sentencepiece``: BPE over ``▁``-marked words (Llama 2, Gemma; byte fallback on, though the
  corpus' characters, newline included, are all in the vocabulary), ``<bos>`` first, Gemma's chat template;
- ``bytelevel``: GPT-2's byte-level BPE (``Ġ``), no special tokens added, pad = eos, no chat template.

``build_decoder_checkpoint(kind, tokenizer, directory)`` saves a random ``kind`` classifier (of
:mod:`model_factory`) whose vocabulary is the tokenizer's and whose pad id is the tokenizer's pad.
"""

from __future__ import annotations

import json
from pathlib import Path

from model_factory import make_hf, make_lm

CORPUS = ["a gorgeous witty movie about the plot", "unbelievably boring film", "the plot was thin and slow",
          "it is what it is", "an unbelievably gorgeous story", "boring boring plot", "what a witty reply",
          "the assistant answered the question politely", "is this film any good ?", "yes , it is gorgeous",
          "one line\nand the next"] * 4

#: cl100k's split pattern (tiktoken; Llama 3 uses the same)
TIKTOKEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                    r"\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                   "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
GEMMA_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
                  "else message['role'] %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + "
                  "'<end_of_turn>\n' }}{% endfor %}")

#: kind -> (special tokens, bos added first or None, pad, eos, chat template)
TOKENIZERS = {
    "tiktoken": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                  "<|finetune_right_pad_id|>"], "<|begin_of_text|>", "<|finetune_right_pad_id|>", "<|end_of_text|>",
                 LLAMA3_TEMPLATE),
    "sentencepiece": (["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<pad>", "<eos>",
                      GEMMA_TEMPLATE),
    "bytelevel": (["<|endoftext|>"], None, "<|endoftext|>", "<|endoftext|>", None),
}


def build_tokenizer(kind: str):
    """A trained ``tokenizers.Tokenizer`` of ``kind`` (see the module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials, bos = TOKENIZERS[kind][:2]
    if kind == "sentencepiece":
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False)
    else:
        tok = Tokenizer(models.BPE())
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=kind == "bytelevel")
        tok.pre_tokenizer = byte_level if kind == "bytelevel" else pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(TIKTOKEN_PATTERN), behavior="isolated"), byte_level])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


def build_decoder_checkpoint(kind: str, tokenizer: str, directory, num_labels: int = 2, seed: int = 0,
                             language_model: bool = False, **config) -> Path:
    """Save a random ``kind`` classifier (``language_model``: causal LM) with a ``tokenizer`` tokenizer (its
    vocabulary, pad id, chat template) in ``directory``; returns it."""
    specials, bos, pad, eos, template = TOKENIZERS[tokenizer]
    tok = build_tokenizer(tokenizer)
    labels = {0: "negative", 1: "positive"} if num_labels == 2 else {i: f"LABEL_{i}" for i in range(num_labels)}
    make = make_lm if language_model else make_hf
    hf = make(kind, seed=seed, **{"vocab_size": tok.get_vocab_size(), "num_labels": num_labels, "id2label": labels,
                                  "label2id": {v: k for k, v in labels.items()}, "initializer_range": 0.2,
                                  "pad_token_id": tok.token_to_id(pad), "eos_token_id": tok.token_to_id(eos),
                                  "bos_token_id": tok.token_to_id(bos or eos), **config})
    directory = Path(directory)
    hf.save_pretrained(directory)
    tok.save(str(directory / "tokenizer.json"))
    tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": pad, "eos_token": eos,
                        "model_max_length": 64, **({"bos_token": bos} if bos else {}),
                        **({"chat_template": template} if template else {})}
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    return directory
