"""BERT (MiniLM included): ``BertForSequenceClassification``.

Post-norm layers, word + position + token-type embeddings, pooler (dense → tanh on [CLS]) and a
linear classifier. Parameter names as transformers saves them (``bert.encoder.layer.0.attention.self.query``…).
"""

from __future__ import annotations

from torch import nn

from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import Embeddings, Encoder, Pooler
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.models.registry import family


class BertBackbone(nn.Module):
    def __init__(self, config: ModelConfig, pooler: bool = True):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        if pooler:
            self.pooler = Pooler(config)


@family("BERT", "bert", optional=("classifier.", "bert.pooler."))
class BertClassifier(EncoderClassifier):
    base_prefix = "bert"

    def __init__(self, config: ModelConfig):
        super().__init__(config, BertBackbone(config), classifier=self.labels_linear(config))

    def classify(self, hidden, p):
        return p.linear(self.bert.pooler(hidden[:, 0], p), self.classifier)
