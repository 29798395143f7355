"""DistilBERT: ``DistilBertForSequenceClassification`` (e.g. distilbert-base-uncased-finetuned-sst-2-english).

BERT's post-norm layers under other names (``q_lin/k_lin/v_lin/out_lin``, ``sa_layer_norm``,
``ffn.lin1/lin2``, ``output_layer_norm``), word + position embeddings (no token types), and the head
``pre_classifier`` → ReLU → ``classifier`` on the first token. Parameter names as transformers
saves them (``distilbert.transformer.layer.0.attention.q_lin``…).

The head's ReLU runs under the identity rule of the LRP rule sets (R_x = R_y), whose modified
gradient is g_x = g_y · relu(x)/x = g_y · 1[x > 0]: exactly ReLU's plain gradient. So DistilBERT's
head needs no rule of its own — every rule set takes the ordinary gradient through it
(``tests/families/test_families_i.py`` checks both the factor and the scores).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import Embeddings, Encoder, Pass, attention_sublayer, feed_forward_sublayer
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.models.registry import family


class DistilBertConfig(ModelConfig):
    aliases: ClassVar[dict[str, str]] = {
        "dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
        "hidden_dim": "intermediate_size", "activation": "hidden_act",
    }
    defaults: ClassVar[dict[str, Any]] = dict(num_hidden_layers=6)

    @classmethod
    def normalize(cls, raw):
        # DistilBERT has no token types, and its LayerNorms' eps is fixed at 1e-12 (not in config.json)
        return {**super().normalize(raw), "type_vocab_size": 0, "layer_norm_eps": 1e-12}


class _MultiHeadSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        size = config.hidden_size
        self.q_lin, self.k_lin, self.v_lin, self.out_lin = (nn.Linear(size, size) for _ in range(4))


class _FFN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.lin1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.lin2 = nn.Linear(config.intermediate_size, config.hidden_size)


class TransformerBlock(nn.Module):
    """attention → add & ``sa_layer_norm`` → lin1, act → lin2 → add & ``output_layer_norm``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads, self.act = config.num_attention_heads, config.activation
        self.attention = _MultiHeadSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = _FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, p: Pass):
        a = self.attention
        x = attention_sublayer(p, x, a.q_lin, a.k_lin, a.v_lin, a.out_lin, self.sa_layer_norm, self.heads)
        return feed_forward_sublayer(p, x, self.ffn.lin1, self.ffn.lin2, self.output_layer_norm, self.act)


class DistilBertBackbone(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embeddings = Embeddings(config, token_types=False)
        self.transformer = Encoder(config, TransformerBlock)


@family("DistilBERT", "distilbert", config=DistilBertConfig, optional=("classifier.", "pre_classifier."),
        ignored=("vocab_transform.", "vocab_layer_norm.", "vocab_projector.", "qa_outputs."))
class DistilBertClassifier(EncoderClassifier):
    base_prefix = "distilbert"

    def __init__(self, config: ModelConfig):
        pre_classifier = nn.Linear(config.hidden_size, config.hidden_size)
        super().__init__(config, DistilBertBackbone(config), pre_classifier=pre_classifier,
                         classifier=self.labels_linear(config))

    def encode(self, e, p):
        return self.distilbert.transformer(self.distilbert.embeddings.normalize(p, e), p)

    def classify(self, hidden, p):
        return p.linear(p.linear(hidden[:, 0], self.pre_classifier, "relu"), self.classifier)
