"""Qwen2 (and Qwen2.5): ``Qwen2ForSequenceClassification`` (Yang et al. 2024).

Llama's layer with biases on the q, k and v projections (none on o or the MLP), grouped K/V heads,
and — with ``use_sliding_window`` — causal sliding-window attention in the layers from
``max_window_layers`` on (or as ``layer_types`` says).
"""

from __future__ import annotations

from typing import Any, ClassVar

from lrp_kernels.models.decoder import DecoderClassifier, DecoderConfig, causal_lm
from lrp_kernels.models.registry import family


class QwenConfig(DecoderConfig):
    """Qwen2 and Qwen3: sliding windows from ``use_sliding_window``, ``max_window_layers``."""

    @classmethod
    def normalize(cls, raw):
        values = super().normalize(raw)
        if not values.get("use_sliding_window", False):  # transformers nulls the window then
            values["sliding_window"] = None
        return values

    @classmethod
    def layer_types_of(cls, values):
        if values.get("layer_types"):
            return list(values["layer_types"])
        window = values.get("sliding_window") if values.get("use_sliding_window", False) else None
        start = values.get("max_window_layers", 28)
        return ["sliding_attention" if window is not None and i >= start else "full_attention"
                for i in range(values.get("num_hidden_layers", 32))]

    def transformers_differs(self, attn_implementation, version):
        """Before transformers 4.53 (``layer_types``) only flash_attention_2 slid the layers from
        ``max_window_layers`` on: eager and sdpa ignored the window in 4.48 and slid every layer in
        4.49–4.52 (one mask for all layers)."""
        if version >= (4, 53) or self.sliding_window is None or attn_implementation == "flash_attention_2":
            return None
        sliding = [kind == "sliding_attention" for kind in self.layer_types]
        theirs = "ignores the sliding window" if version < (4, 49) else "slides every layer"
        if (any(sliding) if version < (4, 49) else not all(sliding)):
            return (f"transformers {version[0]}.{version[1]}'s {self.model_type} under {attn_implementation} attention "
                    f"{theirs}; lrp-kernels slides the layers from max_window_layers on, as flash_attention_2 and "
                    f"transformers 4.53+ do (logits differ on inputs longer than {self.sliding_window} tokens)")
        return None


class Qwen2Config(QwenConfig):
    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016,
                                              num_hidden_layers=32, num_attention_heads=32,
                                              max_position_embeddings=32768, hidden_act="silu", pad_token_id=None,
                                              sliding_window=4096, max_window_layers=28)

    @property
    def qkv_bias(self) -> bool:
        return True

    @property
    def out_bias(self) -> bool:
        return False


@family("Qwen2", "qwen2", config=Qwen2Config, optional=("score.",), ignored=("lm_head.",))
class Qwen2Classifier(DecoderClassifier):
    base_prefix = "model"


Qwen2LM = causal_lm(Qwen2Classifier)
