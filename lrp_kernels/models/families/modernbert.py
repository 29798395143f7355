"""ModernBERT: ``ModernBertForSequenceClassification`` (Warner et al. 2024).

Pre-norm layers (the first one reads the embedding norm's output directly), LayerNorms without
bias, one ``Wqkv`` projection, rotary positions with one θ for global and one for local layers,
local layers attending within a sliding window of ``local_attention // 2`` tokens either side,
a GeGLU feed-forward whose ``Wi`` makes both halves, a final norm, and the head: cls or mean
pooling → dense → act → norm → classifier. transformers' padded eager forward is the spec (its
unpadded path computes the same logits). No token types; the read-out ``embedding_output`` is the
embedding norm's output, ``embedding_sum`` the token embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from lrp_kernels.errors import CheckpointError
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import mean_pool, merge_heads, rotary_tables, run_layers
from lrp_kernels.models.config import GATED_ACTS, HIDDEN_ACTS, ModelConfig
from lrp_kernels.models.registry import family

LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass
class ModernBertConfig(ModelConfig):
    model_type: str = "modernbert"
    layer_norm_eps: float = 1e-5
    layer_types: list = field(default_factory=list)
    global_rope_theta: float = 160000.0
    local_rope_theta: float = 10000.0
    local_attention: int = 128
    classifier_pooling: str = "cls"
    classifier_activation: str = "gelu"
    classifier_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False

    hidden_acts: ClassVar[dict[str, str]] = GATED_ACTS
    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=50368, num_hidden_layers=22, intermediate_size=1152,
                                              max_position_embeddings=8192, pad_token_id=50283)

    @classmethod
    def normalize(cls, raw: dict[str, Any]) -> dict[str, Any]:
        values = dict(raw)
        values.setdefault("hidden_act", raw.get("hidden_activation", "gelu"))
        values["layer_norm_eps"] = raw.get("norm_eps", 1e-5)
        rope = raw.get("rope_parameters") or {}
        values["global_rope_theta"] = (rope.get("full_attention") or {}).get("rope_theta", raw.get("global_rope_theta", 160000.0))
        values["local_rope_theta"] = (rope.get("sliding_attention") or {}).get("rope_theta", raw.get("local_rope_theta", 10000.0))
        if not raw.get("layer_types"):
            every = raw.get("global_attn_every_n_layers", 3)
            values["layer_types"] = [LAYER_TYPES[bool(i % every)] for i in range(raw.get("num_hidden_layers", 22))]
        return values

    def validate(self, raw: dict[str, Any], source: str) -> None:
        super().validate(raw, source)
        rope = raw.get("rope_parameters") or {}
        kinds = {(v or {}).get("rope_type", "default") for v in rope.values()} | {(raw.get("rope_scaling") or {}).get("rope_type", "default")}
        if kinds != {"default"}:
            raise CheckpointError(f"{source}: only the default rotary embedding is supported, got {sorted(kinds)}")
        if set(self.layer_types) - set(LAYER_TYPES) or len(self.layer_types) != self.num_hidden_layers:
            raise CheckpointError(f"{source}: layer_types must name {self.num_hidden_layers} of {LAYER_TYPES}")
        if self.classifier_pooling not in ("cls", "mean"):
            raise CheckpointError(f"{source}: classifier_pooling must be cls or mean, got {self.classifier_pooling!r}")
        if self.classifier_activation not in HIDDEN_ACTS:
            raise CheckpointError(f"{source}: unsupported classifier_activation {self.classifier_activation!r}")

    def window(self, layer_type: str) -> int | None:
        """Keys a query of a layer of this type reads either side of itself (None: all)."""
        return self.local_attention // 2 if layer_type == "sliding_attention" else None


class _Embeddings(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.norm_bias)


class _Attention(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)


class _MLP(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)


class ModernBertLayer(nn.Module):
    """x + attn(norm(x)) with rotary positions (and a window on local layers); then x + GeGLU(norm(x))."""

    def __init__(self, config: ModernBertConfig, index: int):
        super().__init__()
        self.heads, self.act = config.num_attention_heads, config.activation
        self.layer_type = config.layer_types[index]
        self.window = config.window(self.layer_type)
        self.attn_norm = None if index == 0 else _norm(config)
        self.attn = _Attention(config)
        self.mlp_norm = _norm(config)
        self.mlp = _MLP(config)

    def forward(self, x, p, rotary: dict):
        h = x if self.attn_norm is None else p.norm(x, self.attn_norm)
        batch, length, _ = h.shape
        qkv = p.linear(h, self.attn.Wqkv).view(batch, length, 3, self.heads, -1)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(dim=2))
        o = p.attention(q, k, v, q.shape[-1] ** -0.5, window=self.window, rotary=rotary[self.layer_type])
        x = x + p.linear(merge_heads(o), self.attn.Wo)
        return x + p.linear(p.gated_mlp(p.norm(x, self.mlp_norm), self.mlp.Wi, self.act), self.mlp.Wo)


def _norm(config: ModernBertConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.norm_bias)


class ModernBertBackbone(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.embeddings = _Embeddings(config)
        self.layers = nn.ModuleList(ModernBertLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = _norm(config)


class _Head(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.norm = _norm(config)


@family("ModernBERT", "modernbert", config=ModernBertConfig,
        optional=("classifier.", "head."), ignored=("decoder.", "lm_head."))
class ModernBertClassifier(EncoderClassifier):
    base_prefix = "model"

    def __init__(self, config: ModernBertConfig):
        super().__init__(config, ModernBertBackbone(config), head=_Head(config), classifier=self.labels_linear(config))

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.model.embeddings.tok_embeddings

    def embed(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None):
        """The token embeddings (positions are rotary, there are no token types; the mask changes nothing)."""
        return self.word_embeddings(input_ids)

    def _rotary(self, like):
        config, length = self.config, like.shape[1]
        thetas = {"full_attention": config.global_rope_theta, "sliding_attention": config.local_rope_theta}
        return {kind: rotary_tables(length, config.head_dim, theta, like) for kind, theta in thetas.items()}

    def encode(self, e, p):
        x = p.tap("embedding_output", p.norm(e, self.model.embeddings.norm))
        x = run_layers(p, self.model.layers, x, self._rotary(e))
        return p.norm(x, self.model.final_norm)

    def classify(self, hidden, p):
        pooled = hidden[:, 0] if self.config.classifier_pooling == "cls" else mean_pool(p, hidden)
        h = p.linear(pooled, self.head.dense, HIDDEN_ACTS[self.config.classifier_activation])
        return p.linear(p.norm(h, self.head.norm), self.classifier)
