"""Mistral: ``MistralForSequenceClassification`` (Jiang et al. 2023).

Llama's layer without biases, with grouped K/V heads and, when ``sliding_window`` is set, causal
sliding-window attention in every layer: a query reads its ``sliding_window`` most recent tokens,
itself included (the attention contract's window ``sliding_window − 1``). Mistral 7B v0.1 has a
window of 4096; from v0.2 on config.json sets it to null.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lrp_kernels.models.decoder import DecoderClassifier, DecoderConfig, causal_lm
from lrp_kernels.models.registry import family


class MistralConfig(DecoderConfig):
    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                                              num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                              max_position_embeddings=131072, hidden_act="silu", pad_token_id=None,
                                              sliding_window=4096)

    @classmethod
    def layer_types_of(cls, values):
        """Every layer slides when ``sliding_window`` is set (transformers' Mistral ignores ``layer_types``)."""
        kind = "full_attention" if values.get("sliding_window") is None else "sliding_attention"
        return [kind] * values.get("num_hidden_layers", 32)


@family("Mistral", "mistral", config=MistralConfig, optional=("score.",), ignored=("lm_head.",))
class MistralClassifier(DecoderClassifier):
    base_prefix = "model"


MistralLM = causal_lm(MistralClassifier)
