"""Llama: ``LlamaForSequenceClassification`` (Touvron et al. 2023; Llama 2 and 3, the reward models
built on them).

RMSNorm before attention and before the SwiGLU MLP, rotary positions (default, linear or Llama 3.1's
``llama3`` frequencies), grouped K/V heads, optional biases (``attention_bias`` on q, k, v and o;
``mlp_bias``); the shared decoder layer of :mod:`lrp_kernels.models.decoder`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lrp_kernels.models.decoder import DecoderClassifier, DecoderConfig, causal_lm
from lrp_kernels.models.registry import family


class LlamaConfig(DecoderConfig):
    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                              num_hidden_layers=32, num_attention_heads=32,
                                              max_position_embeddings=2048, hidden_act="silu", pad_token_id=None)


@family("Llama", "llama", config=LlamaConfig, optional=("score.",), ignored=("lm_head.",))
class LlamaClassifier(DecoderClassifier):
    base_prefix = "model"


LlamaLM = causal_lm(LlamaClassifier)
