"""The base class of every family's classifier: one forward for all rule sets and read-out points.

A family implements :meth:`~EncoderClassifier.classify` (hidden states → logits) and, where its
layout differs from the defaults, :meth:`~EncoderClassifier.embed` (the embedding sum),
:meth:`~EncoderClassifier.encode` (embedding sum → hidden states; default: embedding norm, then
``backbone.encoder``) and :meth:`~EncoderClassifier.position_ids` (where positions depend on the
ids) — out of the blocks of :mod:`lrp_kernels.models.blocks`. Everything else (the pass, attention
maps, taps, plain ``forward``) is here, once.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from lrp_kernels.backends.contract import Backend
from lrp_kernels.models.blocks import Ledger, Pass
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.rules import GRADIENT, Rules


class EncoderClassifier(nn.Module):
    """A sequence classifier whose every op can run under an LRP rule set.

    ``forward`` gives the logits. For attribution, :meth:`embed` gives the embedding sum (word +
    position + token type, the input of the embedding norm) and :meth:`run` continues from it
    under a rule set, so that one backward pass from the logits yields the modified gradient at
    the embedding sum (and at any tapped point).
    """

    #: the attribute that holds the encoder (``bert``, ``roberta``, …), as in transformers
    base_prefix: ClassVar[str] = "model"
    #: whether a batch that is not right-padded (left padding, holes) may be explained re-packed so
    #: that every sequence starts at position 0 (true where positions count the tokens, as in the
    #: encoders; a decoder's positions are the columns, pads included, in transformers: never re-packed)
    repacks_padding: ClassVar[bool] = True

    def __init__(self, config: ModelConfig, backbone: nn.Module | None = None, **modules: nn.Module):
        """``backbone`` becomes the attribute :attr:`base_prefix`; ``modules`` (the head) keep their names."""
        super().__init__()
        self.config = config
        if backbone is not None:
            setattr(self, self.base_prefix, backbone)
        for name, module in modules.items():
            setattr(self, name, module)

    @staticmethod
    def labels_linear(config: ModelConfig, width: int | None = None) -> nn.Linear:
        """The final linear of a head: ``width`` (default hidden_size) → num_labels."""
        return nn.Linear(width or config.hidden_size, config.num_labels)

    @property
    def backbone(self) -> nn.Module:
        return getattr(self, self.base_prefix)

    # ------------------------------------------------------------------ what a family provides
    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.backbone.embeddings.word_embeddings

    def position_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L] the position of every column (``attention_mask``: for a family that counts only real tokens)."""
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)

    def word_part(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The word embeddings' term of :meth:`embed`'s sum, as it enters it [B, L, width] (the read-out
        point ``word_embeddings``; Gemma scales it)."""
        return self.word_embeddings(input_ids)

    def read_index(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """[B] int64: the position whose final hidden state the head reads, per example, where that
        depends on the ids (decoders: the rightmost token that is not padding; a language model: the
        last real token by ``attention_mask``); None where the head reads a fixed position or pools (the
        encoders). :meth:`run` takes it as ``read_index``."""
        return None

    def tie_weights(self) -> None:
        """Make parameters that are one tensor in ``transformers`` one tensor again (after loading weights
        by assignment); nothing to do for a classifier."""

    @property
    def accepts_padding(self) -> bool:
        """Whether a batch of several rows (padded) can be run: not for a decoder without a pad id,
        whose head reads the last position (:meth:`read_index`)."""
        return True

    def embed(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None) -> torch.Tensor:
        """The embedding sum e = word + position (+ token type), [B, L, width].

        ``position_ids`` defaults to :meth:`position_ids` of ``input_ids`` (and ``attention_mask``)."""
        if position_ids is None:
            position_ids = self.position_ids(input_ids, attention_mask)
        return self.backbone.embeddings.sum(input_ids, position_ids, token_type_ids)

    def encode(self, e: torch.Tensor, p: Pass) -> torch.Tensor:
        """Hidden states [B, L, hidden] from the embedding sum: by default the embedding norm (the
        read-out point ``embedding_output``), then ``backbone.encoder``."""
        return self.backbone.encoder(self.backbone.embeddings.normalize(p, e), p)

    def classify(self, hidden: torch.Tensor, p: Pass) -> torch.Tensor:
        """Logits [B, num_labels] from the hidden states."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def run(self, embedding_sum, attention_mask=None, rules: Rules = GRADIENT, backend: Backend | None = None,
            output_attentions: bool = False, taps=(), ledger: Ledger | None = None,
            read_index: torch.Tensor | None = None, read_rows: torch.Tensor | None = None,
            checkpoint: bool = False) -> tuple[torch.Tensor, Pass]:
        """Logits from the embedding sum, every op under ``rules``, and the :class:`Pass` (its
        recorded attention maps and tapped tensors). The encoder's output is the tap ``encoder_output``;
        a :class:`~lrp_kernels.models.blocks.Ledger` records what relevance per layer needs;
        ``read_index``: :meth:`read_index` of the ids (for a family whose head needs it) — or, with
        ``read_rows`` [M], the positions [M] of M (row, position) pairs a decoder head reads (several
        positions of one row: a language model explaining several next tokens; logits [M, labels]);
        ``checkpoint`` recomputes each layer during the backward (:meth:`Pass.layer`)."""
        p = Pass.create(embedding_sum, attention_mask, rules, backend, output_attentions, taps, ledger,
                        read_index=read_index, read_rows=read_rows, checkpoint=checkpoint)
        return self.classify(p.tap("encoder_output", self.encode(embedding_sum, p)), p), p

    def forward_from_embeddings(self, embedding_sum, attention_mask=None, rules: Rules = GRADIENT,
                                backend: Backend | None = None, output_attentions: bool = False,
                                read_index: torch.Tensor | None = None):
        """Logits from the embedding sum (and, with ``output_attentions``, the attention maps)."""
        logits, p = self.run(embedding_sum, attention_mask, rules, backend, output_attentions, read_index=read_index)
        return (logits, p.attentions) if output_attentions else logits

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """Plain logits [B, num_labels]."""
        return self.forward_from_embeddings(self.embed(input_ids, token_type_ids, attention_mask=attention_mask),
                                            attention_mask, read_index=self.read_index(input_ids, attention_mask))
