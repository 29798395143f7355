"""Small random ``transformers`` classifiers and padded batches, shared by the model-level tests.

Nothing is downloaded: the models are built from ``transformers``' own config classes, seeded, in
eval mode, with non-trivial biases and norm parameters so that no rule is tested on zeros. A new
family adds its config to :data:`CONFIGS`.
"""

from __future__ import annotations

import copy

import torch

COMMON = dict(hidden_size=36, num_hidden_layers=2, num_attention_heads=6, intermediate_size=50,
              max_position_embeddings=40, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _bert(transformers, **extra):
    config = transformers.BertConfig(**{"vocab_size": 100, "type_vocab_size": 2, **COMMON, **extra})
    return transformers.BertForSequenceClassification(config)


_ROBERTA_IDS = dict(vocab_size=100, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)


def _roberta(transformers, **extra):
    config = transformers.RobertaConfig(**{**_ROBERTA_IDS, **COMMON, **extra})
    return transformers.RobertaForSequenceClassification(config)


def _xlm_roberta(transformers, **extra):
    config = transformers.XLMRobertaConfig(**{**_ROBERTA_IDS, **COMMON, **extra})
    return transformers.XLMRobertaForSequenceClassification(config)


def _camembert(transformers, **extra):
    # CamemBERT's <s> and </s> are ids 5 and 6 (0 and 2 are the unused <s>NOTUSED, </s>NOTUSED)
    config = transformers.CamembertConfig(**{**_ROBERTA_IDS, "bos_token_id": 5, "eos_token_id": 6, **COMMON, **extra})
    return transformers.CamembertForSequenceClassification(config)


_DISTILBERT_NAMES = dict(hidden_size="dim", num_hidden_layers="n_layers", num_attention_heads="n_heads",
                         intermediate_size="hidden_dim", hidden_dropout_prob="dropout",
                         attention_probs_dropout_prob="attention_dropout", hidden_act="activation")


def _distilbert(transformers, **extra):
    values = {_DISTILBERT_NAMES.get(k, k): v for k, v in {"vocab_size": 100, **COMMON, **extra}.items()}
    config = transformers.DistilBertConfig(seq_classif_dropout=0.0, **values)
    return transformers.DistilBertForSequenceClassification(config)


def _electra(transformers, **extra):
    # embedding_size != hidden_size: the embeddings_project linear is part of the model
    config = transformers.ElectraConfig(**{"vocab_size": 100, "type_vocab_size": 2, "embedding_size": 20, **COMMON,
                                           **extra})
    return transformers.ElectraForSequenceClassification(config)


def _albert(transformers, **extra):
    # 3 applications of one shared layer group; hidden_act gelu_new (the tanh GELU) as released
    config = transformers.AlbertConfig(**{"vocab_size": 100, "type_vocab_size": 2, "embedding_size": 20,
                                          "classifier_dropout_prob": 0.0, **COMMON, "num_hidden_layers": 3,
                                          "hidden_act": "gelu_new", **extra})
    return transformers.AlbertForSequenceClassification(config)


#: family name -> builder(transformers, **config overrides) of a *ForSequenceClassification model
CONFIGS = {"bert": _bert, "roberta": _roberta, "xlm-roberta": _xlm_roberta, "camembert": _camembert,
           "distilbert": _distilbert, "electra": _electra, "albert": _albert}


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


def zero_biases(model, linear: bool = True, norm: bool = True):
    """A copy of ``model`` with the linear layers' biases (``linear``) and the norms' β (``norm``)
    zeroed (embedding tables untouched)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") and (norm if "LayerNorm" in name or "norm" in name else linear):
                p.zero_()
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


# ------------------------------------------------------------------ autograd on the transformers model
def _leaf_at(hf, point, store):
    """A hook that makes the tensor at ``point`` (a read-out point of :mod:`lrp_kernels.methods`) a
    leaf of the graph (stored in ``store``)."""
    emb = hf.base_model.embeddings

    def leaf(t):
        store["x"] = t.detach().requires_grad_(True)
        return store["x"]

    if point == "embedding_sum":
        return emb.LayerNorm.register_forward_pre_hook(lambda _m, args: (leaf(args[0]),))
    module = emb.LayerNorm if point == "embedding_output" else emb.word_embeddings
    return module.register_forward_hook(lambda _m, _args, out: leaf(out))


def hf_gradient_at(hf, ids, mask, target, point, **inputs):
    """x at ``point`` and ∂logit_target/∂x by plain autograd on the unmodified transformers model."""
    store = {}
    handle = _leaf_at(hf, point, store)
    try:
        logits = hf(input_ids=ids, attention_mask=mask, **inputs).logits
        (grad,) = torch.autograd.grad(logits[torch.arange(len(ids)), target].sum(), store["x"])
    finally:
        handle.remove()
    return store["x"].detach(), grad
