"""Relevance per layer, from the one backward of :func:`lrp_kernels.attribute` (``layers=True``).

In the gradient×input form the relevance of any tensor x is R(x) = Σ x ⊙ g, g the (modified)
gradient at x. The forward records a :class:`~lrp_kernels.models.blocks.Ledger`: the **points** of
the residual stream — the embedding sum, the input of every block (``layer.<i>``) and the encoder's
output — and every linear, norm, activation and attention op with its inputs (each its own view)
and output. Hooks on those tensors reduce x ⊙ g as the backward reaches them, so nothing is kept
but sums and nothing runs twice.

Between two points lies a **stage** (``embeddings``: the embedding norm; ``layer.<i>``: block i;
``head``: pooler/classifier, from the encoder's output to the explained logit). Additions, views,
head splits and the [CLS] slice pass relevance on exactly, so everything a stage loses is lost in
its ops: for each op, R(output) − Σ R(inputs) is the share its rule **absorbs**, by kind —

``bias``        linear layers: their biases and the ε of the ε-rule, Σ_j b_j s_j + Σ_j z_j (g_j − s_j)
``norm``        normalizations: the shift β under the LRP rules (σ held constant); under the plain
                gradient all a LayerNorm's input loses (its scale invariance)
``softmax``     attention: the softmax rule of AttnLRP (its Taylor remainder); 0 for CP-LRP
``activation``  element-wise activations: 0 under the identity rule (the plain gradient loses some);
                and the gate of a gated MLP (ModernBERT's GeGLU, EuroBERT's SwiGLU), u = act(a)·b, under
                the plain rules (``gradient``, ``grad_x_input``, ``lrp_epsilon``): recorded as an op of
                inputs act(a), b and output u. x·g counts a product's relevance once in each factor —
                R(act(a)) = R(b) = R(u) —, so the gate absorbs −R(u): relevance made, not lost. (Under
                the LRP rules the whole gated MLP is one ``bias`` op; its uniform split conserves.)
``other``       the stage's loss that no recorded op explains: 0 up to fp32 rounding — below 1e-4 of
                the largest relevance in the example's books — for every shipped family and every
                gradient method (``tests/test_layer_relevance.py`` checks each pair); an op of a family
                that does not go through the pass would show here

Ops whose output does not depend on the input — DeBERTa's relative-position table, its norm and
projections — carry none of the tokens' relevance and are not recorded; what leaves the tokens for
them is absorbed by the attention that reads them (``softmax``; see ``position_relevance``).

so that for every stage k:  R(point k) = R(point k+1) − Σ absorbed[k]  (with R(point after the
last) = the explained logit), and R(point k) + Σ_{j ≥ k} absorbed[j] = the explained logit. For
CP-LRP with every bias zeroed and ε = 0 every point carries the whole logit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

KINDS = ("bias", "norm", "softmax", "activation", "other")


def dot_relevance(x: torch.Tensor, grad: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Σ x ⊙ g over ``dim``, float32: accumulated in float32 — in float64 for float64 tensors, so that
    a float64 model's relevance is rounded once, after the sum (rounding each product to float32
    first costs ~6e-8 of Σ|x ⊙ g|, which cancellation over the hidden units can make far more than
    6e-8 of the result)."""
    dtype = torch.promote_types(torch.promote_types(x.dtype, grad.dtype), torch.float32)
    return (x.to(dtype) * grad.to(dtype)).sum(dim=dim).float()


@dataclass
class LayerRelevance:
    """Relevance at every point of the residual stream and what each stage absorbs.

    ``points``: ``embedding_sum``, ``layer.0`` … ``layer.<n-1>``, ``encoder_output``; ``relevance``
    [*lead, points, seq] (Σ over hidden units per token; 0 at padding; the encoder output carries
    relevance at the tokens the head reads, e.g. [CLS] only); ``stages`` the names of what lies
    after each point (``embeddings``, ``layer.<i>``, ``head``); ``absorbed`` [*lead, stages, kinds];
    ``logit`` [*lead] the explained logit (or logit difference). ``*lead`` is [batch] or, with
    ``target="all"`` or labels selected per example (a multi-label ``target=None``), [batch, labels]
    (zeros for a label not selected).
    """

    points: tuple[str, ...]
    relevance: torch.Tensor
    stages: tuple[str, ...]
    absorbed: torch.Tensor
    logit: torch.Tensor
    kinds: tuple[str, ...] = KINDS

    @property
    def totals(self) -> torch.Tensor:
        """Σ relevance over tokens at every point, [*lead, points]."""
        return self.relevance.sum(dim=-1)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor], seq_fn: Callable | None = None) -> "LayerRelevance":
        """The same record with ``fn`` applied to every tensor's leading dimensions (``seq_fn``, if
        given, instead to ``relevance``)."""
        return replace(self, relevance=(seq_fn or fn)(self.relevance), absorbed=fn(self.absorbed), logit=fn(self.logit))

    def table(self, *index: int) -> list[dict]:
        """One row per point of example ``index`` (``index, label`` with ``target="all"``): the
        point, its total relevance and what the stage after it absorbs, by kind."""
        totals, absorbed = self.totals[index], self.absorbed[index]
        rows = []
        for k, point in enumerate(self.points):
            row = {"point": point, "relevance": float(totals[k]), "stage": self.stages[k]}
            row.update({kind: float(absorbed[k, j]) for j, kind in enumerate(self.kinds)})
            rows.append(row)
        rows.append({"point": "logit", "relevance": float(self.logit[index]), "stage": ""})
        return rows


class LedgerHooks:
    """Gradient hooks on every tensor of a ledger: each stores Σ over the last dimension of x ⊙ g."""

    def __init__(self, ledger):
        self.sums: dict[int, torch.Tensor] = {}
        tensors = [x for _, x in ledger.points[1:]]
        for _, _, inputs, output in ledger.ops:
            tensors += [*inputs, output]
        seen = set()
        for x in tensors:
            if id(x) not in seen and x.requires_grad:  # else no relevance reaches it: R = 0
                seen.add(id(x))
                x.register_hook(self._hook(id(x), x.detach()))

    def _hook(self, key: int, x: torch.Tensor):
        def hook(grad):
            if grad is not None:  # None: no relevance flows here (Q and K under CP-LRP)
                self.sums[key] = dot_relevance(x, grad)

        return hook

    def per_token(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, seq] for a point (zeros when no gradient reached it)."""
        s = self.sums.get(id(x))
        return torch.zeros(x.shape[:-1], device=x.device) if s is None else s

    def total(self, x: torch.Tensor) -> torch.Tensor:
        """[rows]: Σ x ⊙ g over everything but the batch dimension."""
        s = self.sums.get(id(x))
        return torch.zeros(x.shape[0], device=x.device) if s is None else s.reshape(x.shape[0], -1).sum(dim=-1)


def _stage_name(point: str, k: int) -> str:
    return "embeddings" if k == 0 else ("head" if point == "encoder_output" else point)


def account(ledger, hooks: LedgerHooks, grad_e: torch.Tensor, grad_outputs: torch.Tensor, logits: torch.Tensor,
            attention_mask: torch.Tensor) -> LayerRelevance:
    """The :class:`LayerRelevance` of one backward (rows of the packed batch lead)."""
    (_, e), *rest = ledger.points
    per_token = [dot_relevance(e.detach(), grad_e)] + [hooks.per_token(x) for _, x in rest]
    relevance = torch.stack(per_token, dim=1) * attention_mask[:, None, :].to(torch.float32)
    totals = torch.stack([t.sum(dim=-1) for t in per_token], dim=1)
    logit = dot_relevance(logits.detach(), grad_outputs)
    outputs = torch.cat([totals[:, 1:], logit[:, None]], dim=1)
    absorbed = torch.zeros(*totals.shape, len(KINDS), device=totals.device)
    for stage, kind, inputs, output in ledger.ops:
        absorbed[:, stage, KINDS.index(kind)] += hooks.total(output) - sum(hooks.total(x) for x in inputs)
    absorbed[..., KINDS.index("other")] = outputs - totals - absorbed.sum(dim=-1)
    points = tuple(name for name, _ in ledger.points)
    stages = tuple(_stage_name(p, k) for k, p in enumerate(points))
    return LayerRelevance(points, relevance, stages, absorbed, logit)
