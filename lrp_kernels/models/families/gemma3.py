"""Gemma 3: ``Gemma3TextForSequenceClassification`` (Gemma Team 2025; ``model_type`` gemma3_text, the 1B
checkpoints) and ``Gemma3ForSequenceClassification`` (gemma3, the multimodal 4B–27B ones) on text.

Gemma 2's layer (scaled embeddings, (1 + weight) RMSNorms, sandwich norms, GeGLU) with a per-head
(1 + weight) RMSNorm of q and k before the rotation, local and global rotary bases (one
``rope_parameters`` entry per layer type; transformers 4: ``rope_local_base_freq`` and
``rope_theta``/``rope_scaling`` for the global layers), five sliding-window layers to one global
(``sliding_window_pattern``) and no soft-capping (transformers' Gemma 3 attention ignores
``attn_logit_softcapping``; so does this family).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from lrp_kernels.models.decoder import LAYER_TYPES, DecoderBackbone, DecoderClassifier, causal_lm
from lrp_kernels.models.families.gemma2 import GEMMA_LAYOUT, GemmaConfig
from lrp_kernels.models.registry import family


class Gemma3TextConfig(GemmaConfig):
    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216,
                                              num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                                              head_dim=256, max_position_embeddings=131072,
                                              hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
                                              query_pre_attn_scalar=256, sliding_window=4096, tie_word_embeddings=True)

    @classmethod
    def normalize(cls, raw):
        raw = dict(raw)
        params = raw.get("rope_parameters") or {}
        if not set(params) & set(LAYER_TYPES):  # transformers 4: one theta per kind, scaling on the global one
            raw["rope_parameters"] = {
                "full_attention": {"rope_theta": raw.get("rope_theta", 1_000_000.0), **(raw.get("rope_scaling") or {}),
                                   **params},
                "sliding_attention": {"rope_theta": raw.get("rope_local_base_freq", 10000.0)},
            }
        else:
            raw["rope_parameters"] = {"full_attention": {"rope_theta": 1_000_000.0, **(params.get("full_attention") or {})},
                                      "sliding_attention": {"rope_theta": 10000.0,
                                                            **(params.get("sliding_attention") or {})}}
        values = super().normalize(raw)
        values["attn_logit_softcapping"] = None  # not applied by transformers' Gemma 3 attention
        return values

    @classmethod
    def layer_types_of(cls, values):
        if values.get("layer_types"):
            return list(values["layer_types"])
        pattern = values.get("sliding_window_pattern", 6)
        return ["sliding_attention" if (i + 1) % pattern else "full_attention"
                for i in range(values.get("num_hidden_layers", 26))]


@family("Gemma3", "gemma3_text", config=Gemma3TextConfig, optional=("score.",), ignored=("lm_head.",))
class Gemma3TextClassifier(DecoderClassifier):
    base_prefix = "model"
    layout = dataclasses.replace(GEMMA_LAYOUT, qk_norm=("q_norm", "k_norm"))


class Gemma3Config(Gemma3TextConfig):
    """The multimodal Gemma 3 config (``model_type`` gemma3): its ``text_config`` is the classifier's."""

    @classmethod
    def normalize(cls, raw):
        head = {k: raw[k] for k in ("num_labels", "id2label", "label2id", "problem_type", "architectures",
                                    "tie_word_embeddings") if k in raw}
        values = super().normalize({**raw, **(raw.get("text_config") or {}), **head, "model_type": "gemma3"})
        values["final_logit_softcapping"] = None  # Gemma3ForConditionalGeneration does not cap its logits
        return values


class _Gemma3Model(nn.Module):
    """Gemma3ForSequenceClassification's ``model``: the language model (its vision tower and projector,
    unused on text, are not loaded)."""

    def __init__(self, config: Gemma3Config, layout):
        super().__init__()
        self.language_model = DecoderBackbone(config, layout)


@family("Gemma3-multimodal", "gemma3", config=Gemma3Config, optional=("score.",),
        ignored=("lm_head.", "model.vision_tower.", "model.multi_modal_projector.", "vision_tower.",
                 "multi_modal_projector.", "language_model.lm_head."),
        renames=(("language_model.model.", "model.language_model."),))  # the layout on disk (transformers 4 and 5)
class Gemma3Classifier(Gemma3TextClassifier):
    """``Gemma3ForSequenceClassification`` (the 4B–27B checkpoints) on text: its language model alone
    (text-only inputs go through it exactly as through Gemma3TextModel)."""

    def make_backbone(self, config: Gemma3Config) -> nn.Module:
        return _Gemma3Model(config, self.layout)

    @property
    def backbone(self) -> nn.Module:
        return self.model.language_model


Gemma3TextLM = causal_lm(Gemma3TextClassifier)  # Gemma3ForCausalLM
Gemma3LM = causal_lm(Gemma3Classifier)  # Gemma3ForConditionalGeneration on text
