"""The shared block layer the model families are built from.

:class:`Pass` is what one forward needs besides the weights — the rule set, the resolved backend,
the masks — and applies the right op (plain or LRP rule) for every linear, norm, activation and
attention; a family's forward calls only these. The functions below compose them into the blocks
several families share (multi-head self-attention, the post-norm residual, the feed-forward), and
the modules are the Hugging Face-named containers of the BERT-style families (BERT, RoBERTa,
XLM-R, CamemBERT, ELECTRA): their parameter names are exactly what ``transformers`` saves.

Taps: a family calls ``p.tap(name, x)`` at the points a method may read relevance from
(``embedding_output`` after the embedding norm, ``layer.<i>`` at the input of block i); the pass
keeps the tensors that were asked for, so that one backward yields the gradient at each of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import torch
import torch.nn.functional as F
from torch import nn

from lrp_kernels.backends.contract import Backend
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.ops.activation import lrp_activation
from lrp_kernels.ops.attention import additive_mask, lrp_attention
from lrp_kernels.ops.layer_norm import lrp_layer_norm
from lrp_kernels.ops.linear import FUSED_ACTIVATIONS, lrp_linear
from lrp_kernels.rules import GRADIENT, Rules

_PLAIN_ACT = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "relu": torch.relu,
}


@dataclass
class Pass:
    """One forward pass: rules, backend, masks, and what it records (attention maps, taps)."""

    rules: Rules
    backend: Backend | None  # the resolved backend of the LRP ops (None: the torch reference)
    mask: torch.Tensor | None  # additive float32 [B, L], for the LRP attention op
    plain_mask: torch.Tensor | None  # additive [B, 1, 1, L] in the model dtype, for the plain path
    record_attentions: bool = False
    tap_names: frozenset = frozenset()
    attentions: list = field(default_factory=list)
    tapped: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def create(cls, like: torch.Tensor, attention_mask=None, rules: Rules = GRADIENT, backend: Backend | None = None,
               output_attentions: bool = False, taps=()) -> "Pass":
        """A pass over a batch like ``like`` ([B, L, …], the model dtype) with a 0/1 ``attention_mask``."""
        if output_attentions and not rules.is_plain:
            raise ValueError("output_attentions needs the plain gradient rules")
        if backend is not None and not isinstance(backend, Backend):
            raise TypeError(f"backend must be a resolved lrp_kernels.backends.Backend, got {type(backend).__name__}")
        plain_mask = None
        if attention_mask is not None:
            plain_mask = torch.zeros(attention_mask.shape, dtype=like.dtype, device=like.device)
            plain_mask = plain_mask.masked_fill(~attention_mask.bool(), torch.finfo(like.dtype).min)[:, None, None, :]
        mask = None if rules.is_plain else additive_mask(attention_mask)
        return cls(rules, backend, mask, plain_mask, output_attentions, frozenset(taps))

    def tap(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Keep ``x`` under ``name`` when it was asked for; return it unchanged."""
        if name in self.tap_names:
            self.tapped[name] = x
        return x

    def linear(self, x, layer: nn.Linear, activation: str | None = None, ratio_by_consumer: bool = False):
        """``activation(layer(x))``: the ε-rule (fused with a GELU's identity rule) or the plain op.
        ``ratio_by_consumer``: the op that reads the output applies this linear's ε-ratio in its
        backward (:meth:`attention_input_eps`), so the linear itself is plain."""
        eps = None if ratio_by_consumer else self.rules.linear_eps
        if eps is not None and activation in FUSED_ACTIVATIONS and self.rules.activation == "identity":
            return lrp_linear(x, layer.weight, layer.bias, eps, activation, self.backend)
        if eps is None:
            z = F.linear(x, layer.weight, layer.bias)
        else:
            z = lrp_linear(x, layer.weight, layer.bias, eps, None, self.backend)
        return z if activation is None else self.activation(z, activation)

    def activation(self, x, fn: str):
        if self.rules.activation == "identity":
            return lrp_activation(x, fn, self.backend)
        return _PLAIN_ACT[fn](x)

    def norm(self, x, norm: nn.LayerNorm):
        if self.rules.layer_norm == "identity":
            return lrp_layer_norm(x, norm.weight, norm.bias, norm.eps, self.backend)
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    def attention_input_eps(self) -> float:
        """The ε of the q/k/v projections when the LRP attention applies their ratio in its backward
        (fused into the kernels that write g_q, g_k, g_v); 0 when the projections apply it."""
        eps = self.rules.linear_eps
        return eps if eps and self.rules.attention != "grad" else 0.0

    def attention(self, q, k, v, scale: float, input_eps: float = 0.0):
        """Attention over [B, H, L, D] heads under the rule set's attention rule (``input_eps``:
        :meth:`attention_input_eps` when the projections left their ratio to it)."""
        if self.rules.attention != "grad":
            return lrp_attention(q, k, v, self.mask, scale, self.rules.attention, self.backend, input_eps)
        if input_eps:
            raise ValueError("input_eps needs an LRP attention rule")
        if not self.record_attentions:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.plain_mask, scale=scale)
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        probs = torch.softmax(scores + (self.plain_mask if self.plain_mask is not None else 0.0), dim=-1)
        self.attentions.append(probs)
        return torch.matmul(probs, v)


# ---------------------------------------------------------------------------------- functional blocks
def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, H·D] -> [B, H, L, D]."""
    batch, length, _ = x.shape
    return x.view(batch, length, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H·D]."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


def self_attention(p: Pass, x, query: nn.Linear, key: nn.Linear, value: nn.Linear, heads: int):
    """Multi-head self-attention of ``x`` [B, L, hidden] (before the output projection); under an LRP
    attention rule the ε-ratio of the projections is applied by the attention's backward."""
    eps = p.attention_input_eps()
    q, k, v = (split_heads(p.linear(x, lin, ratio_by_consumer=eps > 0), heads) for lin in (query, key, value))
    return merge_heads(p.attention(q, k, v, q.shape[-1] ** -0.5, input_eps=eps))


def post_norm(p: Pass, x, residual, norm: nn.LayerNorm):
    """``norm(x + residual)``: the residual connection of a post-norm (BERT-style) block."""
    return p.norm(x + residual, norm)


# ---------------------------------------------------------------------------------- BERT-style modules
class Embeddings(nn.Module):
    """``word + position (+ token type)`` then LayerNorm, of width ``size`` (ELECTRA/ALBERT: embedding_size)."""

    def __init__(self, config: ModelConfig, size: int | None = None, token_types: bool = True):
        super().__init__()
        size = size or config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, size)
        if token_types:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, size)
        self.LayerNorm = nn.LayerNorm(size, eps=config.layer_norm_eps)

    def sum(self, input_ids, position_ids, token_type_ids=None):
        """The embedding sum e, [B, L, size]."""
        e = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        if hasattr(self, "token_type_embeddings"):
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            e = e + self.token_type_embeddings(token_type_ids)
        return e

    def normalize(self, p: Pass, e):
        """The embedding norm; its output is the read-out point ``embedding_output``."""
        return p.tap("embedding_output", p.norm(e, self.LayerNorm))


class _SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)


class DenseLayerNorm(nn.Module):
    def __init__(self, n_in: int, n_out: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        self.LayerNorm = nn.LayerNorm(n_out, eps=eps)


class _Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self = _SelfAttention(config)
        self.output = DenseLayerNorm(config.hidden_size, config.hidden_size, config.layer_norm_eps)


class _Intermediate(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)


class EncoderLayer(nn.Module):
    """A post-norm BERT layer: attention → dense → add & norm → dense, act → dense → add & norm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads, self.act = config.num_attention_heads, config.activation
        self.attention = _Attention(config)
        self.intermediate = _Intermediate(config)
        self.output = DenseLayerNorm(config.intermediate_size, config.hidden_size, config.layer_norm_eps)

    def forward(self, x, p: Pass):
        sa, out = self.attention.self, self.attention.output
        x = post_norm(p, p.linear(self_attention(p, x, sa.query, sa.key, sa.value, self.heads), out.dense), x,
                      out.LayerNorm)
        h = p.linear(x, self.intermediate.dense, self.act)
        return post_norm(p, p.linear(h, self.output.dense), x, self.output.LayerNorm)


class Encoder(nn.Module):
    """``num_hidden_layers`` layers applied in turn; the input of layer i is the tap ``layer.<i>``."""

    def __init__(self, config: ModelConfig, layer: type[nn.Module] = EncoderLayer):
        super().__init__()
        self.layer = nn.ModuleList(layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x, p: Pass):
        for i, layer in enumerate(self.layer):
            x = layer(p.tap(f"layer.{i}", x), p)
        return x


class Pooler(nn.Module):
    """BERT's pooler: dense → tanh on the first token."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, first: torch.Tensor, p: Pass):
        return p.linear(first, self.dense, "tanh")


class ClassificationHead(nn.Module):
    """dense → ``act`` → out_proj on the first token (RoBERTa: tanh; ELECTRA: GELU)."""

    def __init__(self, config: ModelConfig, act: str):
        super().__init__()
        self.act = act
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, first: torch.Tensor, p: Pass):
        return p.linear(p.linear(first, self.dense, self.act), self.out_proj)
