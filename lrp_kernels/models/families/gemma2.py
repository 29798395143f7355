"""Gemma 2: ``Gemma2ForSequenceClassification`` (Gemma Team 2024).

The token embeddings × √hidden (rounded to the weights' dtype, as transformers does); RMSNorms that
scale by (1 + weight), computed in float32; sandwich norms (before and after attention, before and
after the MLP); GeGLU with the tanh GELU; grouped K/V heads; scores scaled by
1/√``query_pre_attn_scalar`` and soft-capped, c·tanh(S/c) with c = ``attn_logit_softcapping`` (the
identity rule of an element-wise monotone map, see :mod:`lrp_kernels.ops.attention`); alternating
sliding-window (even layers) and global layers. ``final_logit_softcapping`` belongs to the language
model head (``Gemma2ForCausalLM``: c·tanh(z/c) of the logits, the identity rule): the sequence
classifier does not apply it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lrp_kernels.models.decoder import DecoderClassifier, DecoderConfig, DecoderLayout, causal_lm
from lrp_kernels.models.registry import family

#: Gemma's layer: offset norms, sandwich norms, scaled embeddings
GEMMA_LAYOUT = DecoderLayout(norms=("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                                    "post_feedforward_layernorm"), norm_offset=1.0, embed_scale=True)


class GemmaConfig(DecoderConfig):
    """Gemma 2 and 3: ``hidden_activation`` names the MLP's activation."""

    @classmethod
    def normalize(cls, raw):
        raw = dict(raw)
        raw["hidden_act"] = raw.get("hidden_activation") or raw.get("hidden_act") or "gelu_pytorch_tanh"
        return super().normalize(raw)


class Gemma2Config(GemmaConfig):
    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                                              num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                                              head_dim=256, max_position_embeddings=8192,
                                              hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
                                              query_pre_attn_scalar=256, sliding_window=4096,
                                              attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                                              tie_word_embeddings=True)

    @classmethod
    def layer_types_of(cls, values):
        if values.get("layer_types"):
            return list(values["layer_types"])
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(values.get("num_hidden_layers", 26))]

    def transformers_differs(self, attn_implementation, version):
        """transformers 4 defaults Gemma 2 to sdpa, whose ``sdpa_attention_forward`` drops ``softcap``
        (5 has no sdpa for Gemma 2)."""
        if version < (5, 0) and attn_implementation == "sdpa" and self.attn_logit_softcapping:
            return (f"transformers {version[0]}.{version[1]} runs Gemma 2's sdpa attention without the soft-capping "
                    f"of its scores (attn_logit_softcapping {self.attn_logit_softcapping}); lrp-kernels explains the "
                    "soft-capped model, as eager attention and transformers 5 compute it (load the model with "
                    "attn_implementation='eager' for logits that agree)")
        return None


@family("Gemma2", "gemma2", config=Gemma2Config, optional=("score.",), ignored=("lm_head.",))
class Gemma2Classifier(DecoderClassifier):
    base_prefix = "model"
    layout = GEMMA_LAYOUT


Gemma2LM = causal_lm(Gemma2Classifier)
