"""EuroBERT: ``EuroBertForSequenceClassification`` (Boizard et al. 2025).

Llama-style blocks run bidirectionally: RMSNorm before attention and before the SwiGLU feed-forward,
rotary positions, grouped-query K/V heads, a final RMSNorm; the head is dense → GELU → classifier
on the first token (``bos``), on the mean over tokens (``mean``), or per token with the logits
averaged (``late``, the default). There is no embedding norm: ``embedding_sum`` and
``embedding_output`` are both the token embeddings (the family taps them as ``embedding_output``),
so every method reads there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from lrp_kernels.errors import CheckpointError
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import RMSNorm, mean_pool, merge_heads, rotary_tables, run_layers, split_heads
from lrp_kernels.models.config import GATED_ACTS, ModelConfig
from lrp_kernels.models.registry import family

POOLINGS = ("bos", "mean", "late")


@dataclass
class EuroBertConfig(ModelConfig):
    model_type: str = "eurobert"
    vocab_size: int = 128256
    max_position_embeddings: int = 8192
    hidden_act: str = "silu"
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 128001
    num_key_value_heads: int = 12
    head_dim: int = 64
    rope_theta: float = 10000.0
    attention_bias: bool = False
    mlp_bias: bool = False
    classifier_pooling: str = "late"

    hidden_acts: ClassVar[dict[str, str]] = GATED_ACTS

    @classmethod
    def normalize(cls, raw: dict[str, Any]) -> dict[str, Any]:
        values = dict(raw)
        heads = raw.get("num_attention_heads", 12)
        values["layer_norm_eps"] = raw.get("rms_norm_eps", 1e-5)
        values["num_key_value_heads"] = raw.get("num_key_value_heads") or heads
        values["head_dim"] = raw.get("head_dim") or raw.get("hidden_size", 768) // heads
        values["rope_theta"] = (raw.get("rope_parameters") or {}).get("rope_theta", raw.get("rope_theta") or 10000.0)
        values["classifier_pooling"] = raw.get("classifier_pooling", raw.get("clf_pooling", "late"))
        return values

    def validate(self, raw: dict[str, Any], source: str) -> None:
        super().validate(raw, source)
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        if rope.get("rope_type", "default") != "default":
            raise CheckpointError(f"{source}: only the default rotary embedding is supported")
        if self.num_attention_heads % self.num_key_value_heads:
            raise CheckpointError(f"{source}: num_attention_heads is not a multiple of num_key_value_heads")
        if self.classifier_pooling not in POOLINGS:
            raise CheckpointError(f"{source}: classifier_pooling must be one of {POOLINGS}")


class _Attention(nn.Module):
    def __init__(self, config: EuroBertConfig):
        super().__init__()
        hidden, dim, bias = config.hidden_size, config.head_dim, config.attention_bias
        self.q_proj = nn.Linear(hidden, config.num_attention_heads * dim, bias=bias)
        self.k_proj = nn.Linear(hidden, config.num_key_value_heads * dim, bias=bias)
        self.v_proj = nn.Linear(hidden, config.num_key_value_heads * dim, bias=bias)
        self.o_proj = nn.Linear(config.num_attention_heads * dim, hidden, bias=bias)


class _MLP(nn.Module):
    def __init__(self, config: EuroBertConfig):
        super().__init__()
        hidden, inter, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(hidden, inter, bias=bias)
        self.up_proj = nn.Linear(hidden, inter, bias=bias)
        self.down_proj = nn.Linear(inter, hidden, bias=bias)


class EuroBertLayer(nn.Module):
    """x + attn(rms(x)) (rotary, grouped K/V); then x + SwiGLU(rms(x))."""

    def __init__(self, config: EuroBertConfig):
        super().__init__()
        self.heads, self.kv_heads, self.act = config.num_attention_heads, config.num_key_value_heads, config.activation
        self.self_attn = _Attention(config)
        self.mlp = _MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, p, rotary):
        a, h = self.self_attn, p.norm(x, self.input_layernorm)
        q = split_heads(p.linear(h, a.q_proj), self.heads)
        k, v = (split_heads(p.linear(h, lin), self.kv_heads) for lin in (a.k_proj, a.v_proj))
        x = x + p.linear(merge_heads(p.attention(q, k, v, q.shape[-1] ** -0.5, rotary=rotary)), a.o_proj)
        h = p.norm(x, self.post_attention_layernorm)
        return x + p.linear(p.gated_mlp(h, self.mlp.gate_proj, self.act, self.mlp.up_proj), self.mlp.down_proj)


class EuroBertBackbone(nn.Module):
    def __init__(self, config: EuroBertConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(EuroBertLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.layer_norm_eps)


@family("EuroBERT", "eurobert", config=EuroBertConfig, optional=("classifier.", "dense."))
class EuroBertClassifier(EncoderClassifier):
    base_prefix = "model"

    def __init__(self, config: EuroBertConfig):
        super().__init__(config, EuroBertBackbone(config), dense=nn.Linear(config.hidden_size, config.hidden_size),
                         classifier=self.labels_linear(config))

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def embed(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None):
        """The token embeddings (positions are rotary, there are no token types; the mask changes nothing)."""
        return self.word_embeddings(input_ids)

    def encode(self, e, p):
        rotary = rotary_tables(e.shape[1], self.config.head_dim, self.config.rope_theta, e)
        x = run_layers(p, self.model.layers, p.tap("embedding_output", e), rotary)
        return p.norm(x, self.model.norm)

    def classify(self, hidden, p):
        pooling = self.config.classifier_pooling
        if pooling != "late":
            pooled = hidden[:, 0] if pooling == "bos" else mean_pool(p, hidden)
            return p.linear(p.linear(pooled, self.dense, "gelu"), self.classifier)
        return mean_pool(p, p.linear(p.linear(hidden, self.dense, "gelu"), self.classifier))
