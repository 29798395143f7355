"""Decoder classifiers (Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3, GPT-2): one causal block layer,
parametrized by a family's :class:`DecoderLayout` (names and optional parts) and its config.

Every family computes what ``transformers``' ``*ForSequenceClassification`` does
(``GenericForSequenceClassification``; GPT-2's own class):

    e = embed(ids) (× √hidden: Gemma; + learned positions: GPT-2)     the read-out point of every method
    for each layer: x = x + [post-attention norm](attention(pre-attention norm(x)))
                    x = x + [post-MLP norm](mlp(pre-MLP norm(x)))
    h = final norm(x);   logits = score(h[b, t_b])   (a linear without bias)

with causal attention (``causal=True`` of the attention op; a sliding layer's ``sliding_window`` s is
the contract's window s − 1: transformers keeps key j for query i when i − s < j ≤ i), rotary positions
by layer type (GPT-2: none), grouped K/V heads, optional q/k norms before the rotation (Qwen3, Gemma 3),
soft-capped scores (Gemma 2), and t_b the rightmost position whose id is not ``pad_token_id`` (left or
right padding; the last position without a pad id, where a batch of more than one row is refused as
transformers refuses it). Positions are the columns, pads included (``position_ids = arange(L)`` in
transformers), so a decoder's batch is never re-packed (:attr:`repacks_padding`): left-padded rows
are explained as transformers computes them.

There is no embedding norm: ``embedding_sum``, ``embedding_output`` and the first block's input are the
same tensor, so every method reads there; ``word_embeddings`` reads the token term of it (Gemma: the
scaled token embeddings, GPT-2: without the positions). Token type ids are not used.

The head is separate from the backbone (:class:`DecoderBackbone`): the causal language model
(:class:`DecoderLM`, ``causal_lm(<family classifier>)``) is the same backbone under ``lm_head``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from lrp_kernels.errors import CheckpointError, InputError
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.blocks import Conv1D, RMSNorm, merge_heads, rotary_tables, run_layers
from lrp_kernels.models.config import GATED_ACTS, HIDDEN_ACTS, ModelConfig

LAYER_TYPES = ("full_attention", "sliding_attention")
ROPE_TYPES = ("default", "linear", "llama3")


# ------------------------------------------------------------------------------------ rotary positions
@dataclass(frozen=True)
class Rope:
    """One layer type's rotary positions, as ``transformers.modeling_rope_utils`` computes them for
    ``rope_type`` default, linear (inverse frequencies / factor) and llama3 (Llama 3.1's smoothing)."""

    rope_type: str = "default"
    theta: float = 10000.0
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max: int = 8192

    @classmethod
    def of(cls, params: dict, source: str) -> "Rope":
        kind = params.get("rope_type", params.get("type", "default"))
        if kind not in ROPE_TYPES:
            raise CheckpointError(f"{source}: unsupported rotary embedding rope_type {kind!r}; supported: "
                                  f"{', '.join(ROPE_TYPES)}")
        if params.get("partial_rotary_factor", 1.0) != 1.0:
            raise CheckpointError(f"{source}: rotary positions on part of the head (partial_rotary_factor "
                                  f"{params['partial_rotary_factor']}) are not supported")
        return cls(kind, float(params.get("rope_theta", 10000.0)), float(params.get("factor", 1.0)),
                   float(params.get("low_freq_factor", 1.0)), float(params.get("high_freq_factor", 4.0)),
                   int(params.get("original_max_position_embeddings", 8192)))

    def inv_freq(self, dim: int) -> torch.Tensor:
        """The inverse frequencies [dim / 2], float32."""
        inv = 1.0 / (self.theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        if self.rope_type == "linear":
            return inv / self.factor
        if self.rope_type == "llama3":
            low, high = self.original_max / self.low_freq_factor, self.original_max / self.high_freq_factor
            wavelen = 2 * math.pi / inv
            scaled = torch.where(wavelen > low, inv / self.factor, inv)
            smooth = (self.original_max / wavelen - self.low_freq_factor) / (self.high_freq_factor - self.low_freq_factor)
            smoothed = (1 - smooth) * scaled / self.factor + smooth * scaled
            return torch.where(~(wavelen < high) * ~(wavelen > low), smoothed, scaled)
        return inv


def rope_parameters(raw: dict[str, Any], legacy_theta: float = 10000.0) -> dict[str, dict]:
    """``rope_parameters`` per layer type from a config.json of transformers 5 (``rope_parameters``, flat
    or nested by layer type) or 4 (``rope_theta`` and ``rope_scaling``)."""
    params = raw.get("rope_parameters") or {}
    if set(params) & set(LAYER_TYPES):
        return {kind: dict(params.get(kind) or {}) for kind in LAYER_TYPES}
    flat = {"rope_theta": raw.get("rope_theta", legacy_theta), **(raw.get("rope_scaling") or {}), **params}
    if "partial_rotary_factor" in raw:
        flat.setdefault("partial_rotary_factor", raw["partial_rotary_factor"])
    if "original_max_position_embeddings" in raw:  # Phi-3 keeps it beside the rope parameters
        flat["original_max_position_embeddings"] = raw["original_max_position_embeddings"]
    return {kind: dict(flat) for kind in LAYER_TYPES}


# ------------------------------------------------------------------------------------ configuration
@dataclass
class DecoderConfig(ModelConfig):
    """The fields of a decoder classifier's config.json (transformers 5 names; 4.x names are read
    too: ``rope_theta``/``rope_scaling``). A family subclasses it for its defaults and spellings."""

    model_type: str = "llama"
    hidden_act: str = "silu"
    layer_norm_eps: float = 1e-6
    pad_token_id: int | None = None
    num_key_value_heads: int = 0
    head_dim: int = 0
    rope: dict = field(default_factory=dict)
    attention_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None
    layer_types: list = field(default_factory=list)
    attn_logit_softcapping: float | None = None
    query_pre_attn_scalar: float | None = None
    #: the language model's ``lm_head`` is the token embedding matrix (no copy)
    tie_word_embeddings: bool = False
    #: c of the language model's final logits c·tanh(z/c) (Gemma 2); the classifier's ``score`` never caps
    final_logit_softcapping: float | None = None

    hidden_acts: ClassVar[dict[str, str]] = GATED_ACTS
    #: config.json's name of the norm epsilon
    eps_key: ClassVar[str] = "rms_norm_eps"
    #: transformers' rope_theta when a config.json names none
    default_theta: ClassVar[float] = 10000.0

    @property
    def max_tokens(self) -> int:
        return self.max_position_embeddings

    @classmethod
    def normalize(cls, raw: dict[str, Any]) -> dict[str, Any]:
        values = super().normalize(raw)
        heads = values.get("num_attention_heads", 12)
        values["layer_norm_eps"] = values.get(cls.eps_key, 1e-6)
        values["num_key_value_heads"] = values.get("num_key_value_heads") or heads
        values["head_dim"] = values.get("head_dim") or values.get("hidden_size", 768) // heads
        values["rope"] = rope_parameters(values, cls.default_theta)
        values["layer_types"] = cls.layer_types_of(values)
        return values

    @classmethod
    def layer_types_of(cls, values: dict[str, Any]) -> list[str]:
        """Full or sliding attention per layer: ``layer_types`` as saved, else every layer full (a
        family overrides what its config class derives)."""
        return list(values.get("layer_types") or ["full_attention"] * values.get("num_hidden_layers", 12))

    def validate(self, raw: dict[str, Any], source: str) -> None:
        if self.hidden_act not in self.hidden_acts:
            raise CheckpointError(f"{source}: unsupported hidden_act {self.hidden_act!r}; supported: "
                                  f"{', '.join(self.hidden_acts)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise CheckpointError(f"{source}: num_attention_heads is not a multiple of num_key_value_heads")
        if set(self.layer_types) - set(LAYER_TYPES) or len(self.layer_types) != self.num_hidden_layers:
            raise CheckpointError(f"{source}: layer_types must name {self.num_hidden_layers} of {LAYER_TYPES}")
        if raw.get("use_bidirectional_attention"):
            raise CheckpointError(f"{source}: bidirectional attention (use_bidirectional_attention) is not "
                                  "supported; lrp-kernels explains causal decoders")
        for kind in set(self.layer_types):
            Rope.of(self.rope[kind], source)

    def window(self, layer_type: str) -> int | None:
        """The attention contract's window of a layer of this type: a sliding window of s tokens keeps
        the keys i − s < j ≤ i (transformers' sliding_window_overlay), the contract's i − j ≤ s − 1."""
        if layer_type == "sliding_attention" and self.sliding_window is not None:
            return self.sliding_window - 1
        return None

    def attention_scale(self, index: int) -> float:
        """The score scale of layer ``index``: 1/√head_dim, or 1/√query_pre_attn_scalar (Gemma)."""
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    @property
    def qkv_bias(self) -> bool:
        return self.attention_bias

    @property
    def out_bias(self) -> bool:
        return self.attention_bias


# ------------------------------------------------------------------------------------ the block layer
@dataclass(frozen=True)
class DecoderLayout:
    """How a family's decoder names its parameters (as transformers saves them) and which optional
    parts it has. Norm roles: before attention, after it (Gemma's sandwich), before the MLP, after it."""

    embed: str = "embed_tokens"
    positions: str | None = None  # learned absolute positions (GPT-2: wpe)
    layers: str = "layers"
    final_norm: str = "norm"
    attention: str = "self_attn"
    qkv: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")  # one name: one fused projection
    out: str = "o_proj"
    qk_norm: tuple[str, str] | None = None  # (q norm, k norm) over the head dim, before the rotation
    mlp: str = "mlp"
    mlp_in: tuple[str, ...] = ("gate_proj", "up_proj")  # gated: (gate, up) or one fused; else (up,)
    gated: bool = True
    down: str = "down_proj"
    norms: tuple[str | None, ...] = ("input_layernorm", None, "post_attention_layernorm", None)
    norm_offset: float = 0.0  # Gemma's RMSNorm scales by (1 + weight)
    layer_norm: bool = False  # LayerNorm with bias (GPT-2) instead of RMSNorm
    linear: type = nn.Linear  # GPT-2: Conv1D
    embed_scale: bool = False  # Gemma: the token embeddings × √hidden
    rotary: bool = True

    def norm(self, config: DecoderConfig, size: int) -> nn.Module:
        if self.layer_norm:
            return nn.LayerNorm(size, eps=config.layer_norm_eps)
        return RMSNorm(size, eps=config.layer_norm_eps, offset=self.norm_offset)

    def make_linear(self, n_in: int, n_out: int, bias: bool) -> nn.Module:
        return Conv1D(n_out, n_in) if self.linear is Conv1D else nn.Linear(n_in, n_out, bias=bias)


def _split(t: torch.Tensor, heads: int, dim: int) -> torch.Tensor:
    """[B, L, heads·dim] → [B, L, heads, dim] (a view)."""
    return t.view(*t.shape[:-1], heads, dim)


class DecoderAttention(nn.Module):
    """q, k, v (separate or one fused projection), q/k norms, causal attention (rotary, grouped K/V,
    window, soft-cap), the output projection."""

    def __init__(self, config: DecoderConfig, layout: DecoderLayout, index: int):
        super().__init__()
        self.layout, self.index = layout, index
        self.heads, self.kv_heads, self.dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.layer_type = config.layer_types[index]
        self.window, self.scale = config.window(self.layer_type), config.attention_scale(index)
        self.softcap = config.attn_logit_softcapping
        sizes = (self.heads * self.dim, self.kv_heads * self.dim, self.kv_heads * self.dim)
        if len(layout.qkv) == 1:
            setattr(self, layout.qkv[0], layout.make_linear(config.hidden_size, sum(sizes), config.qkv_bias))
        else:
            for name, size in zip(layout.qkv, sizes):
                setattr(self, name, layout.make_linear(config.hidden_size, size, config.qkv_bias))
        setattr(self, layout.out, layout.make_linear(sizes[0], config.hidden_size, config.out_bias))
        for name in layout.qk_norm or ():
            setattr(self, name, layout.norm(config, self.dim))

    def forward(self, h, p, rotary):
        # the projections leave their ε-ratio to the attention's backward, unless a norm sits between
        eps = 0.0 if self.layout.qk_norm else p.attention_input_eps()
        if len(self.layout.qkv) == 1:
            qkv = p.linear(h, getattr(self, self.layout.qkv[0]), ratio_by_consumer=eps > 0)
            q, k, v = qkv.split((self.heads * self.dim, self.kv_heads * self.dim, self.kv_heads * self.dim), dim=-1)
        else:
            q, k, v = (p.linear(h, getattr(self, name), ratio_by_consumer=eps > 0) for name in self.layout.qkv)
        q, k, v = _split(q, self.heads, self.dim), _split(k, self.kv_heads, self.dim), _split(v, self.kv_heads, self.dim)
        if self.layout.qk_norm:
            q, k = (p.norm(t, getattr(self, name)) for t, name in zip((q, k), self.layout.qk_norm))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        o = p.attention(q, k, v, self.scale, window=self.window, rotary=rotary, input_eps=eps, causal=True,
                        softcap=self.softcap)
        return p.linear(merge_heads(o), getattr(self, self.layout.out))


class DecoderMLP(nn.Module):
    """A gated MLP (SwiGLU, GeGLU; gate and up separate or fused) or up → activation → down (GPT-2)."""

    def __init__(self, config: DecoderConfig, layout: DecoderLayout):
        super().__init__()
        self.layout, self.act = layout, config.activation
        hidden, inter = config.hidden_size, config.intermediate_size
        widths = (2 * inter,) if layout.gated and len(layout.mlp_in) == 1 else (inter,) * len(layout.mlp_in)
        for name, width in zip(layout.mlp_in, widths):
            setattr(self, name, layout.make_linear(hidden, width, config.mlp_bias))
        setattr(self, layout.down, layout.make_linear(inter, hidden, config.mlp_bias))

    def forward(self, h, p):
        first, *rest = (getattr(self, name) for name in self.layout.mlp_in)
        if self.layout.gated:
            u = p.gated_mlp(h, first, self.act, rest[0] if rest else None)
        else:
            u = p.linear(h, first, self.act)
        return p.linear(u, getattr(self, self.layout.down))


class DecoderLayer(nn.Module):
    """x + [norm](attention(norm(x))), then x + [norm](mlp(norm(x))): the norms of the layout's roles."""

    def __init__(self, config: DecoderConfig, layout: DecoderLayout, index: int):
        super().__init__()
        self.layout, self.layer_type = layout, config.layer_types[index]
        setattr(self, layout.attention, DecoderAttention(config, layout, index))
        setattr(self, layout.mlp, DecoderMLP(config, layout))
        for name in layout.norms:
            if name is not None:
                setattr(self, name, layout.norm(config, config.hidden_size))

    def _norm(self, p, x, role: int):
        name = self.layout.norms[role]
        return x if name is None else p.norm(x, getattr(self, name))

    def forward(self, x, p, rotary: dict):
        a = getattr(self, self.layout.attention)(self._norm(p, x, 0), p, rotary.get(self.layer_type))
        x = x + self._norm(p, a, 1)
        m = getattr(self, self.layout.mlp)(self._norm(p, x, 2), p)
        return x + self._norm(p, m, 3)


class DecoderBackbone(nn.Module):
    """Token embeddings (and learned positions), the layers and the final norm, under the layout's names."""

    def __init__(self, config: DecoderConfig, layout: DecoderLayout):
        super().__init__()
        self.layout = layout
        setattr(self, layout.embed, nn.Embedding(config.vocab_size, config.hidden_size))
        if layout.positions:
            setattr(self, layout.positions, nn.Embedding(config.max_position_embeddings, config.hidden_size))
        setattr(self, layout.layers, nn.ModuleList(DecoderLayer(config, layout, i)
                                                   for i in range(config.num_hidden_layers)))
        setattr(self, layout.final_norm, layout.norm(config, config.hidden_size))


class DecoderClassifier(EncoderClassifier):
    """A decoder sequence classifier: :class:`DecoderBackbone` → ``score`` at :meth:`read_index`.
    A family sets :attr:`layout` (and ``base_prefix`` where it is not ``model``; :meth:`make_backbone`
    where the backbone sits deeper)."""

    layout: ClassVar[DecoderLayout] = DecoderLayout()
    repacks_padding = False

    def __init__(self, config: DecoderConfig):
        super().__init__(config, self.make_backbone(config), **self.make_head(config))

    def make_backbone(self, config: DecoderConfig) -> nn.Module:
        """The module stored as :attr:`base_prefix` (a family whose backbone is nested overrides it and
        :attr:`backbone`)."""
        return DecoderBackbone(config, self.layout)

    def make_head(self, config: DecoderConfig) -> dict[str, nn.Module]:
        """The head's modules by name: ``score`` (a linear without bias)."""
        return {"score": nn.Linear(config.hidden_size, config.num_labels, bias=False)}

    @property
    def word_embeddings(self) -> nn.Embedding:
        return getattr(self.backbone, self.layout.embed)

    def word_part(self, input_ids):
        """The token embeddings as they enter the first block (Gemma: × √hidden, rounded to float32 and
        then to the weights' dtype, as transformers keeps it)."""
        w = self.word_embeddings(input_ids)
        if self.layout.embed_scale:
            w = w * torch.tensor(self.config.hidden_size ** 0.5, dtype=torch.float32).to(w.dtype)
        return w

    def embed(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None):
        """The first block's input: the (scaled) token embeddings, plus learned positions where the family
        has them (GPT-2; :meth:`position_ids`: the classifier's 0 … L−1 over the columns, pads included,
        as transformers counts them). Token type ids are not used."""
        e = self.word_part(input_ids)
        if self.layout.positions:
            if position_ids is None:
                position_ids = self.position_ids(input_ids, attention_mask)
            e = e + getattr(self.backbone, self.layout.positions)(position_ids)
        return e

    @property
    def accepts_padding(self) -> bool:
        return self.config.pad_token_id is not None

    def read_index(self, input_ids, attention_mask=None):
        """The rightmost position whose id is not ``pad_token_id`` (transformers'
        ``GenericForSequenceClassification``; 0 for a row of padding only); without a pad id the last
        position, and a batch of more than one row is refused, as transformers refuses it."""
        pad = self.config.pad_token_id
        if pad is None:
            if input_ids.shape[0] != 1:
                raise InputError("Cannot handle batch sizes > 1 if no padding token is defined (the model's "
                                 "config has no pad_token_id: explain one sequence at a time)")
            return torch.full((1,), input_ids.shape[1] - 1, dtype=torch.long, device=input_ids.device)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device, dtype=torch.int32)
        return (positions * (input_ids != pad).to(torch.int32)).argmax(-1).long()

    def rotary_positions(self, p) -> torch.Tensor | None:
        """[B, L] the rotary positions of a pass, or None for the columns 0 … L−1 (the classifier's,
        as transformers' sequence classifiers count them)."""
        return None

    def _rotary(self, like, positions: torch.Tensor | None = None) -> dict:
        """(cos, sin) per layer type present (none without rotary positions), of ``positions`` [B, L]
        (None: the columns)."""
        if not self.layout.rotary:
            return {}
        config, length = self.config, like.shape[1]
        return {kind: rotary_tables(length, config.head_dim, 0.0, like, positions=positions,
                                    inv_freq=Rope.of(config.rope[kind], config.model_type).inv_freq(config.head_dim))
                for kind in set(config.layer_types)}

    def encode(self, e, p):
        rotary = self._rotary(e, self.rotary_positions(p))
        x = run_layers(p, getattr(self.backbone, self.layout.layers), p.tap("embedding_output", e), rotary)
        return p.norm(x, getattr(self.backbone, self.layout.final_norm))

    @staticmethod
    def read_hidden(hidden, p) -> torch.Tensor:
        """The hidden states the head reads: [B, hidden] at the read index (the last position without one,
        as transformers does for ``inputs_embeds``), or [M, hidden] at the pass's (row, position) pairs —
        a selection, whose rule is its gradient."""
        rows = p.read_rows
        if rows is None:
            rows = torch.arange(hidden.shape[0], device=hidden.device)
        index = p.read_index if p.read_index is not None else torch.full_like(rows, hidden.shape[1] - 1)
        return hidden[rows.to(hidden.device), index.to(hidden.device)]

    def classify(self, hidden, p):
        """``score`` of the hidden state the head reads (:meth:`read_hidden`)."""
        return p.linear(self.read_hidden(hidden, p), self.score)


def real_positions(attention_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """[B, L] (or [1, L] without a mask) positions as ``generate`` counts them: the real tokens of a row
    0, 1, 2, … (the cumulative sum of the mask − 1), padding 0; ``like`` [B, L, …] gives L and the device."""
    if attention_mask is None:
        return torch.arange(like.shape[1], device=like.device)[None]
    keep = attention_mask.to(like.device).long()
    return (keep.cumsum(-1) - 1).masked_fill(keep == 0, 0)


class DecoderLM(DecoderClassifier):
    """A decoder family's causal language model (``*ForCausalLM``; GPT-2's ``GPT2LMHeadModel``): the
    family's backbone, then ``lm_head`` (no bias; the token embedding matrix itself where
    ``tie_word_embeddings``) at the positions explained only — never logits over every position — and
    Gemma's final soft-cap c·tanh(z/c) (the identity rule of an element-wise monotone map).

    Positions count a row's real tokens (the attention mask's cumulative sum − 1, pads 0), as
    transformers' ``generate`` computes them, so a left-padded prompt is the same input as the prompt
    alone (GPT-2's learned positions included). The head reads the last real token of each row
    (:meth:`read_index`, by the attention mask), or the (row, position) pairs of a pass that explains
    several next tokens (``read_rows``). A family's LM is ``causal_lm(<its classifier>)``."""

    def make_head(self, config: DecoderConfig) -> dict[str, nn.Module]:
        return {"lm_head": nn.Linear(config.hidden_size, config.vocab_size, bias=False)}

    def __init__(self, config: DecoderConfig):
        super().__init__(config)
        self.tie_weights()

    def tie_weights(self) -> None:
        """``lm_head.weight`` is the token embedding matrix itself where ``tie_word_embeddings``."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.word_embeddings.weight

    @property
    def accepts_padding(self) -> bool:
        return True

    def position_ids(self, input_ids, attention_mask=None):
        return real_positions(attention_mask, input_ids).expand_as(input_ids)

    def read_index(self, input_ids, attention_mask=None):
        """The last real token of each row (the rightmost position the attention mask keeps; the last
        position without a mask; 0 for a row of padding only)."""
        if attention_mask is None:
            return torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, dtype=torch.long, device=input_ids.device)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device, dtype=torch.int32)
        return (positions * attention_mask.to(input_ids.device).bool().to(torch.int32)).argmax(-1).long()

    def rotary_positions(self, p):
        return None if p.token_mask is None else real_positions(p.token_mask, p.token_mask)

    def classify(self, hidden, p):
        """Logits [B | M, vocab] at the positions the head reads, soft-capped where the config says. The
        hidden states read are the tap ``head_input`` [B | M, hidden]: everything after it is row-wise, so
        one backward from the logits to it serves every target (:mod:`lrp_kernels.token_attribution`)."""
        z = p.linear(p.tap("head_input", self.read_hidden(hidden, p)), self.lm_head)
        cap = self.config.final_logit_softcapping
        return z if cap is None else p.activation(z / cap, "tanh") * cap


def causal_lm(classifier: type[DecoderClassifier]) -> type[DecoderLM]:
    """The causal language model of a decoder family — its classifier's layout, backbone and config under
    :class:`DecoderLM`'s head — registered for the family's ``model_type``s."""
    from lrp_kernels.models.registry import register_language_model

    name = classifier.__name__.removesuffix("Classifier") + "LM"
    lm = type(name, (DecoderLM, classifier), {"__module__": classifier.__module__,
                                              "__doc__": f"The causal language model of {classifier.__name__}'s family."})
    return register_language_model(classifier, lm)


__all__ = ["DecoderAttention", "DecoderBackbone", "DecoderClassifier", "DecoderConfig", "DecoderLM", "DecoderLayer",
           "DecoderLayout", "DecoderMLP", "HIDDEN_ACTS", "LAYER_TYPES", "Rope", "causal_lm", "real_positions",
           "rope_parameters"]
