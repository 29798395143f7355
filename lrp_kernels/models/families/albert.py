"""ALBERT: ``AlbertForSequenceClassification`` (e.g. albert-base-v2 fine-tuned).

Factorized embeddings: word + position + token type at width ``embedding_size``, normalized, then
``encoder.embedding_hidden_mapping_in`` (a linear, ε-rule) up to ``hidden_size``. Cross-layer
parameter sharing: ``num_hidden_groups`` layer groups (1 in every released ALBERT) of
``inner_group_num`` post-norm layers; application i of ``num_hidden_layers`` runs group
⌊i·groups/layers⌋, as transformers does. The modules exist once, so relevance flows through the same
weights several times and nothing is copied. Head: ``albert.pooler`` (dense → tanh on the first
token) then ``classifier``. Parameter names as transformers saves them
(``albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query``…).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from lrp_kernels.errors import CheckpointError
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import Embeddings, Pass, attention_sublayer, feed_forward_sublayer
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.models.registry import family


@dataclass
class AlbertConfig(ModelConfig):
    embedding_size: int = 128
    num_hidden_groups: int = 1
    inner_group_num: int = 1

    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=30000, hidden_size=4096, num_attention_heads=64,
                                              intermediate_size=16384, hidden_act="gelu_new")

    def validate(self, raw, source):
        super().validate(raw, source)
        if not 1 <= self.num_hidden_groups <= self.num_hidden_layers:
            raise CheckpointError(f"{source}: num_hidden_groups must be in 1..num_hidden_layers")


class _Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        size = config.hidden_size
        self.query, self.key, self.value, self.dense = (nn.Linear(size, size) for _ in range(4))
        self.LayerNorm = nn.LayerNorm(size, eps=config.layer_norm_eps)


class AlbertLayer(nn.Module):
    """attention → dense → add & norm, then ffn, act → ffn_output → add & ``full_layer_layer_norm``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads, self.act = config.num_attention_heads, config.activation
        self.full_layer_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = _Attention(config)
        self.ffn = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_output = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x, p: Pass):
        a = self.attention
        x = attention_sublayer(p, x, a.query, a.key, a.value, a.dense, a.LayerNorm, self.heads)
        return feed_forward_sublayer(p, x, self.ffn, self.ffn_output, self.full_layer_layer_norm, self.act)


class AlbertLayerGroup(nn.Module):
    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.albert_layers = nn.ModuleList(AlbertLayer(config) for _ in range(config.inner_group_num))

    def forward(self, x, p: Pass):
        for layer in self.albert_layers:
            x = layer(x, p)
        return x


class AlbertTransformer(nn.Module):
    """The projection to ``hidden_size``, then the shared groups; application i's input is the tap ``layer.<i>``."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.layers, self.groups = config.num_hidden_layers, config.num_hidden_groups
        self.embedding_hidden_mapping_in = nn.Linear(config.embedding_size, config.hidden_size)
        self.albert_layer_groups = nn.ModuleList(AlbertLayerGroup(config) for _ in range(self.groups))

    def forward(self, x, p: Pass):
        x = p.linear(x, self.embedding_hidden_mapping_in)
        for i in range(self.layers):
            x = p.layer(self.albert_layer_groups[int(i / (self.layers / self.groups))], p.tap(f"layer.{i}", x))
        return x


class AlbertBackbone(nn.Module):
    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.embeddings = Embeddings(config, size=config.embedding_size)
        self.encoder = AlbertTransformer(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)


@family("ALBERT", "albert", config=AlbertConfig, optional=("classifier.", "albert.pooler."),
        ignored=("predictions.", "sop_classifier.", "qa_outputs."))
class AlbertClassifier(EncoderClassifier):
    base_prefix = "albert"

    def __init__(self, config: AlbertConfig):
        super().__init__(config, AlbertBackbone(config), classifier=self.labels_linear(config))

    def classify(self, hidden, p):
        return p.linear(p.linear(hidden[:, 0], self.albert.pooler, "tanh"), self.classifier)
