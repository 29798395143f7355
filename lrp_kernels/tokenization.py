"""Tokenizing texts with the ``tokenizers`` library (no ``transformers`` needed), words, and windows.

:class:`TextEncoder` wraps a ``tokenizers.Tokenizer``: from a checkpoint directory
(``tokenizer.json`` when present — WordPiece (BERT, DistilBERT, ELECTRA), byte-level BPE
(RoBERTa) or SentencePiece Unigram (ALBERT, XLM-R, CamemBERT) alike; a WordPiece ``vocab.txt``
(BERT) or ``vocab.json`` + ``merges.txt`` (RoBERTa) otherwise; a directory with only a
SentencePiece model file gets an error saying how to write its tokenizer.json) or from any fast
tokenizer the user holds (a copy of its backend). Truncation and padding are ours: the saved ones
are switched off.

**Words** (:func:`word_index`), the same for WordPiece (``##``), byte-level BPE (``Ġ``) and
SentencePiece (``▁``): words are read from the text by character offsets, not from the token
strings. The text splits at whitespace and around every punctuation character; a combining mark
belongs to the character before it (so ``"e\u0301te\u0301"`` stays one word with its accents,
also where the normalizer stripped them from the tokens); where one token spans several such
pieces they are one word. A token is in the word its characters are in; a token that covers only
whitespace (RoBERTa's standalone ``Ġ``, SentencePiece's ``▁``) joins the next word of its text, so
no word is empty. Special tokens stay as they are.

**Windows** (:meth:`TextEncoder.documents`): a text longer than ``max_length`` tokens becomes
overlapping windows, each a full input with the tokenizer's own special tokens ([CLS] … [SEP]).
No window is short: as many windows as the tokenizer's own overflow makes with consecutive
windows sharing ``stride`` tokens, each ``max_length`` tokens long, spread evenly from the text's
start to its end — consecutive windows share at least ``stride`` tokens, all the same number (±1).
(The overflow's last window is short; every window carries the same share of a document's logit,
so a short one spread it over a few tokens at many times the relevance density of the others.)
With a text pair the first text is windowed and the pair repeated in every window. Each window token's position in
the whole text's encoding is kept (:attr:`Document.positions`). A decoder's window is the same: what
the tokenizer makes of that slice of the text as a fresh input (Llama, Gemma: a BOS first).

**Conversations** (:meth:`TextEncoder.conversations`): a chat (``[{"role": …, "content": …}, …]``) is
rendered by the tokenizer's chat template (a ``transformers`` tokenizer's own ``apply_chat_template``;
from a checkpoint directory ``chat_template.jinja`` or ``tokenizer_config.json``'s ``chat_template``,
rendered by ``transformers``' Jinja renderer with the tokenizer's special tokens) and tokenized without
adding special tokens (the template writes them), as ``apply_chat_template(tokenize=True)`` does. The
special tokens the template writes are marked special (not words). Message i owns the characters
from the end of the rendering of messages[:i] to the end of the rendering of messages[:i+1] (its
header, its content, its end-of-turn token), or, where a prefix does not render as a prefix of the
whole, from the end of message i−1's content to the end of its own. A conversation is never
truncated or windowed: its score is read at its last token.
"""

from __future__ import annotations

import bisect
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from lrp_kernels.errors import CheckpointError, InputError, warn_user


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


@dataclass
class Document:
    """One text (pair) as the model sees it: ``full`` its whole encoding (the tokens shown),
    ``windows`` the inputs explained (``[full]`` when it fits) and, per window, the position in
    ``full`` of each of its tokens."""

    full: object
    windows: list = field(default_factory=list)
    positions: list[list[int]] = field(default_factory=list)
    #: a conversation's messages: (role, index of the first token, index after the last) over ``full``
    messages: list[tuple[str, int, int]] | None = None


@dataclass
class ChatEncoding:
    """A rendered conversation's tokens, shaped as a ``tokenizers.Encoding`` where this module reads one;
    the special tokens the template wrote have sequence id None."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    sequence_ids: list[int | None]
    overflowing: list = field(default_factory=list)

    @property
    def type_ids(self) -> list[int]:
        return [0] * len(self.ids)

    @property
    def word_ids(self) -> list[int | None]:
        return [None] * len(self.ids)


def _special_map(config: dict) -> dict[str, str]:
    """The special tokens a chat template may name (bos_token, eos_token, …) from tokenizer_config.json."""
    names = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
    out = {}
    for name in names:
        value = config.get(name)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            out[name] = value
    return out


class ChatTemplate:
    """A Jinja chat template and the special tokens it may name, rendered as ``transformers`` renders
    it (``transformers.utils.chat_template_utils.render_jinja_template``)."""

    def __init__(self, template: str, special_tokens: dict[str, str]):
        self.template, self.special_tokens = template, special_tokens

    @classmethod
    def from_directory(cls, directory: Path, config: dict) -> "ChatTemplate | None":
        template = config.get("chat_template")
        if (directory / "chat_template.jinja").is_file():
            template = (directory / "chat_template.jinja").read_text(encoding="utf-8")
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        return cls(template, _special_map(config)) if isinstance(template, str) else None

    def __call__(self, conversation: list[dict]) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(conversations=[conversation], chat_template=self.template,
                                            **self.special_tokens)
        return rendered[0]


def _hf_renderer(tokenizer):
    """A ``transformers`` tokenizer's own chat rendering (None without a template)."""
    if getattr(tokenizer, "chat_template", None) is None:
        return None
    return lambda conversation: tokenizer.apply_chat_template(conversation, tokenize=False)


def message_ends(render, conversation: list[dict], text: str) -> list[int]:
    """The character where each message of ``conversation`` ends in its rendering ``text`` (see the
    module docstring): the renderings of its prefixes, or the ends of the contents."""
    ends = []
    for i in range(1, len(conversation)):
        try:
            prefix = render(conversation[:i])
        except Exception:  # a template may refuse a prefix (roles must alternate, …)
            prefix = None
        if prefix is None or not text.startswith(prefix) or (ends and len(prefix) < ends[-1]):
            return _content_ends(conversation, text)
        ends.append(len(prefix))
    return ends + [len(text)]


def _content_ends(conversation: list[dict], text: str) -> list[int]:
    ends, start = [], 0
    for message in conversation[:-1]:
        found = text.find(str(message.get("content", "")), start)
        start = start if found < 0 else found + len(str(message.get("content", "")))
        ends.append(start)
    return ends + [len(text)]


def _pad_id(tokenizer, pad_token=None) -> int:
    for name in (pad_token, "[PAD]", "<pad>"):
        if name is not None and tokenizer.token_to_id(name) is not None:
            return tokenizer.token_to_id(name)
    padding = tokenizer.padding
    return padding["pad_id"] if padding else 0


class TextEncoder:
    """Turns texts (and optional text pairs) into padded id tensors for a BERT-family model."""

    def __init__(self, tokenizer, pad_id: int, max_length: int, chat=None):
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.max_length = max_length
        #: conversation -> rendered text (:class:`ChatTemplate` or a transformers tokenizer's), or None
        self.chat = chat
        tokenizer.no_padding()
        tokenizer.no_truncation()

    def fit(self, model_config) -> "TextEncoder":
        """This encoder for a model: at most its positions long, padding with its ``pad_token_id``
        (what the model takes for padding: a decoder reads its score at the last id that is not it)."""
        self.max_length = min(self.max_length, model_config.max_tokens)
        if model_config.pad_token_id is not None:
            self.pad_id = model_config.pad_token_id
        return self

    @classmethod
    def wrap(cls, tokenizer, max_length: int | None = None) -> "TextEncoder":
        """A :class:`TextEncoder` of ``tokenizer``: itself, a ``tokenizers.Tokenizer`` or a
        ``transformers`` fast tokenizer (its backend is copied, the user's object is left alone)."""
        from tokenizers import Tokenizer

        if isinstance(tokenizer, TextEncoder):
            if max_length is not None:
                tokenizer.max_length = max_length
            return tokenizer
        backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise InputError(f"{type(tokenizer).__name__} is not a fast tokenizer: load it with use_fast=True "
                             "(or pass a tokenizers.Tokenizer)")
        copy = Tokenizer.from_str(backend.to_str())
        model_max = getattr(tokenizer, "model_max_length", None)
        if not isinstance(model_max, int) or model_max > 10**6:
            model_max = 512
        pad = getattr(tokenizer, "pad_token", None)
        return cls(copy, _pad_id(copy, pad), max_length or model_max, _hf_renderer(tokenizer))

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
        pad_id = _pad_id(tokenizer, pad_token)
        model_max = config.get("model_max_length", max_length)
        if not isinstance(model_max, int) or model_max > 10**6:
            model_max = max_length
        return cls(tokenizer, pad_id, min(max_length, model_max), ChatTemplate.from_directory(directory, config))

    @staticmethod
    def check_texts(texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> None:
        """:class:`InputError` for a non-string or empty text (pair), or a pair count that differs."""
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

    def tokenize(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list:
        """``tokenizers.Encoding`` per text (pair), truncated to ``max_length`` with a warning."""
        self.check_texts(texts, text_pairs)
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
            warn_user(f"{len(truncated)} text(s) longer than {self.max_length} tokens were truncated "
                      f"(first: the text at index {truncated[0]}); stride=N explains them whole, in windows")
        return encodings

    def documents(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                  stride: int | None = None) -> list[Document]:
        """A :class:`Document` per text (pair). ``stride`` None: one window, truncated to
        ``max_length`` with a warning (as :meth:`tokenize`); an int: texts longer than
        ``max_length`` tokens become windows of ``max_length`` sharing ``stride`` tokens."""
        if stride is None:
            return [Document(enc, [enc], [list(range(len(enc.ids)))]) for enc in self.tokenize(texts, text_pairs)]
        self.check_texts(texts, text_pairs)
        inputs = list(texts) if text_pairs is None else list(zip(texts, text_pairs))
        return [self._document(i, full, inputs[i], stride) for i, full in enumerate(self.tokenizer.encode_batch(inputs))]

    def conversations(self, conversations: Sequence[list[dict]]) -> tuple[list[Document], list[str]]:
        """A :class:`Document` per conversation, rendered by the chat template (see the module docstring),
        with its messages, and the rendered texts; one longer than ``max_length`` tokens is an
        :class:`InputError` (never cut)."""
        if self.chat is None:
            raise InputError("the tokenizer has no chat template: pass texts, or a tokenizer with a chat_template")
        specials = {i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}
        docs, texts = [], []
        for index, conversation in enumerate(conversations):
            _check_conversation(index, conversation)
            text = self.chat(conversation)
            enc = self.tokenizer.encode(text, add_special_tokens=False)
            if len(enc.ids) > self.max_length:
                raise InputError(f"conversation {index} has {len(enc.ids)} tokens, more than max_length "
                                 f"{self.max_length}; a conversation is not truncated (its score is read at its end)")
            full = ChatEncoding(list(enc.ids), list(enc.tokens), list(enc.offsets),
                                [None if i in specials else 0 for i in enc.ids])
            ends = message_ends(self.chat, conversation, text)
            owner = [min(bisect.bisect_right(ends, start), len(ends) - 1) for start, _ in enc.offsets]  # sorted
            messages = [(str(m["role"]), bisect.bisect_left(owner, k), bisect.bisect_right(owner, k))
                        for k, m in enumerate(conversation)]
            docs.append(Document(full, [full], [list(range(len(full.ids)))], messages))
            texts.append(text)
        return docs, texts

    def special_tokens(self, pair: bool) -> int:
        """How many special tokens the tokenizer adds to a text (``pair``: to a text pair)."""
        processor = self.tokenizer.post_processor
        return 0 if processor is None else processor.num_special_tokens_to_add(pair)

    def _document(self, index: int, full, text, stride: int) -> Document:
        if len(full.ids) <= self.max_length:
            return Document(full, [full], [list(range(len(full.ids)))])
        pair = isinstance(text, tuple)
        room = self.max_length - self.special_tokens(pair) - (full.sequence_ids.count(1) if pair else 0)
        if room < 1:
            raise InputError(f"text pair {index} alone fills the {self.max_length} tokens of a window; "
                             "only the first text is windowed")
        if not 0 <= stride < room:
            raise InputError(f"stride must be between 0 and {room - 1} for windows of {self.max_length} tokens "
                             f"(text {index}), got {stride}")
        self.tokenizer.enable_truncation(self.max_length, stride=stride,
                                         strategy="only_first" if pair else "longest_first")
        try:
            first = self.tokenizer.encode(*text) if pair else self.tokenizer.encode(text)
        finally:
            self.tokenizer.no_truncation()
        windows = even_windows(full, first, 1 + len(first.overflowing))
        return Document(full, windows, [window_positions(full, w) for w in windows])

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


def _check_conversation(index: int, conversation) -> None:
    if not isinstance(conversation, (list, tuple)) or not conversation:
        raise InputError(f"conversation {index} must be a non-empty list of messages")
    for message in conversation:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise InputError(f"conversation {index}: every message must be a dict with 'role' and 'content'")


@dataclass
class SlicedEncoding:
    """A window cut from a whole text's encoding (the fields of a ``tokenizers.Encoding`` this module
    reads): :func:`even_windows`."""

    ids: list[int]
    type_ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    sequence_ids: list[int | None]
    word_ids: list[int | None]
    overflowing: list = field(default_factory=list)


def even_windows(full, first, count: int) -> list[SlicedEncoding]:
    """``count`` windows of the windowed text (sequence 0 of ``full``), each as long as in ``first``
    (the tokenizer's first window, with the special tokens and the text pair around it), starting at
    0 and ending at the text's end, their starts spread evenly (rounded down: consecutive starts
    differ by at most the tokenizer's step, so they share at least its ``stride`` tokens)."""
    span = [i for i, s in enumerate(first.sequence_ids) if s == 0]
    text = [j for j, s in enumerate(full.sequence_ids) if s == 0]
    room, last = len(span), len(text) - len(span)
    fields = ("ids", "type_ids", "tokens", "offsets", "sequence_ids", "word_ids")
    windows = []
    for k in range(count):
        start = last * k // (count - 1) if count > 1 else 0
        picks = [(first, i) for i in range(span[0])] + [(full, j) for j in text[start : start + room]] + \
            [(first, i) for i in range(span[-1] + 1, len(first.ids))]
        windows.append(SlicedEncoding(*([getattr(enc, name)[i] for enc, i in picks] for name in fields)))
    return windows


def window_positions(full, window) -> list[int]:
    """The position in ``full`` of every token of ``window``: special tokens in their order, each
    text's tokens as the run of ``full`` that matches them by id and character offsets."""

    def by_sequence(enc) -> dict:
        runs: dict = {}
        for i, seq in enumerate(enc.sequence_ids):
            runs.setdefault(seq, []).append(i)
        return runs

    whole, where = by_sequence(full), {}
    for seq, part in by_sequence(window).items():
        pool = whole.get(seq, [])
        wanted = [(window.ids[i], window.offsets[i]) for i in part]
        keys = [(full.ids[j], full.offsets[j]) for j in pool]
        start = 0 if seq is None else next(
            (k for k in range(len(pool) - len(part) + 1) if keys[k : k + len(part)] == wanted), None)
        if start is None or len(pool) < start + len(part):
            raise InputError("the tokenizer's overflowing windows do not match the text's tokens; "
                             "explain this text without windows (stride=None)")
        where.update(zip(part, pool[start : start + len(part)]))
    return [where[i] for i in range(len(window.ids))]


def ids_to_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """Token strings of ``ids`` with a ``transformers`` tokenizer, a ``tokenizers.Tokenizer`` or a
    :class:`TextEncoder`."""
    if isinstance(tokenizer, TextEncoder):
        tokenizer = tokenizer.tokenizer
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return list(tokenizer.convert_ids_to_tokens(list(ids)))
    return [tokenizer.id_to_token(i) or "" for i in ids]


# ---------------------------------------------------------------------------------------- words
def _is_punctuation(ch: str) -> bool:
    """Unicode punctuation, and the ASCII symbols BERT's pre-tokenizer also splits at ($, +, <, …)."""
    code = ord(ch)
    return 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126 or \
        unicodedata.category(ch).startswith("P")


def _pieces(text: str) -> list[int]:
    """Per character of ``text`` the piece it belongs to (-1 for whitespace): pieces split at
    whitespace and around punctuation; a combining mark joins the character before it."""
    out, piece, before = [], -1, None  # before: "word", "punct" or None (start, or after whitespace)
    for ch in text:
        if ch.isspace():
            out.append(-1)
            before = None
            continue
        if unicodedata.category(ch).startswith("M") and before is not None:
            out.append(piece)
            continue
        kind = "punct" if _is_punctuation(ch) else "word"
        if kind == "punct" or before != "word":
            piece += 1
        out.append(piece)
        before = kind
    return out


def _words(text: str, spans) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """Per character of ``text`` its word (-1 for whitespace) and each word's character span: the
    pieces of :func:`_pieces`, joined where one token (character span in ``spans``) covers several."""
    pieces = _pieces(text)
    n = max(pieces, default=-1) + 1
    joined = [False] * n  # joined[p]: piece p and piece p + 1 are one word
    for start, end in spans:
        inside = [pieces[c] for c in range(start, min(end, len(text))) if pieces[c] >= 0]
        for p in range(min(inside), max(inside)) if inside else ():
            joined[p] = True
    word_of_piece, word = [], 0
    for p in range(n):
        word_of_piece.append(word)
        word += 0 if joined[p] else 1
    chars = [word_of_piece[p] if p >= 0 else -1 for p in pieces]
    bounds: dict[int, tuple[int, int]] = {}
    for c, w in enumerate(chars):
        if w >= 0:
            bounds[w] = (bounds.get(w, (c, c))[0], c + 1)
    return chars, bounds


def _is_word(key) -> bool:
    return key is not None and key[0] != "special"


def _attach_whitespace(keys: list) -> None:
    """A token that covers only whitespace (key None) joins the next word, else the previous one;
    where there is neither it stays a token of its own."""
    for i in reversed(range(len(keys) - 1)):
        if keys[i] is None and _is_word(keys[i + 1]):
            keys[i] = keys[i + 1]
    for i in range(len(keys)):
        if keys[i] is None:
            keys[i] = keys[i - 1] if i and _is_word(keys[i - 1]) else ("special", i)


def word_index(tokens: Sequence[str], offsets, sequence_ids,
               texts: Sequence[str | None]) -> tuple[list[str], list[bool], list[int]]:
    """Words of a tokenized text (pair) by character offsets (see the module docstring).

    ``texts``: the text and the text pair (or None) the offsets point into. Returns
    ``(labels, special, index)``: the words (and special tokens) in order, which entries are special
    tokens, and for every token the position of the entry it is part of."""
    words = {}
    for seq, text in enumerate(texts):
        if text is not None:
            words[seq] = _words(text, [o for o, s in zip(offsets, sequence_ids) if s == seq])
    keys = []  # per token: ("special", i), (sequence, word), or None (whitespace only)
    for i, ((start, end), seq) in enumerate(zip(offsets, sequence_ids)):
        if seq not in words:
            keys.append(("special", i))
            continue
        chars = words[seq][0]
        inside = [chars[c] for c in range(start, min(end, len(chars))) if chars[c] >= 0]
        keys.append((seq, inside[0]) if inside else None)
    _attach_whitespace(keys)
    order: dict = {}
    index = [order.setdefault(key, len(order)) for key in keys]
    labels = [tokens[key[1]] if key[0] == "special" else texts[key[0]][slice(*words[key[0]][1][key[1]])]
              for key in order]
    return labels, [key[0] == "special" for key in order], index


def merge_rows(index: Sequence[int], rows, n: int | None = None) -> list[list[float]]:
    """Each row of per-token values summed into the entries of :func:`word_index`'s ``index``."""
    n = max(index, default=-1) + 1 if n is None else n
    merged = []
    for row in rows:
        out = [0.0] * n
        for i, value in zip(index, row):
            out[i] += value
        merged.append(out)
    return merged
