"""A BERT/RoBERTa sequence classifier built on the LRP ops.

The module tree and parameter names mirror Hugging Face's ``BertForSequenceClassification`` and
``RobertaForSequenceClassification``, so a checkpoint's state dict loads as it is and an in-memory
``transformers`` model can lend its parameters (shared, not copied) — see
:mod:`lrp_kernels.models.loading`. The forward is the ordinary one; which backward rule every op
uses is chosen per call by a :class:`~lrp_kernels.rules.Rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lrp_kernels.backend import resolve
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.ops.activation import lrp_activation
from lrp_kernels.ops.attention import additive_mask, lrp_attention
from lrp_kernels.ops.layer_norm import lrp_layer_norm
from lrp_kernels.ops.linear import lrp_linear
from lrp_kernels.rules import GRADIENT, Rules

_PLAIN_ACT = {
    "gelu": lambda x: F.gelu(x),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "relu": torch.relu,
}


@dataclass
class _Pass:
    """What one forward pass needs besides the weights: rules, backend and the masks."""

    rules: Rules
    impl: Any
    mask: torch.Tensor | None  # additive float32 [B, L], for the LRP attention op
    plain_mask: torch.Tensor | None  # additive [B, 1, 1, L] in the model dtype, for the plain path

    def linear(self, x, layer: nn.Linear, activation: str | None = None):
        eps = self.rules.linear_eps
        identity = self.rules.activation == "identity"
        if eps is None:
            z = F.linear(x, layer.weight, layer.bias)
            if activation is None:
                return z
            return lrp_activation(z, activation, self.impl) if identity else _PLAIN_ACT[activation](z)
        if activation in ("gelu", "gelu_tanh") and identity:
            return lrp_linear(x, layer.weight, layer.bias, eps, activation, self.impl)
        z = lrp_linear(x, layer.weight, layer.bias, eps, None, self.impl)
        if activation is None:
            return z
        return lrp_activation(z, activation, self.impl) if identity else _PLAIN_ACT[activation](z)

    def layer_norm(self, x, norm: nn.LayerNorm):
        if self.rules.layer_norm == "identity":
            return lrp_layer_norm(x, norm.weight, norm.bias, norm.eps, self.impl)
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class SelfAttention(nn.Module):
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


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = DenseLayerNorm(config.hidden_size, config.hidden_size, config.layer_norm_eps)


class Intermediate(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)


class Layer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = DenseLayerNorm(config.intermediate_size, config.hidden_size, config.layer_norm_eps)


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))


class Pooler(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)


class Backbone(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        if config.family == "bert":
            self.pooler = Pooler(config)


class RobertaHead(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)


class BertClassifier(nn.Module):
    """BERT (MiniLM included) or RoBERTa with a sequence-classification head.

    ``forward`` gives the logits. For attribution, :meth:`embed` gives the embedding sum
    (word + position + token type, the input of the embedding LayerNorm) and
    :meth:`forward_from_embeddings` continues from it under a rule set, so that one backward pass
    from the logits yields the modified gradient at the embedding sum.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        setattr(self, config.family, Backbone(config))
        if config.family == "bert":
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        else:
            self.classifier = RobertaHead(config)

    @property
    def backbone(self) -> Backbone:
        return getattr(self, self.config.family)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path, num_labels=None, dtype=None, device=None) -> "BertClassifier":
        """Load a Hugging Face checkpoint directory (see :func:`lrp_kernels.models.load_pretrained`)."""
        from lrp_kernels.models.loading import load_pretrained

        return load_pretrained(path, num_labels=num_labels, dtype=dtype, device=device)

    @classmethod
    def from_hf(cls, hf_model) -> "BertClassifier":
        """Wrap an in-memory ``transformers`` model; parameters are shared, not copied."""
        from lrp_kernels.models.loading import from_hf

        return from_hf(hf_model)

    # ------------------------------------------------------------------ forward
    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.config.family == "roberta":
            pad = self.config.pad_token_id
            keep = input_ids.ne(pad).long()
            return torch.cumsum(keep, dim=1) * keep + pad
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The embedding sum e = word + position + token type, [B, L, hidden]."""
        emb = self.backbone.embeddings
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return (
            emb.word_embeddings(input_ids)
            + emb.position_embeddings(self.position_ids(input_ids))
            + emb.token_type_embeddings(token_type_ids)
        )

    def forward_from_embeddings(
        self,
        embedding_sum: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        rules: Rules = GRADIENT,
        backend: str | None = None,
        output_attentions: bool = False,
    ):
        """Logits from the embedding sum, every op using the backward rule of ``rules``.

        With ``output_attentions`` (plain rules only) also returns the attention probabilities of
        every layer, a list of [B, heads, L, L] tensors.
        """
        if output_attentions and not rules.is_plain:
            raise ValueError("output_attentions needs the plain gradient rules")
        impl = None if rules.is_plain else resolve(backend, embedding_sum.device)[1]
        plain_mask = None
        if attention_mask is not None:
            plain_mask = torch.zeros(attention_mask.shape, dtype=embedding_sum.dtype, device=embedding_sum.device)
            plain_mask = plain_mask.masked_fill(~attention_mask.bool(), torch.finfo(embedding_sum.dtype).min)
            plain_mask = plain_mask[:, None, None, :]
        p = _Pass(rules, impl, additive_mask(attention_mask) if impl is not None else None, plain_mask)

        cfg = self.config
        n_heads, head_dim = cfg.num_attention_heads, cfg.head_dim
        scale = head_dim**-0.5
        batch, length, hidden = embedding_sum.shape
        x = p.layer_norm(embedding_sum, self.backbone.embeddings.LayerNorm)
        attentions = []
        for layer in self.backbone.encoder.layer:
            sa = layer.attention.self
            q, k, v = (
                p.linear(x, lin).view(batch, length, n_heads, head_dim).transpose(1, 2)
                for lin in (sa.query, sa.key, sa.value)
            )
            if rules.attention == "grad":
                if output_attentions:
                    probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale + (
                        plain_mask if plain_mask is not None else 0.0), dim=-1)
                    attentions.append(probs)
                    ctx = torch.matmul(probs, v)
                else:
                    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=plain_mask, scale=scale)
            else:
                ctx = lrp_attention(q, k, v, p.mask, scale, rules.attention, impl)
            ctx = ctx.transpose(1, 2).reshape(batch, length, hidden)
            out = layer.attention.output
            x = p.layer_norm(p.linear(ctx, out.dense) + x, out.LayerNorm)
            h = p.linear(x, layer.intermediate.dense, cfg.activation)
            out = layer.output
            x = p.layer_norm(p.linear(h, out.dense) + x, out.LayerNorm)

        first = x[:, 0]
        if cfg.family == "bert":
            pooled = p.linear(first, self.backbone.pooler.dense, "tanh")
            logits = p.linear(pooled, self.classifier)
        else:
            head = self.classifier
            logits = p.linear(p.linear(first, head.dense, "tanh"), head.out_proj)
        return (logits, attentions) if output_attentions else logits

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """Plain logits [B, num_labels]."""
        return self.forward_from_embeddings(self.embed(input_ids, token_type_ids), attention_mask)
