"""RoBERTa, XLM-RoBERTa and CamemBERT: ``RobertaForSequenceClassification`` and its twins.

BERT's layers; positions count from ``pad_token_id + 1`` over non-padding tokens; no pooler; the
head is dense → tanh → out_proj on the first token (``<s>``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import ClassificationHead
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.models.families.bert import BertBackbone
from lrp_kernels.models.registry import family


class RobertaConfig(ModelConfig):
    # vocab_size differs between the three model types; a config.json always has it, and a wrong one
    # fails the weights' shape check, where a missing pad_token_id would silently move every position
    defaults: ClassVar[dict[str, Any]] = dict(pad_token_id=1)

    @property
    def max_tokens(self) -> int:
        """Positions start at pad_token_id + 1, so fewer tokens fit than there are positions."""
        return self.max_position_embeddings - self.pad_token_id - 1


@family("RoBERTa", "roberta", "xlm-roberta", "camembert", config=RobertaConfig)
class RobertaClassifier(EncoderClassifier):
    base_prefix = "roberta"

    def __init__(self, config: ModelConfig):
        super().__init__(config, BertBackbone(config, pooler=False), classifier=ClassificationHead(config, "tanh"))

    def position_ids(self, input_ids, attention_mask=None):
        pad = self.config.pad_token_id
        keep = input_ids.ne(pad).long()
        return torch.cumsum(keep, dim=1) * keep + pad

    def classify(self, hidden, p):
        return self.classifier(hidden[:, 0], p)
