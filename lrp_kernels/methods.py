"""The attribution methods, as a registry: each is one :class:`Method` — its name, its kind, its
paper and where it reads its scores. :func:`lrp_kernels.attribution.attribute` looks the method up
and runs its kind; every list of methods in the package (CLI, evaluation, demo) is this registry.

Kinds:

``gradient``               one forward and one backward under a rule set; the score of token t is
                           Σ_h x_th · g_th at the method's read-out point (or ‖g_t‖ for Gradient
                           Sensitivity)
``integrated_gradients``   the plain gradient along a straight path, steps batched
``attention``              no backward: a function of the attention maps of a plain forward
``control``                no model signal (the random control of deletion experiments)

Read-out points (where x and g are taken, see ``read_at`` of ``attribute``):

``embedding_sum``      e = word + position (+ token type), the input of the embedding norm
``embedding_output``   h⁰, the output of the embedding norm (the seed paper's BERT scores here)
``word_embeddings``    the word embeddings alone (Captum's InputXGradient on ``inputs_embeds``,
                       LXT's documented score); g is the gradient at e, as e = w + p + t

A decoder has no embedding norm: ``embedding_sum`` and ``embedding_output`` are both the input of its
first block (the token embeddings, × √hidden for Gemma, + the learned positions for GPT-2), and
``word_embeddings`` its token term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from lrp_kernels.errors import InputError, did_you_mean
from lrp_kernels.rules import GRADIENT, Rules, lrp_rules

KINDS = ("gradient", "integrated_gradients", "attention", "control")
READ_OUT_POINTS = ("embedding_sum", "embedding_output", "word_embeddings")


def _one_hot_rows(rows: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor:
    """[B, L] one-hot of the position the head reads per example (None: the first, [CLS])."""
    rows = torch.zeros(batch, dtype=torch.long, device=device) if rows is None else rows.to(device)
    return torch.nn.functional.one_hot(rows, length).float()


def lat(attentions: Sequence[torch.Tensor], rows: torch.Tensor | None = None) -> torch.Tensor:
    """Layerwise attention tracing: a_h ← a_h · P_h for l = last … first, from the token the head
    reads (``rows`` [B]; None: [CLS]); Σ over heads."""
    batch, heads, length, _ = attentions[0].shape
    a = _one_hot_rows(rows, batch, length, attentions[0].device)[:, None, None, :].expand(batch, heads, 1, length)
    for probs in reversed(attentions):
        a = torch.matmul(a, probs)
    return a[:, :, 0].sum(dim=1)


def rollout(attentions: Sequence[torch.Tensor], rows: torch.Tensor | None = None) -> torch.Tensor:
    """Attention rollout: Â = ½(mean_h P + I) row-normalized; Â_L ⋯ Â_1; the row of the token the
    head reads (``rows`` [B]; None: [CLS])."""
    length = attentions[0].shape[-1]
    eye = torch.eye(length, device=attentions[0].device)
    joint = None
    for probs in attentions:
        a = 0.5 * (probs.mean(dim=1) + eye)
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else torch.matmul(a, joint)
    if rows is None:
        return joint[:, 0]
    return joint[torch.arange(joint.shape[0], device=joint.device), rows.to(joint.device)]


@dataclass(frozen=True)
class Method:
    """One attribution method."""

    name: str
    kind: str
    summary: str
    reference: str
    #: the read-out point of ``gradient`` and ``integrated_gradients`` methods
    read_at: Optional[str] = None
    #: ``"gradient"`` or a rule set of :func:`lrp_kernels.rules.lrp_rules` (``gradient`` kind)
    rule_set: Optional[str] = None
    #: score ‖g_t‖₂ instead of Σ_h x·g (Gradient Sensitivity)
    norm: bool = False
    #: (attention maps, the position the head reads per example) -> [batch, seq] scores (``attention`` kind)
    from_attentions: Optional[Callable[[Sequence[torch.Tensor], torch.Tensor], torch.Tensor]] = None

    def rules(self, eps: float) -> Rules:
        return GRADIENT if self.rule_set == "gradient" else lrp_rules(self.rule_set, eps)

    @property
    def depends_on_target(self) -> bool:
        """Whether the scores depend on the explained class (and so take ``contrast`` and differ per
        class under ``target="all"``): gradient and integrated-gradients methods."""
        return self.kind in ("gradient", "integrated_gradients")

    @property
    def is_lrp(self) -> bool:
        return self.rule_set not in (None, "gradient")


_METHODS = (
    # Methods that take the PLAIN gradient through the embedding norm read after it: the norm is
    # scale-invariant per token, so e_t · ∂f/∂e_t = 0 for every token t at its input.
    Method("gradient", "gradient", "Gradient Sensitivity: ‖∂logit/∂x_t‖₂ per token", "Wu & Ong 2021 (GS)",
           read_at="embedding_output", rule_set="gradient", norm=True),
    Method("grad_x_input", "gradient", "Gradient × Input", "Wu & Ong 2021 (GI)",
           read_at="embedding_output", rule_set="gradient"),
    Method("lrp_epsilon", "gradient", "ε-rule on linear layers, plain gradient elsewhere (the naive baseline)",
           "Bach et al. 2015", read_at="embedding_output", rule_set="lrp_epsilon"),
    # The LRP rules hold the norm's σ constant: nothing is lost there, and the relevance that reached
    # the input is measured at the embedding sum.
    Method("attnlrp", "gradient", "AttnLRP: ε-rule, identity rule for norms and activations, uniform rule on "
           "Q·Kᵀ and P·V", "Achtibat et al., ICML 2024", read_at="embedding_sum", rule_set="attnlrp"),
    Method("cp_lrp", "gradient", "CP-LRP: as AttnLRP, attention probabilities held constant",
           "Ali et al., ICML 2022", read_at="embedding_sum", rule_set="cp_lrp"),
    Method("lat", "attention", "Layerwise Attention Tracing: per-head attention chained from [CLS] down "
           "the layers, summed over heads", "Wu & Ong 2021", from_attentions=lat),
    Method("integrated_gradients", "integrated_gradients", "Integrated Gradients, midpoint Riemann sum, steps "
           "batched", "Sundararajan et al. 2017", read_at="embedding_sum"),
    Method("rollout", "attention", "Attention rollout", "Abnar & Zuidema 2020", from_attentions=rollout),
    Method("random", "control", "uniform noise, the control of deletion experiments", "—"),
)

REGISTRY: dict[str, Method] = {m.name: m for m in _METHODS}
#: every method name, in the registry's order (a contract: CLI and reports list them so)
METHODS: tuple[str, ...] = tuple(REGISTRY)
#: the LRP methods (a rule set other than the plain gradient)
LRP_METHODS: tuple[str, ...] = tuple(m.name for m in _METHODS if m.is_lrp)


def get_method(name: str) -> Method:
    """The registered method ``name``; :class:`InputError` listing the valid ones otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown method {name!r}{did_you_mean(name, METHODS)}; valid methods: {', '.join(METHODS)}") \
            from None
