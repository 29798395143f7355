"""GPT-2: ``GPT2ForSequenceClassification`` (Radford et al. 2019).

Pre-norm layers with LayerNorm (with bias), one fused ``c_attn`` projection and ``c_proj``, the MLP
``c_fc`` → ``gelu_new`` (the tanh GELU, identity rule) → ``c_proj``, biases everywhere, all linears
``Conv1D`` (weights stored [in, out]: read transposed, no copy), learned absolute positions ``wpe``
added to the token embeddings ``wte``, a final ``ln_f``, and the ``score`` head at the rightmost
non-pad token. The positions are the columns, pads included (transformers counts them from the first
column): a left-padded row is explained with the positions transformers gives it, which differ from
the same row unpadded. Scores scaled by 1/√head_dim (``scale_attn_weights``), divided by the layer
number with ``scale_attn_by_inverse_layer_idx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lrp_kernels.errors import CheckpointError
from lrp_kernels.models.blocks import Conv1D
from lrp_kernels.models.decoder import DecoderClassifier, DecoderConfig, DecoderLayout, causal_lm
from lrp_kernels.models.config import HIDDEN_ACTS
from lrp_kernels.models.registry import family


@dataclass
class GPT2Config(DecoderConfig):
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False

    hidden_acts: ClassVar[dict[str, str]] = HIDDEN_ACTS
    eps_key: ClassVar[str] = "layer_norm_epsilon"
    aliases: ClassVar[dict[str, str]] = dict(n_embd="hidden_size", n_layer="num_hidden_layers",
                                             n_head="num_attention_heads", n_positions="max_position_embeddings",
                                             activation_function="hidden_act")
    defaults: ClassVar[dict[str, Any]] = dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024,
                                              activation_function="gelu_new", layer_norm_epsilon=1e-5,
                                              pad_token_id=None, tie_word_embeddings=True)

    @classmethod
    def normalize(cls, raw):
        values = super().normalize(raw)
        values["intermediate_size"] = values.get("n_inner") or 4 * values["hidden_size"]
        return values

    def __post_init__(self):
        self.num_key_value_heads = self.num_attention_heads
        self.head_dim = self.hidden_size // self.num_attention_heads
        self.attention_bias = self.mlp_bias = True

    def validate(self, raw, source):
        super().validate(raw, source)
        if raw.get("add_cross_attention"):
            raise CheckpointError(f"{source}: GPT-2 with cross-attention is not supported")
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointError(f"{source}: n_embd is not a multiple of n_head")

    def attention_scale(self, index: int) -> float:
        scale = self.head_dim ** -0.5 if self.scale_attn_weights else 1.0
        return scale / (index + 1) if self.scale_attn_by_inverse_layer_idx else scale


@family("GPT-2", "gpt2", config=GPT2Config, optional=("score.",), ignored=("lm_head.",))
class GPT2Classifier(DecoderClassifier):
    base_prefix = "transformer"
    layout = DecoderLayout(embed="wte", positions="wpe", layers="h", final_norm="ln_f", attention="attn",
                           qkv=("c_attn",), out="c_proj", mlp_in=("c_fc",), gated=False, down="c_proj",
                           norms=("ln_1", None, "ln_2", None), layer_norm=True, linear=Conv1D, rotary=False)


GPT2LM = causal_lm(GPT2Classifier)
