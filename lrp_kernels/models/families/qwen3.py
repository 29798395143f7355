"""Qwen3: ``Qwen3ForSequenceClassification`` (Yang et al. 2025).

Qwen2's layer with ``attention_bias`` for q, k, v and o (off in the released models) and a per-head
RMSNorm of q and k (``q_norm``, ``k_norm``, over the head dim) before the rotation: the RMSNorm rule
(1/rms held constant), after which the projections apply their own ε-rule (the attention's backward
cannot: a norm sits between them).
"""

from __future__ import annotations

from typing import Any, ClassVar

from lrp_kernels.models.decoder import DecoderClassifier, DecoderLayout, causal_lm
from lrp_kernels.models.families.qwen2 import QwenConfig
from lrp_kernels.models.registry import family


class Qwen3Config(QwenConfig):
    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016,
                                              num_hidden_layers=32, num_attention_heads=32, head_dim=128,
                                              max_position_embeddings=32768, hidden_act="silu", pad_token_id=None,
                                              sliding_window=4096, max_window_layers=28)


@family("Qwen3", "qwen3", config=Qwen3Config, optional=("score.",), ignored=("lm_head.",))
class Qwen3Classifier(DecoderClassifier):
    base_prefix = "model"
    layout = DecoderLayout(qk_norm=("q_norm", "k_norm"))


Qwen3LM = causal_lm(Qwen3Classifier)
