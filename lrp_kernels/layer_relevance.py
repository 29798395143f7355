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

    def table(self, *index: int) -> "LayerTable":
        """One row per point of example ``index`` (``index, label`` with ``target="all"``): the
        point, its total relevance and what the stage after it absorbs, by kind — a list of dicts
        that prints (and renders in Jupyter) as a table."""
        totals, absorbed = self.totals[index], self.absorbed[index]
        rows = LayerTable(kinds=self.kinds)
        for k, point in enumerate(self.points):
            row = {"point": point, "relevance": float(totals[k]), "stage": self.stages[k]}
            row.update({kind: float(absorbed[k, j]) for j, kind in enumerate(self.kinds)})
            rows.append(row)
        rows.append({"point": "logit", "relevance": float(self.logit[index]), "stage": ""})
        return rows


class LayerTable(list):
    """The rows of :meth:`LayerRelevance.table` (dicts: ``point``, ``relevance``, ``stage`` and one
    value per kind), shown as a table by ``print``, the REPL and Jupyter."""

    def __init__(self, rows=(), kinds: tuple[str, ...] = KINDS):
        super().__init__(rows)
        self.kinds = kinds

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        """The header and the rows as text; a share below 1e-4 of the largest relevance is "0" (fp32 rounding)."""
        scale = max((abs(row["relevance"]) for row in self), default=0.0)

        def number(value: float) -> str:
            return "0" if abs(value) < 1e-4 * scale else f"{value:.4g}"

        header = ["point", "Σ relevance", "then absorbed by", *self.kinds]
        body = [[row["point"], f"{row['relevance']:.4g}", row["stage"],
                 *("" if kind not in row else number(row[kind]) for kind in self.kinds)] for row in self]
        return header, body

    def __str__(self) -> str:
        header, body = self._cells()
        widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
        lines = ["  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip()
                 for r in [header, *body]]
        note = ("Σ relevance at each point (the embedding sum, each block's input, the encoder's output) and what\n"
                "the stage after it absorbs, by kind; each row's Σ plus all absorbed from it on is the logit")
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], note])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        header, body = self._cells()
        cell = '<{0} style="padding:0.1em 0.5em;text-align:{1}">{2}</{0}>'
        rows = ["<tr>" + "".join(cell.format(tag, "left" if j < 3 else "right", html.escape(c))
                                 for j, c in enumerate(r)) + "</tr>"
                for tag, r in [("th", header)] + [("td", r) for r in body]]
        return f'<table style="border-collapse:collapse;font-size:0.85em">{"".join(rows)}</table>'


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


def absorbed_by_kind(ledger, hooks: LedgerHooks, rows: int, device) -> dict[str, torch.Tensor]:
    """What the recorded ops of each kind absorb in all, per row ([rows] each): a partial ledger's
    account (:class:`~lrp_kernels.models.blocks.Ledger` with ``kinds``), without points or stages."""
    out: dict[str, torch.Tensor] = {}
    for _, kind, inputs, output in ledger.ops:
        share = hooks.total(output) - sum(hooks.total(x) for x in inputs)
        out[kind] = out.get(kind, torch.zeros(rows, device=device)) + share
    return out


# ---------------------------------------------------------------------------------------- the account
#: Why Σ relevance is not the explained logit, in one sentence (every page that shows an account says it)
ACCOUNT_NOTE = ("Σ relevance is the explained logit minus what the rules keep on the way down: biases (with the ε "
                "of the ε-rule) and the norms' shifts β keep their share, AttnLRP's softmax rule keeps its Taylor "
                "remainder, and plain gradients are not conservative at all; CP-LRP passes the whole logit to "
                "the tokens only when every bias is zero and ε = 0.")

#: the shares of an account (:attr:`lrp_kernels.attribution.Attribution.shares`) in words
SHARE_WORDS = {
    "bias": "biases (with ε)",
    "norm": "norm shifts",
    "softmax": "the softmax rule",
    "activation": "activations",
    "other": "ops not recorded",
    "bias+norm": "biases and norm shifts",
    "bias+norm+softmax": "biases, norm shifts and the softmax rule",
    "positions": "the relative positions",
    "rules": "biases, norms, attention and activations",
    "baseline+steps": "the baseline's logit and the Riemann sum's error",
    "baseline": "the baseline's logit",
    "steps": "the Riemann sum's error",
}


def _g(value: float) -> str:
    return f"{value:.3g}".replace("-", "−")


def account_text(relevance: float, logit: float, shares: dict[str, float], scale: float | None = None) -> str:
    """"Σ relevance 5.19 = logit 1.67 + 3.52 from biases and norm shifts − 0.3 absorbed by the
    softmax rule": Σ relevance = logit − Σ shares, each share in words (:data:`SHARE_WORDS`); shares
    below 1e-4 of ``scale`` (default: the largest of |logit|, |Σ relevance|) are left out (rounding)."""
    scale = max(abs(logit), abs(relevance)) if scale is None else scale
    text = f"Σ relevance {_g(relevance)} = logit {_g(logit)}"
    for name, value in shares.items():
        words = SHARE_WORDS.get(name, name)
        if name == "baseline":  # a term of the equation, not a share something absorbs
            text += f" − {words} {_g(value)}"
        elif abs(value) < 1e-4 * scale:
            continue
        elif name in ("steps", "baseline+steps"):
            text += f" {'−' if value >= 0 else '+'} {_g(abs(value))} ({words})"
        elif value >= 0:
            text += f" − {_g(value)} absorbed by {words}"
        else:
            text += f" + {_g(-value)} from {words}"
    return text
