"""DeBERTa-v2/v3 and DeBERTa: ``DebertaV2ForSequenceClassification``, ``DebertaForSequenceClassification``
(He et al. 2021, 2023).

BERT's post-norm layers with disentangled attention: S = (Q Kᵀ + c2p + p2c)/√(d·(1 + #terms)),
c2p_ij = Q_i·K^r_δ(i,j), p2c_ij = K_j·Q^r_δ(i,j), where K^r / Q^r are the relative-position
embeddings (after their own LayerNorm with ``norm_rel_ebd = layer_norm``) projected by the content
key/query projections (``share_att_key``) or by their own, and δ(i, j) the log-bucketed relative
position. The embeddings are word (+ absolute position) (+ token type) → (embed_proj) →
LayerNorm → × attention mask; the head is the ContextPooler (dense → GELU on [CLS]) and a linear
classifier. Only the rows of the position table that a batch reads are projected.

DeBERTa (v1) is the same network with other parameters: one ``in_proj`` (no bias, Q/K/V interleaved
per head) plus ``q_bias`` and ``v_bias``, the position projections ``pos_proj`` (no bias) and
``pos_q_proj``, no position norm and no buckets; it differs only in how a layer makes Q, K, V and
which projection a relative term uses (:class:`DebertaV1Layer`).

Position relevance: the relevance that reaches the position embeddings through c2p and p2c
(``attnlrp``; none under ``cp_lrp``, whose P is constant) is collected per example by
:meth:`~lrp_kernels.models.blocks.Pass.positions` and reported next to the token scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import functools
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from lrp_kernels.errors import CheckpointError
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import (AttentionModules, DenseLayerNorm, Embeddings, Intermediate, Pooler,
                                       feed_forward_sublayer, input_share, merge_heads, post_norm, run_layers,
                                       split_heads)
from lrp_kernels.models.config import HIDDEN_ACTS, ModelConfig
from lrp_kernels.models.registry import family

TERMS = ("c2p", "p2c")


@dataclass
class DebertaV2Config(ModelConfig):
    model_type: str = "deberta-v2"
    type_vocab_size: int = 0
    layer_norm_eps: float = 1e-7
    relative_attention: bool = False
    max_relative_positions: int = -1
    position_buckets: int = -1
    pos_att_type: list = field(default_factory=list)
    share_att_key: bool = False
    norm_rel_ebd: str = "none"
    position_biased_input: bool = True
    embedding_size: int = 0
    attention_head_size: int = 0
    pooler_hidden_act: str = "gelu"

    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=128100, hidden_size=1536, num_hidden_layers=24,
                                              num_attention_heads=24, intermediate_size=6144)

    @classmethod
    def normalize(cls, raw: dict[str, Any]) -> dict[str, Any]:
        values = dict(raw)
        terms = raw.get("pos_att_type") or []
        if isinstance(terms, str):
            terms = terms.split("|")
        values["pos_att_type"] = [t.strip().lower() for t in terms if t.strip()]
        values["norm_rel_ebd"] = (raw.get("norm_rel_ebd") or "none").lower()
        values["share_att_key"] = bool(raw.get("share_att_key"))
        hidden, heads = raw.get("hidden_size", 1536), raw.get("num_attention_heads", 24)
        values["embedding_size"] = raw.get("embedding_size") or hidden
        values["attention_head_size"] = raw.get("attention_head_size") or hidden // heads
        if (raw.get("max_relative_positions") or -1) < 1:
            values["max_relative_positions"] = raw.get("max_position_embeddings", 512)
        return values

    def validate(self, raw: dict[str, Any], source: str) -> None:
        super().validate(raw, source)
        unsupported = {"conv_kernel_size": "the convolution layer (conv_kernel_size > 0)",
                       "talking_head": "talking heads"}
        for key, what in unsupported.items():
            if raw.get(key):
                raise CheckpointError(f"{source}: {what} is not supported")
        if set(self.pos_att_type) - set(TERMS):
            raise CheckpointError(f"{source}: pos_att_type {self.pos_att_type} is not supported (c2p, p2c)")
        if raw.get("pooler_hidden_size", self.hidden_size) != self.hidden_size:
            raise CheckpointError(f"{source}: pooler_hidden_size must equal hidden_size")
        if self.pooler_hidden_act not in HIDDEN_ACTS and self.pooler_hidden_act != "tanh":
            raise CheckpointError(f"{source}: unsupported pooler_hidden_act {self.pooler_hidden_act!r}")

    @property
    def head_dim(self) -> int:
        return self.attention_head_size

    @property
    def terms(self) -> tuple[str, ...]:
        """The relative terms of the attention scores (none without relative attention)."""
        return tuple(t for t in TERMS if t in self.pos_att_type) if self.relative_attention else ()

    @property
    def span(self) -> int:
        """Relative positions either side: the buckets, else max_relative_positions."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative_positions


def log_bucket(relative: torch.Tensor, buckets: int, max_position: int) -> torch.Tensor:
    """DeBERTa-v2's log buckets: |r| < buckets/2 exact, beyond log-spaced up to max_position (float32
    arithmetic, as transformers computes it)."""
    sign = torch.sign(relative)
    mid = buckets // 2
    near = (relative < mid) & (relative > -mid)
    abs_pos = torch.where(near, torch.tensor(mid - 1).type_as(relative), relative.abs())
    log_pos = torch.ceil(torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid))
                         * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative.type_as(log_pos), log_pos * sign).long()


@functools.lru_cache(maxsize=16)
def relative_rows(length: int, buckets: int, max_position: int, span: int, device: torch.device):
    """``(low, high, rows)``: rows [2L − 1] int64, the table row δ of each relative position
    i − j = −(L − 1) … L − 1 (log-bucketed where ``buckets`` > 0, clamped to the table), and its
    range. Cached per (length, sizes, device) — its min and max are read on the host once, not per
    forward — in a small LRU cache; callers index it into new tensors and never hand it out."""
    with torch.inference_mode(False), torch.no_grad():
        relative = torch.arange(-(length - 1), length, device=device)
        if buckets > 0:
            relative = log_bucket(relative, buckets, max_position)
        rows = (relative + span).clamp(0, 2 * span - 1)
        return int(rows.min()), int(rows.max()), rows


class Relative(NamedTuple):
    """The position rows a batch reads (after their norm) [1, R, H], their norm, and δ [L, L] in [0, R)."""

    rows: torch.Tensor
    norm: nn.Module | None
    index: torch.Tensor


class _SelfAttention(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        hidden, inner = config.hidden_size, config.num_attention_heads * config.attention_head_size
        self.query_proj = nn.Linear(hidden, inner)
        self.key_proj = nn.Linear(hidden, inner)
        self.value_proj = nn.Linear(hidden, inner)
        if config.relative_attention and not config.share_att_key:
            if "c2p" in config.pos_att_type:
                self.pos_key_proj = nn.Linear(hidden, inner)
            if "p2c" in config.pos_att_type:
                self.pos_query_proj = nn.Linear(hidden, inner)


class _SelfAttentionV1(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        hidden, inner = config.hidden_size, config.num_attention_heads * config.attention_head_size
        self.in_proj = nn.Linear(hidden, 3 * inner, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(inner))
        self.v_bias = nn.Parameter(torch.zeros(inner))
        if config.relative_attention:
            if "c2p" in config.pos_att_type:
                self.pos_proj = nn.Linear(hidden, inner, bias=False)
            if "p2c" in config.pos_att_type:
                self.pos_q_proj = nn.Linear(hidden, inner)


class DebertaLayer(nn.Module):
    """Disentangled self-attention → dense → add & norm → dense, act → dense → add & norm."""

    self_attention: ClassVar[type[nn.Module]] = _SelfAttention

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.heads, self.act, self.terms = config.num_attention_heads, config.activation, config.terms
        # transformers counts the listed terms in the scale even without relative attention
        listed = len(set(config.pos_att_type) & set(TERMS))
        self.scale = (config.attention_head_size * (1 + listed)) ** -0.5
        self.attention = AttentionModules(config, self.self_attention)
        self.intermediate = Intermediate(config)
        self.output = DenseLayerNorm(config.intermediate_size, config.hidden_size, config.layer_norm_eps)

    def projections(self, p, x):
        """Q, K, V [B, H, L, D]."""
        sa = self.attention.self
        return [split_heads(p.linear(x, lin), self.heads) for lin in (sa.query_proj, sa.key_proj, sa.value_proj)]

    def position_projection(self, term: str) -> nn.Linear:
        """The projection of the position rows for ``term``: the content key/query one when shared."""
        sa = self.attention.self
        if term == "c2p":
            return getattr(sa, "pos_key_proj", sa.key_proj)
        return getattr(sa, "pos_query_proj", sa.query_proj)

    def positions(self, p, rel: Relative | None, term: str):
        """K^r (c2p) or Q^r (p2c) [1 | B, H, R, D], or None when the layer has no such term."""
        if rel is None or term not in self.terms:
            return None
        layer = self.position_projection(term)
        z = p.linear(rel.rows, layer)
        return p.positions(split_heads(z, self.heads), lambda: split_heads(input_share(p, z, layer, rel.norm), self.heads))

    def forward(self, x, p, rel: Relative | None):
        q, k, v = self.projections(p, x)
        pos_key, pos_query = self.positions(p, rel, "c2p"), self.positions(p, rel, "p2c")
        index = None if rel is None else rel.index
        context = p.disentangled_attention(q, k, v, pos_key, pos_query, index, self.scale)
        out = self.attention.output
        x = post_norm(p, p.linear(merge_heads(context), out.dense), x, out.LayerNorm)
        return feed_forward_sublayer(p, x, self.intermediate.dense, self.output.dense, self.output.LayerNorm, self.act)


class Affine(NamedTuple):
    """A linear map given by its weight and bias (a slice of a larger layer)."""

    weight: torch.Tensor
    bias: torch.Tensor | None


class DebertaV1Layer(DebertaLayer):
    """DeBERTa's layer: Q, K, V from the per-head interleaved rows of ``in_proj`` with ``q_bias`` and
    ``v_bias`` (each an ε-rule linear with its bias); c2p through ``pos_proj``, p2c through ``pos_q_proj``."""

    self_attention = _SelfAttentionV1

    def projections(self, p, x):
        sa = self.attention.self
        rows = sa.in_proj.weight.view(self.heads, 3, -1, sa.in_proj.in_features)  # [H, q/k/v, D, hidden]
        parts = [Affine(rows[:, j].reshape(-1, rows.shape[-1]), bias) for j, bias in enumerate((sa.q_bias, None, sa.v_bias))]
        return [split_heads(p.linear(x, part), self.heads) for part in parts]

    def position_projection(self, term: str) -> nn.Linear:
        sa = self.attention.self
        return sa.pos_proj if term == "c2p" else sa.pos_q_proj


class DebertaEmbeddings(Embeddings):
    """word (+ position) (+ token type) → (embed_proj) → LayerNorm → × attention mask."""

    def __init__(self, config: DebertaV2Config):
        super().__init__(config, size=config.embedding_size, token_types=config.type_vocab_size > 0,
                         positions=config.position_biased_input)
        if config.embedding_size != config.hidden_size:
            self.embed_proj = nn.Linear(config.embedding_size, config.hidden_size, bias=False)
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def normalize(self, p, e):
        if hasattr(self, "embed_proj"):
            e = p.linear(e, self.embed_proj)
        h = super().normalize(p, e)
        return h if p.token_mask is None else h * p.token_mask.unsqueeze(-1).to(h.dtype)


class DebertaEncoder(nn.Module):
    def __init__(self, config: DebertaV2Config, layer: type[nn.Module] = DebertaLayer):
        super().__init__()
        self.layer = nn.ModuleList(layer(config) for _ in range(config.num_hidden_layers))
        if config.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * config.span, config.hidden_size)
        if "layer_norm" in config.norm_rel_ebd.split("|"):
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class DebertaBackbone(nn.Module):
    def __init__(self, config: DebertaV2Config, layer: type[nn.Module] = DebertaLayer):
        super().__init__()
        self.embeddings = DebertaEmbeddings(config)
        self.encoder = DebertaEncoder(config, layer)


@family("DeBERTa-v2/v3", "deberta-v2", config=DebertaV2Config, optional=("classifier.", "pooler."),
        ignored=("cls.", "lm_predictions.", "mask_predictions.", "qa_outputs."))
class DebertaV2Classifier(EncoderClassifier):
    base_prefix = "deberta"
    layer: ClassVar[type[nn.Module]] = DebertaLayer

    def __init__(self, config: DebertaV2Config):
        act = HIDDEN_ACTS.get(config.pooler_hidden_act, config.pooler_hidden_act)
        super().__init__(config, DebertaBackbone(config, self.layer), pooler=Pooler(config, act),
                         classifier=self.labels_linear(config))

    def table_index(self, length: int, device) -> torch.Tensor:
        """δ(i, j): the row of the position table that query i and key j read, [L, L] (a new tensor;
        δ depends on i − j only, whose 2L − 1 values are cached: :func:`relative_rows`)."""
        _, _, rows = relative_rows(length, self.config.position_buckets, self.config.max_relative_positions,
                                   self.config.span, torch.device(device))
        pos = torch.arange(length, device=device)
        return rows[pos[:, None] - pos[None, :] + (length - 1)]

    def relative(self, p, length: int, device) -> Relative | None:
        """The position rows this length reads, normalized, and δ relative to them."""
        if not self.config.terms:
            return None
        low, high, _ = relative_rows(length, self.config.position_buckets, self.config.max_relative_positions,
                                     self.config.span, torch.device(device))
        index = self.table_index(length, device) - low
        encoder = self.deberta.encoder
        rows = encoder.rel_embeddings.weight[low : high + 1].unsqueeze(0)
        norm = getattr(encoder, "LayerNorm", None)
        return Relative(rows if norm is None else p.norm(rows, norm), norm, index)

    def encode(self, e, p):
        h = self.deberta.embeddings.normalize(p, e)
        return run_layers(p, self.deberta.encoder.layer, h, self.relative(p, e.shape[1], e.device))

    def classify(self, hidden, p):
        return p.linear(self.pooler(hidden[:, 0], p), self.classifier)


@dataclass
class DebertaConfig(DebertaV2Config):
    """DeBERTa (v1): transformers' DebertaConfig defaults (BERT-base's sizes)."""

    model_type: str = "deberta"
    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=50265)


@family("DeBERTa", "deberta", config=DebertaConfig, optional=("classifier.", "pooler."),
        ignored=("cls.", "lm_predictions.", "qa_outputs."))
class DebertaClassifier(DebertaV2Classifier):
    layer = DebertaV1Layer
