"""Token attributions for BERT-family classifiers: :func:`attribute` and its methods.

Every gradient-based method is ONE forward and ONE backward pass (integrated gradients: its steps
in one batched pass, or chunks of it). Relevance is read at the embedding sum e (word + position +
token type — the input of the embedding LayerNorm) and summed over hidden units:
``score_t = Σ_h e_th · g_th`` where g is the (modified) gradient of the target logit. For the LRP
methods Σ_t score_t is the relevance that reached the input (:attr:`Attribution.conservation`).

Methods (names are a contract):

``gradient``              Gradient Sensitivity: ‖∂ logit / ∂ e_t‖₂ (Wu & Ong 2021, GS)
``grad_x_input``          Gradient × Input: Σ_h e ⊙ ∂ logit / ∂ e (Wu & Ong 2021, GI)
``lrp_epsilon``           ε-rule on linear layers, plain gradient elsewhere (the naive baseline)
``attnlrp``               AttnLRP (Achtibat et al., ICML 2024)
``cp_lrp``                Conservative propagation (Ali et al., ICML 2022)
``lat``                   Layerwise Attention Tracing (Wu & Ong 2021): per-head attention chained
                          from [CLS] down the layers, summed over heads
``integrated_gradients``  Sundararajan et al. 2017, at the embedding sum, midpoint Riemann sum
``rollout``               Attention rollout (Abnar & Zuidema 2020)
``random``                uniform noise, the control of deletion experiments
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from lrp_kernels.errors import InputError
from lrp_kernels.models.bert import BertClassifier
from lrp_kernels.rules import GRADIENT, lrp_rules

METHODS = (
    "gradient",
    "grad_x_input",
    "lrp_epsilon",
    "attnlrp",
    "cp_lrp",
    "lat",
    "integrated_gradients",
    "rollout",
    "random",
)
LRP_METHODS = ("lrp_epsilon", "attnlrp", "cp_lrp")
IG_BASELINES = ("pad", "zero")

_converted: "weakref.WeakKeyDictionary[torch.nn.Module, BertClassifier]" = weakref.WeakKeyDictionary()


@dataclass
class Attribution:
    """The result of :func:`attribute`.

    ``scores`` [batch, seq] float32 (0 at padding), ``logits`` [batch, labels] float32,
    ``target`` [batch] int64, ``method`` the method's name.
    """

    scores: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor
    method: str

    @property
    def target_logit(self) -> torch.Tensor:
        return self.logits.gather(1, self.target[:, None])[:, 0]

    @property
    def conservation(self) -> torch.Tensor:
        """Σ scores / target logit per example (1 = all of the logit reached the input)."""
        return self.scores.sum(dim=-1) / self.target_logit

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)


def as_lrp_model(model) -> BertClassifier:
    """Our :class:`BertClassifier` for ``model``; a ``transformers`` model is converted once (cached),
    sharing its parameters."""
    if isinstance(model, BertClassifier):
        return model
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise InputError(f"expected a lrp_kernels BertClassifier or a transformers model, got {type(model).__name__}")
    converted = _converted.get(model)
    if converted is None:
        from lrp_kernels.models.loading import from_hf

        converted = from_hf(model)
        _converted[model] = converted
    return converted


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


def _check_inputs(model: BertClassifier, input_ids, attention_mask, token_type_ids):
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
    return input_ids, attention_mask, token_type_ids


def _resolve_target(target, logits: torch.Tensor) -> torch.Tensor:
    batch, n_labels = logits.shape
    if target is None:
        return logits.argmax(dim=-1)
    if isinstance(target, int) and not isinstance(target, bool):
        target = torch.full((batch,), target, dtype=torch.long)
    else:
        target = torch.as_tensor(target, dtype=torch.long).reshape(-1)
        if target.numel() == 1:
            target = target.expand(batch)
        if target.numel() != batch:
            raise InputError(f"got {target.numel()} targets for a batch of {batch}")
    bad = (target < 0) | (target >= n_labels)
    if bad.any():
        raise InputError(f"target {int(target[bad][0])} out of range: the model has {n_labels} labels (0..{n_labels - 1})")
    return target.to(logits.device)


def _gradient_pass(model, embedding_sum, attention_mask, rules, backend, target):
    """One forward from the embedding sum and one backward of the target logit → (g, logits, target)."""
    e = embedding_sum.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model.forward_from_embeddings(e, attention_mask, rules, backend)
        target = _resolve_target(target, logits.detach())
        selected = logits.gather(1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(selected, e)
    return grad, logits.detach(), target


def _baseline(model: BertClassifier, input_ids, token_type_ids, baseline) -> torch.Tensor:
    if torch.is_tensor(baseline):
        return baseline
    if baseline == "zero":  # no word at all; positions and token types stay (LayerNorm makes e = 0 degenerate)
        return model.embed(input_ids, token_type_ids) - model.backbone.embeddings.word_embeddings(input_ids)
    if baseline == "pad":
        pad_ids = torch.full_like(input_ids, model.config.pad_token_id)
        e_pad = model.embed(pad_ids, token_type_ids)
        if model.config.family == "roberta":  # keep the real positions: only the words are removed
            emb = model.backbone.embeddings
            e_pad = e_pad - emb.position_embeddings(model.position_ids(pad_ids)) + emb.position_embeddings(
                model.position_ids(input_ids)
            )
        return e_pad
    raise InputError(f"unknown integrated-gradients baseline {baseline!r}; valid: {', '.join(IG_BASELINES)} or a tensor")


def _integrated_gradients(model, e, attention_mask, backend, target, steps, baseline, internal_batch_size):
    """Midpoint-rule IG at the embedding sum; all steps of all examples batched in chunks."""
    if steps < 1:
        raise InputError(f"ig_steps must be >= 1, got {steps}")
    with torch.no_grad():
        logits = model.forward_from_embeddings(e, attention_mask)
    target = _resolve_target(target, logits)
    base = baseline.to(e.dtype).expand_as(e)
    batch = e.shape[0]
    alphas = (torch.arange(steps, device=e.device, dtype=torch.float32) + 0.5) / steps
    total = torch.zeros(e.shape, dtype=torch.float32, device=e.device)
    per_chunk = max(1, internal_batch_size // batch)
    for start in range(0, steps, per_chunk):
        a = alphas[start : start + per_chunk].to(e.dtype)[:, None, None, None]
        path = (base + a * (e - base)).reshape(-1, *e.shape[1:])
        n = a.shape[0]
        grad, _, _ = _gradient_pass(
            model, path, attention_mask.repeat(n, 1), GRADIENT, backend, target.repeat(n)
        )
        total += grad.float().reshape(n, *e.shape).sum(dim=0)
    scores = ((e - base).float() * total / steps).sum(dim=-1)
    return scores, logits, target


def _attention_maps(model, e, attention_mask):
    with torch.no_grad():
        logits, attentions = model.forward_from_embeddings(e, attention_mask, output_attentions=True)
    return logits, [a.float() for a in attentions]


def _lat(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Layerwise attention tracing: a_h ← a_h · P_h for l = last … first, from [CLS]; Σ over heads."""
    batch, heads, length, _ = attentions[0].shape
    a = torch.zeros(batch, heads, 1, length, device=attentions[0].device)
    a[..., 0] = 1.0
    for probs in reversed(attentions):
        a = torch.matmul(a, probs)
    return a[:, :, 0].sum(dim=1)


def _rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout: Â = ½(mean_h P + I) row-normalized; Â_L ⋯ Â_1; the [CLS] row."""
    length = attentions[0].shape[-1]
    eye = torch.eye(length, device=attentions[0].device)
    joint = None
    for probs in attentions:
        a = 0.5 * (probs.mean(dim=1) + eye)
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else torch.matmul(a, joint)
    return joint[:, 0]


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
    ig_steps: int = 32,
    ig_baseline="pad",
    ig_batch_size: int = 256,
    seed: int = 0,
) -> Attribution:
    """Token attributions of ``method`` for a batch.

    ``model``: a :class:`~lrp_kernels.models.BertClassifier` or a ``transformers`` BERT/RoBERTa
    sequence classifier (converted once, parameters shared). ``target``: None (the predicted class),
    an int, or one per example. ``eps``: the ε of the LRP rules. ``backend``: ``auto`` / ``torch`` /
    ``cpp`` / ``cuda`` / ``triton`` (None = the global setting). Integrated gradients takes
    ``ig_steps``, ``ig_baseline`` (``"pad"``: [PAD] words at the same positions; ``"zero"``: a zero word
    embedding, positions and token types kept — the embedding sum itself cannot be 0, as the
    LayerNorm after it is scale-invariant; or a tensor broadcastable to the embedding sum) and ``ig_batch_size`` (examples per chunk).
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    model = as_lrp_model(model)
    input_ids, attention_mask, token_type_ids = _check_inputs(model, input_ids, attention_mask, token_type_ids)
    valid = attention_mask.bool()

    with frozen(model), torch.no_grad():
        e = model.embed(input_ids, token_type_ids)
        if method in ("gradient", "grad_x_input") or method in LRP_METHODS:
            rules = GRADIENT if method in ("gradient", "grad_x_input") else lrp_rules(method, eps)
            grad, logits, target = _gradient_pass(model, e, attention_mask, rules, backend, target)
            if method == "gradient":
                scores = grad.float().norm(dim=-1)
            else:
                scores = (e.float() * grad.float()).sum(dim=-1)
        elif method == "integrated_gradients":
            base = _baseline(model, input_ids, token_type_ids, ig_baseline)
            scores, logits, target = _integrated_gradients(
                model, e, attention_mask, backend, target, ig_steps, base, ig_batch_size
            )
        elif method in ("lat", "rollout"):
            logits, attentions = _attention_maps(model, e, attention_mask)
            target = _resolve_target(target, logits)
            scores = _lat(attentions) if method == "lat" else _rollout(attentions)
        else:  # random
            with torch.no_grad():
                logits = model.forward_from_embeddings(e, attention_mask)
            target = _resolve_target(target, logits)
            generator = torch.Generator().manual_seed(seed)
            scores = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
    scores = torch.where(valid, scores.float(), torch.zeros((), device=scores.device))
    return Attribution(scores=scores, logits=logits.float(), target=target, method=method)
