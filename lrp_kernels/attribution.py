"""Token attributions: :func:`attribute` looks a method up in :mod:`lrp_kernels.methods` and runs its kind.

Every gradient-kind method is ONE forward and ONE backward pass (integrated gradients: its steps in
one batched pass, or chunks of it). The score of token t is ``Σ_h x_th · g_th`` at the method's
read-out point, g the (modified) gradient of the target logit; for the LRP methods, read at the
embedding sum, Σ_t score_t is the relevance that reached the input (:attr:`Attribution.conservation`).

What is explained is a **seed** on the logits, one row per example: the one-hot of the target
class, minus the one-hot of the ``contrast`` class when one is given (then the explained quantity is
logit_target − logit_contrast, and every gradient method, being linear in the seed, returns
scores(target) − scores(contrast) from the same single backward; Gradient Sensitivity, a norm, is
the norm of that difference's gradient).

``target="all"`` explains every class in ONE backward. Two ways were measured (BERT-base size,
5 labels, batch 8 × seq 128, CPU, one thread, cpp kernels, on a shared 2-core machine at load 7–12,
so take ±30 %; ``benchmarks/target_all.py``):

* **batch-packing** — the batch repeated once per label (label-major), each copy seeded with its
  label, one forward and one backward over labels × batch rows. Works for every method and backend.
  AttnLRP: 0.69× the time of a loop over the classes; Gradient×Input: 1.06× (the same arithmetic).
* **vector-Jacobian product** — one forward, then ``torch.autograd.grad(..., is_grads_batched=True)``
  with one seed per label (vmap over the backward): the forward is not repeated (Gradient×Input:
  0.41–0.71× the loop in three measurements). It runs only for the plain gradient: the LRP autograd Functions are old-style
  (no ``setup_context``/vmap rule), the torch backend's rules use in-place ops that vmap refuses,
  and the cpp kernels need real storage.

So the plain-gradient methods (``gradient``, ``grad_x_input``) take the VJP and every other
method (the LRP rule sets, integrated gradients, and any method with ``layers=True``, whose hooks
would see vmapped gradients) takes batch-packing. Memory grows with the number of labels, as for
that many examples. A model whose plain forward runs the attention op itself (sliding windows,
causal attention: SDPA would need a dense [L, L] mask) runs the VJP's backward once per label
(one forward, then one backward per label through the same graph).

**Heads** (:class:`~lrp_kernels.models.config.Head`, from the model's ``problem_type``): a
single-label classifier explains its argmax when no target is given, as above. A multi-label one
explains every label whose sigmoid is ≥ 0.5 (the top label when none is) — several per example, so
``target=None`` returns the shapes of ``target="all"`` with :attr:`Attribution.selected` marking the
labels explained: a plain forward finds them, then the batch-packing above packs only the selected
(example, label) pairs (the VJP runs every label and zeroes the others). A boolean ``target``
[batch, labels] selects labels the same way. A regression explains output 0 (every output when it
has several) and refuses a contrast; it has no probabilities.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from lrp_kernels.backends.registry import resolve
from lrp_kernels.errors import InputError
from lrp_kernels.layer_relevance import (KINDS, LayerRelevance, LedgerHooks, absorbed_by_kind, account,
                                         account_text, dot_relevance)
from lrp_kernels.methods import LRP_METHODS, METHODS, READ_OUT_POINTS, Method, get_method
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import POSITIONS, Ledger
from lrp_kernels.models.config import SINGLE_LABEL, Head
from lrp_kernels.models.loading import as_lrp_model
from lrp_kernels.rules import GRADIENT

IG_BASELINES = ("pad", "zero")
#: ``target=ALL`` explains every class in one backward
ALL = "all"

__all__ = ["ALL", "Attribution", "IG_BASELINES", "LRP_METHODS", "LayerRelevance", "METHODS", "as_lrp_model",
           "attribute"]


@dataclass
class Attribution:
    """The result of :func:`attribute`.

    ``scores`` [batch, seq] float32 (0 at padding) — [batch, labels, seq] with ``target="all"``;
    ``logits`` [batch, labels] float32; ``target`` [batch] int64 ([batch, labels] with ``"all"``);
    ``contrast`` the contrast class, shaped as ``target``, or None; ``method`` the method's name;
    ``read_at`` where its scores were read; ``layers`` the :class:`LayerRelevance` of
    ``layers=True``; ``input_ids``/``attention_mask`` what was explained (on the CPU) and
    ``tokens`` their token strings, when known (:meth:`with_tokens`, ``Explainer.attribute``);
    ``position_relevance`` [batch] (or [batch, labels]) float32: the relevance that left the tokens
    for position inputs the batch shares (DeBERTa's relative-position embeddings, read at their
    table, the input of their norm), reported by the LRP methods that hold norms constant (attnlrp,
    cp_lrp) for families that have such inputs; None otherwise. ``selected`` [batch, labels] bool:
    the labels explained when they were chosen per example (``target=None`` on a multi-label head or
    a regression with several outputs, or a boolean ``target``) — the shapes are those of
    ``target="all"``, and the scores, layers and position relevance of a label not selected are 0;
    None otherwise. ``problem_type``: what the logits mean (:class:`~lrp_kernels.models.config.Head`).
    """

    scores: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor
    method: str
    read_at: str | None = None
    contrast: torch.Tensor | None = None
    layers: LayerRelevance | None = None
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    tokens: list[list[str]] | None = None
    position_relevance: torch.Tensor | None = None
    selected: torch.Tensor | None = None
    problem_type: str = SINGLE_LABEL
    shares: dict[str, torch.Tensor] | None = None

    def _logit_of(self, classes: torch.Tensor) -> torch.Tensor:
        return self.logits.gather(1, classes.reshape(len(self.logits), -1)).reshape(classes.shape)

    @property
    def target_logit(self) -> torch.Tensor:
        """The explained quantity, shaped as ``target``: logit_target, or logit_target − logit_contrast."""
        value = self._logit_of(self.target)
        return value if self.contrast is None else value - self._logit_of(self.contrast)

    @property
    def conservation(self) -> torch.Tensor:
        """(Σ scores + position relevance) / :attr:`target_logit` per example (1 = all of the explained
        logit reached the input)."""
        total = self.scores.sum(dim=-1)
        if self.position_relevance is not None:
            total = total + self.position_relevance
        return total / self.target_logit

    def account(self, *index: int) -> str:
        """Example ``index`` (``index, label`` with several labels per example) in words: "Σ relevance
        5.19 = logit 1.67 + 3.52 from biases and norm shifts" (:attr:`shares`: ``account=True`` or
        ``layers=True``; without them the remainder is not split)."""
        total, logit = float(self.scores.sum(dim=-1)[index]), float(self.target_logit[index])
        if self.position_relevance is not None and self.shares is None:
            total += float(self.position_relevance[index])
        shares = ({lumped_share(get_method(self.method), read_at=self.read_at): logit - total} if self.shares is None
                  else {k: float(v[index]) for k, v in self.shares.items()})
        return account_text(total, logit, shares)

    def with_tokens(self, tokenizer) -> "Attribution":
        """This result with :attr:`tokens` filled from :attr:`input_ids` by ``tokenizer`` (a
        ``transformers`` tokenizer, a ``tokenizers.Tokenizer`` or a
        :class:`~lrp_kernels.tokenization.TextEncoder`); padding positions included."""
        from lrp_kernels.tokenization import ids_to_tokens

        if self.input_ids is None:
            raise InputError("this result does not hold its input ids")
        self.tokens = [ids_to_tokens(tokenizer, row) for row in self.input_ids.tolist()]
        return self

    @property
    def probabilities(self) -> torch.Tensor | None:
        """[batch, labels]: the softmax of a single-label classifier, the per-label sigmoid of a
        multi-label one; None for a regression (its logits are the predicted values)."""
        return Head(self.problem_type).probabilities(self.logits)


@contextlib.contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Parameters do not require grad inside (so no weight gradient is ever computed or saved for)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass
class _Batch:
    """The checked inputs of one call, on the model's device."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    read_index: torch.Tensor | None = None  # [B], the model's read_index of the ids (decoders)

    def take(self, rows: torch.Tensor) -> "_Batch":
        """The rows ``rows`` of the batch (repeats allowed)."""
        types = None if self.token_type_ids is None else self.token_type_ids[rows]
        read = None if self.read_index is None else self.read_index[rows]
        return _Batch(self.input_ids[rows], self.attention_mask[rows], types, read)

    def rows(self) -> torch.Tensor:
        """[B] the position the head reads per example (the first where it does not depend on the ids)."""
        return torch.zeros_like(self.input_ids[:, 0]) if self.read_index is None else self.read_index


def _check_inputs(model: EncoderClassifier, input_ids, attention_mask, token_type_ids) -> _Batch:
    if not torch.is_tensor(input_ids) or input_ids.dim() != 2:
        raise InputError("input_ids must be a [batch, seq] tensor of token ids")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise InputError(f"input_ids is empty (shape {tuple(input_ids.shape)})")
    if input_ids.shape[1] > model.config.max_tokens:
        raise InputError(
            f"sequence length {input_ids.shape[1]} exceeds the model's {model.config.max_tokens} positions"
        )
    device = next(model.parameters()).device
    input_ids = input_ids.to(device=device, dtype=torch.long)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    elif attention_mask.shape != input_ids.shape:
        raise InputError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}")
    attention_mask = attention_mask.to(device=device)
    if token_type_ids is not None:
        if token_type_ids.shape != input_ids.shape:
            raise InputError("token_type_ids must have the shape of input_ids")
        token_type_ids = token_type_ids.to(device=device, dtype=torch.long)
    return _Batch(input_ids, attention_mask, token_type_ids)


def _right_padded(model: EncoderClassifier, batch: _Batch) -> tuple[_Batch, torch.Tensor | None]:
    """The batch with each sequence's tokens first (left padding or holes re-packed) where the model
    allows it (:attr:`~lrp_kernels.models.EncoderClassifier.repacks_padding`), its read index, and the
    per-row order used (None when the batch was not re-packed)."""
    keep = batch.attention_mask.bool()
    order = None
    if model.repacks_padding and (keep[:, 1:] & ~keep[:, :-1]).any():
        order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
        types = None if batch.token_type_ids is None else batch.token_type_ids.gather(1, order)
        batch = _Batch(batch.input_ids.gather(1, order), batch.attention_mask.gather(1, order), types)
    batch.read_index = model.read_index(batch.input_ids, batch.attention_mask)
    return batch, order


def label_index(value, id2label: dict[int, str] | None, n_labels: int, what: str = "target", also: str = "") -> int:
    """One class, given as an index (an int, or its digits as a string) or a label name of ``id2label``
    — the one parser of ``target`` and ``contrast`` for :func:`attribute`, the
    :class:`~lrp_kernels.Explainer` and the CLI. ``what`` names the option in messages (``also``: what
    else it would take, e.g. " nor all")."""
    id2label = id2label or {}
    if isinstance(value, str):
        named = [i for i, name in id2label.items() if name == value]
        number = int(value) if value.strip().lstrip("+-").isdigit() else None
        if named and number is not None and number != named[0]:
            raise InputError(f"{what} {value!r} is ambiguous: label {named[0]} is named {value!r}; "
                             f"pass the index as an int")
        if not named and number is None:
            labels = ", ".join(str(id2label.get(k, k)) for k in range(n_labels))
            raise InputError(f"{what} {value!r} is neither a class index nor a label name{also} (labels: {labels})")
        index = named[0] if named else number
    elif isinstance(value, bool) or not _integral(value):
        raise InputError(f"{what} must be a class index or a label name, got {value!r}")
    else:
        index = int(value)
    if not 0 <= index < n_labels:
        raise InputError(f"{what} {index} out of range: the model has {n_labels} labels (0..{n_labels - 1})")
    return index


def _integral(value) -> bool:
    """An int, a numpy / 0-d torch integer or an integral float."""
    try:
        return float(value) == int(value) and not isinstance(value, (str, bytes))
    except (TypeError, ValueError, RuntimeError):
        return False


def _has_names(target) -> bool:
    return isinstance(target, str) or (isinstance(target, (list, tuple)) and any(isinstance(t, str) for t in target))


def check_targets(target, batch: int, n_labels: int, id2label: dict[int, str] | None = None,
                  what: str = "target") -> torch.Tensor | None:
    """``target`` as [batch] int64 class indices on the CPU, or None (the predicted class).

    Accepts a class for every example or one per example (a list, array or tensor); a class is an
    int (numpy and 0-d torch integers too, integral floats), or a label name of ``id2label`` (see
    :func:`label_index`); anything else is an :class:`InputError` naming ``what``."""
    if target is None:
        return None
    if _has_names(target):
        items = [target] if isinstance(target, str) else list(target)
        also = f" nor {ALL!r}" if what == "target" else ""
        target = [label_index(t, id2label, n_labels, what, also) for t in items]
    try:
        t = torch.as_tensor(target).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{what} must be class indices or label names (one, or one per example) or {ALL!r}, "
                         f"got {target!r}") from None
    if t.dtype == torch.bool or t.is_complex():
        raise InputError(f"{what} must be class indices (a boolean target selects labels: [batch, labels]), "
                         f"got {target!r}")
    if t.is_floating_point():
        bad = t[t != t.round()]
        if bad.numel():
            raise InputError(f"{what} must be integral class indices, got {bad.reshape(-1)[0].item():g}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise InputError(f"got {t.numel()} {what}s for a batch of {batch}")
    bad = (t < 0) | (t >= n_labels)
    if bad.any():
        raise InputError(f"{what} {int(t[bad][0])} out of range: the model has {n_labels} labels (0..{n_labels - 1})")
    return t


def selected_labels(target, batch: int, n_labels: int, id2label: dict[int, str] | None = None) -> torch.Tensor | None:
    """A selection of labels per example as [batch, labels] bool, or None when ``target`` is not one:
    a boolean tensor [batch, labels], or one list (tuple, set) of classes — indices or label names —
    per example (several labels each: a multi-label model's ``target=[["toxic", "insult"], ["spam"]]``)."""
    if torch.is_tensor(target) and target.dtype == torch.bool and target.dim() == 2:
        return check_selection(target, batch, n_labels)
    if not isinstance(target, (list, tuple)) or not target or not all(isinstance(t, (list, tuple, set)) for t in target):
        return None
    if len(target) != batch:
        raise InputError(f"got {len(target)} label selections for a batch of {batch}")
    selection = torch.zeros(batch, n_labels, dtype=torch.bool)
    for row, labels in enumerate(target):
        for label in labels:
            selection[row, label_index(label, id2label, n_labels)] = True
    return check_selection(selection, batch, n_labels)


def resolve_target(target, logits: torch.Tensor) -> torch.Tensor:
    """[batch] int64 targets on the logits' device: the predicted class when ``target`` is None."""
    checked = check_targets(target, *logits.shape)
    return logits.argmax(dim=-1) if checked is None else checked.to(logits.device)


@dataclass
class _Explained:
    """What is explained, resolved against the logits: the seed of the backward, per row."""

    grad_outputs: torch.Tensor  # [rows, labels], the logits' dtype
    target: torch.Tensor  # [rows]
    contrast: torch.Tensor | None  # [rows]

    def repeat(self, n: int) -> "_Explained":
        contrast = None if self.contrast is None else self.contrast.repeat(n)
        return _Explained(self.grad_outputs.repeat(n, 1), self.target.repeat(n), contrast)


@dataclass
class _Seed:
    """What to explain, checked: ``target`` [rows] (None: the predicted class), ``contrast`` [rows] or
    None, and ``selection`` [rows, labels] bool: the labels of each row to explain (several per row)."""

    target: torch.Tensor | None
    contrast: torch.Tensor | None = None
    selection: torch.Tensor | None = None

    def resolve(self, logits: torch.Tensor) -> _Explained:
        target = logits.argmax(dim=-1) if self.target is None else self.target.to(logits.device)
        n_labels = logits.shape[-1]
        grad_outputs = F.one_hot(target, n_labels).to(logits.dtype)
        contrast = None if self.contrast is None else self.contrast.to(logits.device)
        if contrast is not None:
            grad_outputs = grad_outputs - F.one_hot(contrast, n_labels).to(logits.dtype)
        return _Explained(grad_outputs, target, contrast)


@dataclass
class _Backward:
    x: torch.Tensor  # the tensor at the read-out point
    grad: torch.Tensor  # the (modified) gradient there
    logits: torch.Tensor
    explained: _Explained
    layers: LayerRelevance | None = None
    position: torch.Tensor | None = None  # [rows] relevance of the shared position inputs
    shares: dict | None = None  # [rows] per kind, what the ops of a partial ledger absorb


def _backward_at(model, e, attention_mask, rules, backend, seed, read_at, layers: bool = False,
                 positions: bool = False, read_index: torch.Tensor | None = None,
                 record: frozenset | None = None, checkpoint: bool = False) -> _Backward:
    """One forward from the embedding sum and one backward of the seeded logits.

    ``seed``: a :class:`_Seed` (resolved against this forward's logits) or an :class:`_Explained`.
    With ``layers`` the forward records a ledger and the same backward yields :class:`LayerRelevance`;
    with ``positions`` the relevance of the position inputs the batch shares (where the family has
    any) comes from the same backward; with ``record`` (and no ``layers``) a partial ledger of those op
    kinds gives what they absorb in all (:attr:`_Backward.shares`); ``checkpoint`` recomputes each layer
    during the backward."""
    taps = (("embedding_output",) if read_at == "embedding_output" else ()) + ((POSITIONS,) if positions else ())
    e = e.detach().requires_grad_(True)
    ledger = Ledger(points=[("embedding_sum", e)]) if layers else (Ledger(kinds=record) if record else None)
    with torch.enable_grad():
        logits, p = model.run(e, attention_mask, rules, backend, taps=taps, ledger=ledger, read_index=read_index,
                              checkpoint=checkpoint)
        explained = seed if isinstance(seed, _Explained) else seed.resolve(logits.detach())
        x = p.tapped[read_at] if read_at == "embedding_output" else e
        hooks = LedgerHooks(ledger) if ledger is not None else None
        inputs = (x, e) if layers and x is not e else (x,)
        views = [view for view, _ in p.position_terms]
        grads = _grad(logits, (*inputs, *views), explained.grad_outputs, bool(views), p.vmappable)
    relevance = shares = None
    if layers:
        relevance = account(ledger, hooks, grads[len(inputs) - 1], explained.grad_outputs, logits, attention_mask)
    elif ledger is not None:
        shares = absorbed_by_kind(ledger, hooks, e.shape[0], e.device)
    position = _position_relevance(p.position_terms, grads[len(inputs):])
    return _Backward(x.detach(), grads[0], logits.detach(), explained, relevance, position, shares)


def _grad(logits, inputs, grad_outputs, allow_unused: bool, vmappable: bool):
    """``torch.autograd.grad`` of the seeded logits; seeds [labels, batch, labels] (one backward per
    label) are vmapped, or run one after the other where the pass used an op without a vmap rule."""
    if grad_outputs.dim() != 3 or vmappable:
        return torch.autograd.grad(logits, inputs, grad_outputs, allow_unused=allow_unused,
                                   is_grads_batched=grad_outputs.dim() == 3)
    per_label = [torch.autograd.grad(logits, inputs, seed, allow_unused=allow_unused, retain_graph=True)
                 for seed in grad_outputs]
    return tuple(None if parts[0] is None else torch.stack(parts) for parts in zip(*per_label))


def _position_relevance(terms, grads) -> torch.Tensor | None:
    """Σ share ⊙ g per example over every recorded position input (a term no relevance reached adds 0)."""
    if not terms:
        return None
    total = torch.zeros(terms[0][0].shape[0], dtype=torch.float32, device=terms[0][0].device)
    for (_, share), grad in zip(terms, grads):
        if grad is not None:
            total += (share.float() * grad.float()).flatten(1).sum(dim=1)
    return total


@dataclass
class _Out:
    """What a kind returns: scores [rows, seq] (or [batch, labels, seq] once unpacked), logits, the
    explained seeds and, with ``layers``, the relevance per layer."""

    scores: torch.Tensor
    logits: torch.Tensor
    explained: _Explained
    layers: LayerRelevance | None = None
    position: torch.Tensor | None = None
    shares: dict | None = None  # [rows] each: shares of the account measured in the pass (softmax, baseline)


def _gradient_method(method: Method, model, e, batch: _Batch, *, seed, eps, backend, read_at, layers, checkpoint,
                     account=False, **_):
    rules = method.rules(eps)
    positions = method.is_lrp and rules.layer_norm == "identity"
    # the account's softmax share (AttnLRP): a partial ledger of the attention ops alone (see attribute);
    # not with checkpoint (a ledger holds every layer's attention inputs: the memory checkpoint saves)
    record = frozenset({"softmax"}) if (account and not checkpoint and rules.attention == "attnlrp"
                                        and read_at == "embedding_sum") else None
    b = _backward_at(model, e, batch.attention_mask, rules, backend, seed, read_at, layers, positions,
                     batch.read_index, record, checkpoint)
    if method.norm:
        return _Out(b.grad.float().norm(dim=-1), b.logits, b.explained, b.layers)
    x = b.x
    if read_at == "word_embeddings":  # e = w + p + t: the gradient at w is the gradient at e
        x = model.word_part(batch.input_ids)  # (× the scale of the sum's word term: Gemma's √hidden)
    return _Out(dot_relevance(x, b.grad), b.logits, b.explained, b.layers, b.position, b.shares)


def _baseline(model: EncoderClassifier, batch: _Batch, baseline) -> torch.Tensor:
    if torch.is_tensor(baseline):
        return baseline
    ids, types = batch.input_ids, batch.token_type_ids
    if baseline == "zero":  # no word at all; positions and token types stay (LayerNorm makes e = 0 degenerate)
        return model.embed(ids, types, attention_mask=batch.attention_mask) - model.word_part(ids)
    if baseline == "pad":  # [PAD] words at the real positions
        if model.config.pad_token_id is None:
            raise InputError("the model has no pad_token_id for the integrated-gradients baseline 'pad'; "
                             "use ig_baseline='zero' (or a tensor)")
        pad_ids = torch.full_like(ids, model.config.pad_token_id)
        return model.embed(pad_ids, types, position_ids=model.position_ids(ids, batch.attention_mask))
    raise InputError(f"unknown integrated-gradients baseline {baseline!r}; valid: {', '.join(IG_BASELINES)} or a tensor")


def midpoint_path(e: torch.Tensor, base: torch.Tensor, ig_steps: int, ig_batch_size: int):
    """The midpoint rule's straight path from ``base`` to ``e`` [B, L, H], in chunks of about
    ``ig_batch_size`` rows: yields (n, the n steps' points [n·B, L, H]), step k at α = (k + ½) / ig_steps."""
    alphas = (torch.arange(ig_steps, device=e.device, dtype=torch.float32) + 0.5) / ig_steps
    per_chunk = max(1, ig_batch_size // e.shape[0])
    for start in range(0, ig_steps, per_chunk):
        a = alphas[start : start + per_chunk].to(e.dtype)[:, None, None, None]
        yield a.shape[0], (base + a * (e - base)).reshape(-1, *e.shape[1:])


def _integrated_gradients(method: Method, model, e, batch: _Batch, *, seed, backend, ig_steps, ig_baseline,
                          ig_batch_size, checkpoint, account=False, **_):
    """Midpoint-rule IG at the embedding sum; all steps of all examples batched in chunks (with
    ``account``, one more forward: the baseline's logit, the account's ``baseline`` share)."""
    if ig_steps < 1:
        raise InputError(f"ig_steps must be >= 1, got {ig_steps}")
    mask = batch.attention_mask
    with torch.no_grad():
        logits = model.forward_from_embeddings(e, mask, read_index=batch.read_index)
    explained = seed.resolve(logits)
    base = _baseline(model, batch, ig_baseline).to(e.dtype).expand_as(e)
    total = torch.zeros(e.shape, dtype=torch.float32, device=e.device)
    for n, path in midpoint_path(e, base, ig_steps, ig_batch_size):
        read = None if batch.read_index is None else batch.read_index.repeat(n)
        grad = _backward_at(model, path, mask.repeat(n, 1), GRADIENT, backend, explained.repeat(n),
                            "embedding_sum", read_index=read, checkpoint=checkpoint).grad
        total += grad.float().reshape(n, *e.shape).sum(dim=0)
    shares = None
    if account:  # completeness: Σ scores = logit(x) − logit(baseline), up to the Riemann sum's error
        with torch.no_grad():
            at_base = model.forward_from_embeddings(base.contiguous(), mask, read_index=batch.read_index)
        shares = {"baseline": (at_base.float() * explained.grad_outputs.float()).sum(dim=-1)}
    return _Out(((e - base).float() * total / ig_steps).sum(dim=-1), logits, explained, shares=shares)


def _attention_method(method: Method, model, e, batch: _Batch, *, seed, **_):
    with torch.no_grad():
        logits, attentions = model.forward_from_embeddings(e, batch.attention_mask, output_attentions=True,
                                                           read_index=batch.read_index)
    return _Out(method.from_attentions([a.float() for a in attentions], batch.rows()), logits, seed.resolve(logits))


def _control_method(method: Method, model, e, batch: _Batch, *, seed, random_seed, **_):
    with torch.no_grad():
        logits = model.forward_from_embeddings(e, batch.attention_mask, read_index=batch.read_index)
    generator = torch.Generator().manual_seed(random_seed)
    scores = torch.rand(batch.input_ids.shape, generator=generator).to(batch.input_ids.device)
    return _Out(scores, logits, seed.resolve(logits))


_KINDS = {
    "gradient": _gradient_method,
    "integrated_gradients": _integrated_gradients,
    "attention": _attention_method,
    "control": _control_method,
}


def _read_at(method: Method, read_at: str | None) -> str | None:
    if read_at is None:
        return method.read_at
    if method.kind != "gradient":
        raise InputError(f"read_at applies to gradient methods; {method.name} reads at {method.read_at or 'no tensor'}")
    if read_at not in READ_OUT_POINTS:
        raise InputError(f"unknown read-out point {read_at!r}; valid: {', '.join(READ_OUT_POINTS)}")
    return read_at


def check_selection(target: torch.Tensor, batch: int, n_labels: int) -> torch.Tensor:
    """A boolean ``target`` [batch, labels]: the labels to explain per example (at least one each)."""
    if tuple(target.shape) != (batch, n_labels):
        raise InputError(f"a boolean target selects labels per example: shape [batch, labels] = [{batch}, {n_labels}], "
                         f"got {list(target.shape)}")
    empty = ~target.any(dim=-1)
    if empty.any():
        raise InputError(f"the boolean target selects no label for example {int(empty.nonzero()[0, 0])}")
    return target


def _seed(spec: Method, target, contrast, ids: torch.Tensor, n_labels: int, head: Head,
          id2label: dict[int, str] | None = None) -> tuple[_Seed, str]:
    """The checked target and contrast, already on the device of ``ids`` (copied before the forward
    is queued, so that seeding the backward never waits for the GPU), and how many labels each example
    explains: ``"one"``, ``"all"`` (``target="all"``) or ``"select"`` (a selection per example: a
    boolean target, or ``target=None`` where the head explains several — the selection is then made
    from the logits, ``selection`` None here)."""
    if contrast is not None and not spec.depends_on_target:
        raise InputError(f"{spec.name} does not depend on the explained class: contrast applies to the gradient "
                         "and integrated-gradients methods")
    head.check_contrast(contrast)
    batch = ids.shape[0]
    contrast = check_targets(contrast, batch, n_labels, id2label, "contrast")
    contrast = None if contrast is None else contrast.to(ids.device)
    if isinstance(target, str) and target == ALL:
        if head.vocabulary:
            raise InputError(f"target='all' would explain every token of a language model's vocabulary ({n_labels}); "
                             "name the token to explain (target=<token id>)")
        return _Seed(None, contrast), "all"
    selection = selected_labels(target, batch, n_labels, id2label)
    if selection is not None:
        return _Seed(None, contrast, selection.to(ids.device)), "select"
    if target is None and head.explains_several(n_labels):
        return _Seed(None, contrast), "select"
    checked = check_targets(target, batch, n_labels, id2label)
    return _Seed(None if checked is None else checked.to(ids.device), contrast), "one"


def _every_label_seeds(k: int, b: int, contrast: torch.Tensor | None, like: torch.Tensor) -> _Explained:
    """One seed per label for a vmapped backward: grad_outputs [labels, batch, labels]."""
    target = torch.arange(k, device=like.device)[:, None].expand(k, b)
    grad_outputs = F.one_hot(target, k).to(like.dtype)
    if contrast is not None:
        contrast = contrast.to(like.device)[None].expand(k, b)
        grad_outputs = grad_outputs - F.one_hot(contrast, k).to(like.dtype)
    return _Explained(grad_outputs, target, contrast)


def _unpacker(rows: torch.Tensor, labels: torch.Tensor, b: int, k: int):
    """[n, …] packed (example ``rows``, label ``labels``) pairs -> [b, k, …], zeros where no pair is."""

    def unpack(t: torch.Tensor) -> torch.Tensor:
        full = torch.zeros(b, k, *t.shape[1:], dtype=t.dtype, device=t.device)
        full[rows, labels] = t
        return full

    return unpack


def _masked(out: _Out, selection: torch.Tensor | None) -> _Out:
    """``out`` (every label computed) with the scores of the labels not in ``selection`` zeroed."""
    if selection is not None:
        out.scores = out.scores * selection[..., None].to(out.scores.device)
    return out


def _every_label(run, spec: Method, model, e, batch: _Batch, seed: _Seed, kw: dict) -> _Out:
    """Several labels per example: every one (``target="all"``) or those of ``seed.selection``. The
    batch is repeated once per (example, label) pair, label-major, each copy seeded with its label, in
    one backward (plain-gradient methods: one forward and a vmapped backward over every label, see the
    module docstring); a method that does not depend on the target runs once and stands for every
    label. Scores [batch, labels, seq]; a label not selected gets zeros."""
    k, b, selection = model.config.num_labels, e.shape[0], seed.selection
    if spec.kind == "gradient" and spec.rules(kw["eps"]).is_plain and not kw["layers"]:
        explained = _every_label_seeds(k, b, seed.contrast, e)
        out = run(spec, model, e, batch, seed=explained, **kw)  # scores [labels, batch, seq]
        ex = out.explained
        return _masked(_Out(out.scores.transpose(0, 1), out.logits, _Explained(
            ex.grad_outputs, ex.target.transpose(0, 1), None if ex.contrast is None else ex.contrast.transpose(0, 1))),
            selection)
    if not spec.depends_on_target:
        out = run(spec, model, e, batch, seed=_Seed(None), **kw)
        target = torch.arange(k, device=out.logits.device).expand(b, k)
        explained = _Explained(F.one_hot(target, k).to(out.logits.dtype), target, None)
        return _masked(_Out(out.scores[:, None].expand(-1, k, -1), out.logits, explained), selection)
    chosen = torch.ones(k, b, dtype=torch.bool, device=e.device) if selection is None else selection.T
    labels, rows = chosen.nonzero(as_tuple=True)  # label-major: the examples of label 0, then of label 1, …
    packed = _Seed(labels, None if seed.contrast is None else seed.contrast[rows])
    baseline = kw["ig_baseline"]
    if torch.is_tensor(baseline) and baseline.dim() == 3 and baseline.shape[0] > 1:
        kw = {**kw, "ig_baseline": baseline[rows]}
    out = run(spec, model, e[rows], batch.take(rows), seed=packed, **kw)
    unpack = _unpacker(rows, labels, b, k)
    first = torch.empty(b, dtype=torch.long, device=rows.device)
    first[rows.flip(0)] = torch.arange(len(rows) - 1, -1, -1, device=rows.device)  # each example's first row
    grid = torch.arange(k, device=e.device).expand(b, k)
    contrast = None if seed.contrast is None else seed.contrast[:, None].expand(b, k)
    explained = _Explained(unpack(out.explained.grad_outputs), grid, contrast)
    layers = None if out.layers is None else out.layers.map(unpack)
    position = None if out.position is None else unpack(out.position)
    shares = None if out.shares is None else {name: unpack(t) for name, t in out.shares.items()}
    return _Out(unpack(out.scores), out.logits[first], explained, layers, position, shares)


def _caller_positions(t: torch.Tensor, attention_mask: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """``t`` [batch, …, seq] as float32 with 0 at padding and, when the batch was re-packed, each
    sequence back at the caller's positions."""
    shape = (t.shape[0],) + (1,) * (t.dim() - 2) + (t.shape[-1],)
    t = torch.where(attention_mask.bool().reshape(shape), t.float(), torch.zeros((), device=t.device))
    if order is None:
        return t
    return torch.zeros_like(t).scatter_(-1, order.reshape(shape).expand_as(t), t)


def attribute(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    *,
    method: str = "attnlrp",
    target=None,
    contrast=None,
    layers: bool = False,
    eps: float = 1e-6,
    backend: str | None = None,
    read_at: str | None = None,
    ig_steps: int = 32,
    ig_baseline="pad",
    ig_batch_size: int = 256,
    seed: int = 0,
    account: bool = False,
    checkpoint: bool = False,
) -> Attribution:
    """Token attributions of ``method`` (see :mod:`lrp_kernels.methods`) for a batch.

    ``model``: an :class:`~lrp_kernels.models.EncoderClassifier` or a ``transformers`` sequence
    classifier of a supported family (converted once, parameters shared). ``target``: None (the
    predicted class; a multi-label head: every label with sigmoid ≥ 0.5, or the top one — scores
    [batch, labels, seq] and :attr:`Attribution.selected`; a regression: its output), an int, one per
    example, ``"all"`` (every class in one backward: scores [batch, labels, seq]) or a boolean
    [batch, labels] selection. ``contrast``: None, an int or one per example — explain
    logit_target − logit_contrast (gradient and IG methods; refused for a regression). ``layers``:
    also return the relevance at every block's input and what each block absorbs
    (:class:`LayerRelevance`; gradient methods), from the same backward. ``eps``: the ε of the LRP
    rules. ``backend``: ``auto`` / ``torch`` / ``cpp`` / ``cuda`` / ``triton`` (None = the global
    setting). ``read_at``: the read-out point of a gradient method (None: the method's own). Integrated gradients takes ``ig_steps``,
    ``ig_baseline`` (``"pad"``: [PAD] words at the same positions; ``"zero"``: a zero word
    embedding, positions and token types kept — the embedding sum itself cannot be 0, as the
    LayerNorm after it is scale-invariant; or a tensor broadcastable to the embedding sum) and
    ``ig_batch_size`` (examples per chunk). ``seed``: of the ``random`` control. ``account``: also
    :attr:`Attribution.shares`, where the explained logit went besides the tokens (see :func:`_shares`;
    AttnLRP records its attention ops for the softmax rule's share — not with ``checkpoint``: then one
    share ``bias+norm+softmax`` —, integrated gradients takes one more forward for the baseline's
    logit; ``layers=True`` implies it, split by every kind).
    ``checkpoint``: recompute each layer's forward during the backward (gradient and IG methods; not
    with ``layers=True``) — for inputs whose activations do not fit: the memory of one layer's
    activations instead of all of them, for about one more forward; the scores are the same.
    """
    spec = get_method(method)
    read_at = _read_at(spec, read_at)
    model = as_lrp_model(model)
    if layers and spec.kind != "gradient":
        raise InputError(f"layers=True applies to gradient methods; {spec.name} is a {spec.kind} method")
    if checkpoint and layers:
        raise InputError("checkpoint=True does not combine with layers=True (relevance per layer)")
    # Inside torch.inference_mode() no backward is possible: leave it for the call (new tensors are
    # ordinary; the caller's inference tensors are only read).
    with torch.inference_mode(False), frozen(model), torch.no_grad():
        batch, order = _right_padded(model, _check_inputs(model, input_ids, attention_mask, token_type_ids))
        head = model.config.head
        what, labels = _seed(spec, target, contrast, batch.input_ids, model.config.num_labels, head,
                             model.config.id2label)
        kernels = resolve(backend, batch.input_ids.device)
        if order is not None and torch.is_tensor(ig_baseline) and ig_baseline.dim() == 3 and ig_baseline.shape[0] > 1:
            ig_baseline = ig_baseline.gather(1, order[..., None].expand(-1, -1, ig_baseline.shape[-1]))
        e = model.embed(batch.input_ids, batch.token_type_ids, attention_mask=batch.attention_mask)
        if labels == "select" and what.selection is None:  # target=None on a head that explains several
            what.selection = head.explained(model.forward_from_embeddings(e, batch.attention_mask,
                                                                          read_index=batch.read_index))
        kw = dict(eps=eps, backend=kernels, read_at=read_at, layers=layers, ig_steps=ig_steps, ig_baseline=ig_baseline,
                  ig_batch_size=ig_batch_size, random_seed=seed, account=account, checkpoint=bool(checkpoint))
        run = _KINDS[spec.kind]
        out = run(spec, model, e, batch, seed=what, **kw) if labels == "one" else _every_label(run, spec, model, e,
                                                                                               batch, what, kw)
        scores = _caller_positions(out.scores, batch.attention_mask, order)
        relevance = out.layers and out.layers.map(
            lambda t: t, lambda t: _caller_positions(t, batch.attention_mask, order))
    result = Attribution(scores=scores, logits=out.logits.float(), target=out.explained.target, method=spec.name,
                         read_at=read_at, contrast=out.explained.contrast, layers=relevance,
                         input_ids=input_ids.detach().cpu(),
                         attention_mask=None if attention_mask is None else attention_mask.detach().cpu(),
                         position_relevance=out.position, selected=what.selection, problem_type=head.problem_type)
    if account or layers:
        result.shares = _shares(spec, eps, read_at, result, out)
    return result


def _shares(spec: Method, eps: float, read_at: str, result: Attribution, out: _Out) -> dict | None:
    """Where the explained logit went besides the tokens: Σ scores = logit − Σ shares, each shaped as
    the target (names: :data:`~lrp_kernels.layer_relevance.SHARE_WORDS`). Per kind from the ledger
    (``layers``, read at the embedding sum); the LRP rules at the embedding sum: the relative
    positions, the softmax rule (AttnLRP's partial ledger) and the rest, biases and norm shifts;
    integrated gradients: the baseline's logit and the Riemann sum's error; other read-out points and
    the plain gradient: one remainder. None for scores that are not relevance."""
    if spec.norm or not spec.depends_on_target:
        return None
    logit = result.target_logit.float()
    rest = logit - result.scores.sum(dim=-1)
    if out.layers is not None and read_at == "embedding_sum":  # the books of every op: R(e) + Σ absorbed = logit
        absorbed = out.layers.absorbed.sum(dim=-2)
        return {kind: absorbed[..., j] for j, kind in enumerate(KINDS)}
    if spec.kind == "integrated_gradients":
        baseline = out.shares["baseline"] if out.shares else torch.full_like(rest, float("nan"))
        return {"baseline": baseline, "steps": rest - baseline}
    if not spec.is_lrp or read_at != "embedding_sum":
        return {lumped_share(spec, eps, read_at): rest}
    known = {}
    if out.position is not None:  # relevance that left the tokens for the relative positions (DeBERTa)
        known["positions"] = out.position
    if out.shares and "softmax" in out.shares:  # (its books hold what left for the positions: counted there)
        known["softmax"] = out.shares["softmax"] - known.get("positions", 0.0)
    known["bias+norm" if "softmax" in known else lumped_share(spec, eps, read_at)] = rest - sum(known.values())
    return known


def lumped_share(spec: Method, eps: float = 1e-6, read_at: str | None = None) -> str:
    """The name of everything but the tokens' relevance in one share (an account not split): by what
    the method's rules let absorb — ``bias+norm`` (CP-LRP, whose softmax rule conserves),
    ``bias+norm+softmax`` (AttnLRP), ``baseline+steps`` (integrated gradients), ``rules`` (the plain
    gradient, ε-LRP, or an LRP method read elsewhere than at the embedding sum)."""
    if spec.kind == "integrated_gradients":
        return "baseline+steps"
    if not spec.is_lrp or (read_at or spec.read_at) != "embedding_sum":
        return "rules"
    return "bias+norm+softmax" if spec.rules(eps).attention == "attnlrp" else "bias+norm"
