"""ELECTRA: ``ElectraForSequenceClassification`` (the discriminator with a classification head).

BERT's embeddings at width ``embedding_size`` and BERT's layers at ``hidden_size``; where the two
differ, ``embeddings_project`` (a linear, under the ε-rule like every linear) maps the normalized
embeddings up. No pooler: the head is dense → GELU (erf, whatever ``hidden_act`` says) → out_proj
on the first token. Parameter names as transformers saves them (``electra.embeddings_project``…).
The read-out point ``embedding_output`` is the embedding norm's output, before the projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import ClassificationHead, Embeddings, Encoder
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.models.registry import family


@dataclass
class ElectraConfig(ModelConfig):
    embedding_size: int = 128

    defaults: ClassVar[dict[str, Any]] = dict(hidden_size=256, num_attention_heads=4, intermediate_size=1024)


class ElectraBackbone(nn.Module):
    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.embeddings = Embeddings(config, size=config.embedding_size)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = Encoder(config)


@family("ELECTRA", "electra", config=ElectraConfig,
        ignored=("discriminator_predictions.", "generator_predictions.", "generator_lm_head.", "qa_outputs."))
class ElectraClassifier(EncoderClassifier):
    base_prefix = "electra"

    def __init__(self, config: ElectraConfig):
        super().__init__(config, ElectraBackbone(config), classifier=ClassificationHead(config, "gelu"))

    def encode(self, e, p):
        h = self.electra.embeddings.normalize(p, e)
        if hasattr(self.electra, "embeddings_project"):
            h = p.linear(h, self.electra.embeddings_project)
        return self.electra.encoder(h, p)

    def classify(self, hidden, p):
        return self.classifier(hidden[:, 0], p)
