"""Token attributions: :func:`attribute` looks a method up in :mod:`lrp_kernels.methods` and runs its kind.

Every gradient-kind method is ONE forward and ONE backward pass (integrated gradients: its steps in
one batched pass, or chunks of it). The score of token t is ``Σ_h x_th · g_th`` at the method's
read-out point, g the (modified) gradient of the target logit; for the LRP methods, read at the
embedding sum, Σ_t score_t is the relevance that reached the input (:attr:`Attribution.conservation`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from lrp_kernels.backends.registry import resolve
from lrp_kernels.errors import InputError
from lrp_kernels.methods import LRP_METHODS, METHODS, READ_OUT_POINTS, Method, get_method
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import POSITIONS
from lrp_kernels.models.loading import as_lrp_model
from lrp_kernels.rules import GRADIENT

IG_BASELINES = ("pad", "zero")

__all__ = ["Attribution", "IG_BASELINES", "LRP_METHODS", "METHODS", "as_lrp_model", "attribute"]


@dataclass
class Attribution:
    """The result of :func:`attribute`.

    ``scores`` [batch, seq] float32 (0 at padding), ``logits`` [batch, labels] float32,
    ``target`` [batch] int64, ``method`` the method's name, ``read_at`` where its scores were read.
    ``position_relevance`` [batch] float32: the relevance that left the tokens for position inputs the
    batch shares (DeBERTa's relative-position embeddings, read at their table, the input of their
    norm), reported by the LRP methods that hold norms constant (attnlrp, cp_lrp) for families that
    have such inputs; None otherwise.
    """

    scores: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor
    method: str
    read_at: str | None = None
    position_relevance: torch.Tensor | None = None

    @property
    def target_logit(self) -> torch.Tensor:
        return self.logits.gather(1, self.target[:, None])[:, 0]

    @property
    def conservation(self) -> torch.Tensor:
        """(Σ scores + position relevance) / target logit per example (1 = all of the logit reached the input)."""
        total = self.scores.sum(dim=-1)
        if self.position_relevance is not None:
            total = total + self.position_relevance
        return total / self.target_logit

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)


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


def _right_padded(batch: _Batch) -> tuple[_Batch, torch.Tensor | None]:
    """The batch with each sequence's tokens first (left padding or holes re-packed), and the
    per-row order used (None when the batch already was right-padded)."""
    keep = batch.attention_mask.bool()
    if not (keep[:, 1:] & ~keep[:, :-1]).any():
        return batch, None
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    types = None if batch.token_type_ids is None else batch.token_type_ids.gather(1, order)
    return _Batch(batch.input_ids.gather(1, order), batch.attention_mask.gather(1, order), types), order


def check_targets(target, batch: int, n_labels: int) -> torch.Tensor | None:
    """``target`` as [batch] int64 class indices on the CPU, or None (the predicted class).

    Accepts an int (numpy and 0-d torch integers too) for every example, or one per example (a
    list, array or tensor); integral floats are taken, anything else is an :class:`InputError`."""
    if target is None:
        return None
    try:
        t = torch.as_tensor(target).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"target must be class indices (int or one per example), got {target!r}") from None
    if t.dtype == torch.bool or t.is_complex():
        raise InputError(f"target must be class indices, got {target!r}")
    if t.is_floating_point():
        bad = t[t != t.round()]
        if bad.numel():
            raise InputError(f"target must be integral class indices, got {bad.reshape(-1)[0].item():g}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise InputError(f"got {t.numel()} targets for a batch of {batch}")
    bad = (t < 0) | (t >= n_labels)
    if bad.any():
        raise InputError(f"target {int(t[bad][0])} out of range: the model has {n_labels} labels (0..{n_labels - 1})")
    return t


def resolve_target(target, logits: torch.Tensor) -> torch.Tensor:
    """[batch] int64 targets on the logits' device: the predicted class when ``target`` is None."""
    checked = check_targets(target, *logits.shape)
    return logits.argmax(dim=-1) if checked is None else checked.to(logits.device)


def _backward_at(model, e, attention_mask, rules, backend, target, read_at, positions=False):
    """One forward from the embedding sum and one backward of the target logit.

    Returns ``(x, g, logits, target, position)`` with x the tensor at ``read_at``, g the gradient
    there and ``position`` the relevance of the shared position inputs when ``positions`` was asked
    for and the family has them (else None)."""
    taps = (("embedding_output",) if read_at == "embedding_output" else ()) + ((POSITIONS,) if positions else ())
    e = e.detach().requires_grad_(True)
    with torch.enable_grad():
        logits, p = model.run(e, attention_mask, rules, backend, taps=taps)
        target = resolve_target(target, logits.detach())
        selected = logits.gather(1, target[:, None]).sum()
        x = p.tapped[read_at] if read_at == "embedding_output" else e
        views = [view for view, _ in p.position_terms]
        grad, *grads = torch.autograd.grad(selected, [x, *views], allow_unused=True)
    return x.detach(), grad, logits.detach(), target, _position_relevance(p.position_terms, grads)


def _position_relevance(terms, grads) -> torch.Tensor | None:
    """Σ share ⊙ g per example over every recorded position input (a term no relevance reached adds 0)."""
    if not terms:
        return None
    total = torch.zeros(terms[0][0].shape[0], dtype=torch.float32, device=terms[0][0].device)
    for (_, share), grad in zip(terms, grads):
        if grad is not None:
            total += (share.float() * grad.float()).flatten(1).sum(dim=1)
    return total


def _gradient_method(method: Method, model, e, batch: _Batch, *, target, eps, backend, read_at, **_):
    rules = method.rules(eps)
    positions = method.is_lrp and rules.layer_norm == "identity"
    x, grad, logits, target, position = _backward_at(model, e, batch.attention_mask, rules, backend, target,
                                                     read_at, positions)
    if method.norm:
        return grad.float().norm(dim=-1), logits, target, None
    if read_at == "word_embeddings":  # e = w + p + t: the gradient at w is the gradient at e
        x = model.word_embeddings(batch.input_ids)
    return (x.float() * grad.float()).sum(dim=-1), logits, target, position


def _baseline(model: EncoderClassifier, batch: _Batch, baseline) -> torch.Tensor:
    if torch.is_tensor(baseline):
        return baseline
    ids, types = batch.input_ids, batch.token_type_ids
    if baseline == "zero":  # no word at all; positions and token types stay (LayerNorm makes e = 0 degenerate)
        return model.embed(ids, types) - model.word_embeddings(ids)
    if baseline == "pad":  # [PAD] words at the real positions
        pad_ids = torch.full_like(ids, model.config.pad_token_id)
        return model.embed(pad_ids, types, position_ids=model.position_ids(ids))
    raise InputError(f"unknown integrated-gradients baseline {baseline!r}; valid: {', '.join(IG_BASELINES)} or a tensor")


def _integrated_gradients(method: Method, model, e, batch: _Batch, *, target, backend, ig_steps, ig_baseline,
                          ig_batch_size, **_):
    """Midpoint-rule IG at the embedding sum; all steps of all examples batched in chunks."""
    if ig_steps < 1:
        raise InputError(f"ig_steps must be >= 1, got {ig_steps}")
    mask = batch.attention_mask
    with torch.no_grad():
        logits = model.forward_from_embeddings(e, mask)
    target = resolve_target(target, logits)
    base = _baseline(model, batch, ig_baseline).to(e.dtype).expand_as(e)
    alphas = (torch.arange(ig_steps, device=e.device, dtype=torch.float32) + 0.5) / ig_steps
    total = torch.zeros(e.shape, dtype=torch.float32, device=e.device)
    per_chunk = max(1, ig_batch_size // e.shape[0])
    for start in range(0, ig_steps, per_chunk):
        a = alphas[start : start + per_chunk].to(e.dtype)[:, None, None, None]
        path = (base + a * (e - base)).reshape(-1, *e.shape[1:])
        n = a.shape[0]
        grad = _backward_at(model, path, mask.repeat(n, 1), GRADIENT, backend, target.repeat(n), "embedding_sum")[1]
        total += grad.float().reshape(n, *e.shape).sum(dim=0)
    return ((e - base).float() * total / ig_steps).sum(dim=-1), logits, target, None


def _attention_method(method: Method, model, e, batch: _Batch, *, target, **_):
    with torch.no_grad():
        logits, attentions = model.forward_from_embeddings(e, batch.attention_mask, output_attentions=True)
    target = resolve_target(target, logits)
    return method.from_attentions([a.float() for a in attentions]), logits, target, None


def _control_method(method: Method, model, e, batch: _Batch, *, target, seed, **_):
    with torch.no_grad():
        logits = model.forward_from_embeddings(e, batch.attention_mask)
    target = resolve_target(target, logits)
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch.input_ids.shape, generator=generator).to(batch.input_ids.device), logits, target, None


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


def attribute(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    *,
    method: str = "attnlrp",
    target=None,
    eps: float = 1e-6,
    backend: str | None = None,
    read_at: str | None = None,
    ig_steps: int = 32,
    ig_baseline="pad",
    ig_batch_size: int = 256,
    seed: int = 0,
) -> Attribution:
    """Token attributions of ``method`` (see :mod:`lrp_kernels.methods`) for a batch.

    ``model``: an :class:`~lrp_kernels.models.EncoderClassifier` or a ``transformers`` sequence
    classifier of a supported family (converted once, parameters shared). ``target``: None (the
    predicted class), an int, or one per example. ``eps``: the ε of the LRP rules. ``backend``:
    ``auto`` / ``torch`` / ``cpp`` / ``cuda`` / ``triton`` (None = the global setting). ``read_at``:
    the read-out point of a gradient method (None: the method's own). Integrated gradients takes
    ``ig_steps``, ``ig_baseline`` (``"pad"``: [PAD] words at the same positions; ``"zero"``: a zero
    word embedding, positions and token types kept — the embedding sum itself cannot be 0, as the
    LayerNorm after it is scale-invariant; or a tensor broadcastable to the embedding sum) and
    ``ig_batch_size`` (examples per chunk). ``seed``: of the ``random`` control.
    """
    spec = get_method(method)
    read_at = _read_at(spec, read_at)
    model = as_lrp_model(model)
    # Inside torch.inference_mode() no backward is possible: leave it for the call (new tensors are
    # ordinary; the caller's inference tensors are only read).
    with torch.inference_mode(False), frozen(model), torch.no_grad():
        batch, order = _right_padded(_check_inputs(model, input_ids, attention_mask, token_type_ids))
        kernels = resolve(backend, batch.input_ids.device)
        if order is not None and torch.is_tensor(ig_baseline) and ig_baseline.dim() == 3 and ig_baseline.shape[0] > 1:
            ig_baseline = ig_baseline.gather(1, order[..., None].expand(-1, -1, ig_baseline.shape[-1]))
        e = model.embed(batch.input_ids, batch.token_type_ids)
        scores, logits, target, position = _KINDS[spec.kind](
            spec, model, e, batch, target=target, eps=eps, backend=kernels, read_at=read_at, ig_steps=ig_steps,
            ig_baseline=ig_baseline, ig_batch_size=ig_batch_size, seed=seed,
        )
        scores = torch.where(batch.attention_mask.bool(), scores.float(), torch.zeros((), device=scores.device))
        if order is not None:  # back to the caller's positions
            scores = torch.zeros_like(scores).scatter_(1, order, scores)
    return Attribution(scores=scores, logits=logits.float(), target=target, method=spec.name, read_at=read_at,
                       position_relevance=position)
