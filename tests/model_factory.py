"""Small random ``transformers`` classifiers and padded batches, shared by the model-level tests.

Nothing is downloaded: the models are built from ``transformers``' own config classes, seeded, in
eval mode, with non-trivial biases and norm parameters so that no rule is tested on zeros. A new
family adds its config to :data:`CONFIGS`.
"""

from __future__ import annotations

import torch

COMMON = dict(hidden_size=36, num_hidden_layers=2, num_attention_heads=6, intermediate_size=50,
              max_position_embeddings=40, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _bert(transformers, **extra):
    config = transformers.BertConfig(**{**COMMON, "vocab_size": 100, "type_vocab_size": 2, **extra})
    return transformers.BertForSequenceClassification(config)


def _roberta(transformers, **extra):
    config = transformers.RobertaConfig(**{**COMMON, "vocab_size": 100, "type_vocab_size": 1, "pad_token_id": 1,
                                           "bos_token_id": 0, "eos_token_id": 2, **extra})
    return transformers.RobertaForSequenceClassification(config)


#: family name -> builder(transformers, **config overrides) of a *ForSequenceClassification model
CONFIGS = {"bert": _bert, "roberta": _roberta}


def make_hf(kind: str, seed: int = 0, **extra):
    """A seeded random ``kind`` classifier (see :data:`CONFIGS`), eval mode, biases and norms perturbed."""
    import transformers

    torch.manual_seed(seed)
    model = CONFIGS[kind](transformers, **extra).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def padded(lengths=(12, 7, 3), pad_id: int = 0, vocab: int = 100, seed: int = 1, first_id: int = 3,
           token_types: bool = False):
    """Random ids in [first_id, vocab), right-padded to the longest length: ``(ids, mask, types)``.

    ``types`` is None, or (``token_types``) 1 from the middle of the longest length on, 0 at padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(first_id, vocab, (len(lengths), max(lengths)), generator=g)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids[mask == 0] = pad_id
    if not token_types:
        return ids, mask, None
    types = torch.zeros_like(ids)
    types[:, max(lengths) // 2 :] = 1
    return ids, mask, types * mask


def zero_biases(model, linear: bool = True, norm: bool = True):
    """Zero, in place, the linear layers' biases (``linear``) and the norms' β (``norm``); returns the model."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") and (norm if "LayerNorm" in name or "norm" in name else linear):
                p.zero_()
    return model
