"""BERT (MiniLM included): ``BertForSequenceClassification``.

Post-norm layers, word + position + token-type embeddings, pooler (dense → tanh on [CLS]) and a
linear classifier. Parameter names as transformers saves them (``bert.encoder.layer.0.attention.self.query``…).
"""

from __future__ import annotations

from torch import nn

from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import Embeddings, Encoder, Pooler
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.models.registry import Family, register


class BertBackbone(nn.Module):
    def __init__(self, config: ModelConfig, pooler: bool = True):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        if pooler:
            self.pooler = Pooler(config)


class BertClassifier(EncoderClassifier):
    base_prefix = "bert"

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.bert = BertBackbone(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def classify(self, hidden, p):
        return p.linear(self.bert.pooler(hidden[:, 0], p), self.classifier)


FAMILY = register(Family(
    name="BERT",
    model_types=("bert",),
    classifier=BertClassifier,
    config=ModelConfig,
    base_prefix="bert",
    optional_prefixes=("classifier.", "bert.pooler."),
))
