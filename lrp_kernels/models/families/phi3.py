"""Phi-3: ``Phi3ForSequenceClassification`` (Abdin et al. 2024).

Llama's layer with one fused ``qkv_proj`` (split into q, k and v as views: one GEMM, no copies) and one
fused ``gate_up_proj`` (gate first, then up: the gated MLP rule on its two halves), no biases, RMSNorm
ε 1e-5, and — when ``sliding_window`` is set (Phi-3-mini-4k: 2047) — causal sliding-window attention in
every layer. The ``longrope`` rotary scaling of the 128k models and a partial rotary factor are refused.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lrp_kernels.models.decoder import DecoderClassifier, DecoderLayout, causal_lm
from lrp_kernels.models.families.mistral import MistralConfig
from lrp_kernels.models.registry import family


class Phi3Config(MistralConfig):
    """Phi-3's defaults; its sliding window, like Mistral's, applies to every layer."""

    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192,
                                              num_hidden_layers=32, num_attention_heads=32,
                                              max_position_embeddings=4096, hidden_act="silu", rms_norm_eps=1e-5,
                                              pad_token_id=32000, sliding_window=None)


@family("Phi3", "phi3", config=Phi3Config, optional=("score.",), ignored=("lm_head.",))
class Phi3Classifier(DecoderClassifier):
    base_prefix = "model"
    layout = DecoderLayout(qkv=("qkv_proj",), mlp_in=("gate_up_proj",))


Phi3LM = causal_lm(Phi3Classifier)
