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


#: the dimensions of the newer families' tiny models (head dim 6: even, for rotary positions)
SMALL = dict(vocab_size=100, hidden_size=36, num_attention_heads=6, intermediate_size=50, max_position_embeddings=40,
             num_labels=3, pad_token_id=0)


def _modernbert(transformers, **extra):
    """4 layers alternating global / local; local layers see 3 tokens either side (shorter than the
    batches' 12), mean pooling, every optional bias on."""
    config = transformers.ModernBertConfig(**{**SMALL, "num_hidden_layers": 4, "local_attention": 6,
                                              "global_attn_every_n_layers": 2, "global_rope_theta": 1000.0,
                                              "local_rope_theta": 100.0, "attention_bias": True, "mlp_bias": True,
                                              "norm_bias": True, "classifier_bias": True,
                                              "classifier_pooling": "mean", **extra})
    return transformers.ModernBertForSequenceClassification(config)


def _eurobert(transformers, **extra):
    """2 layers, 6 query heads sharing 2 K/V heads, late pooling, biases on."""
    config = transformers.EuroBertConfig(**{**SMALL, "num_hidden_layers": 2, "num_key_value_heads": 2,
                                            "attention_bias": True, "mlp_bias": True, "rope_theta": 500.0,
                                            "classifier_pooling": "late", **extra})
    return transformers.EuroBertForSequenceClassification(config)


_DEBERTA_V3 = dict(relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm", share_att_key=True,
                   pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0)
_DEBERTA_V2 = dict(relative_attention=True, max_relative_positions=6, norm_rel_ebd="none", share_att_key=False,
                   pos_att_type="c2p|p2c", position_biased_input=True, type_vocab_size=2)


def _deberta(transformers, version="v3", **extra):
    """2 layers; v3: log buckets (8, so distances ≥ 4 share rows), shared keys, the position norm, no
    absolute positions; v2: separate position projections, 6 relative positions (clamped), absolute
    positions and token types."""
    config = transformers.DebertaV2Config(**{**SMALL, "num_hidden_layers": 2, "pooler_hidden_size": 36,
                                             "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                                             "pooler_dropout": 0.0, **(_DEBERTA_V3 if version == "v3" else _DEBERTA_V2),
                                             **extra})
    return transformers.DebertaV2ForSequenceClassification(config)


def _deberta_v1(transformers, **extra):
    """DeBERTa (v1): in_proj with q/v biases, both relative terms over 16 relative positions (more
    than the batches' 12 tokens: the rows it reads depend on the length), absolute positions."""
    config = transformers.DebertaConfig(**{**SMALL, "num_hidden_layers": 2, "hidden_dropout_prob": 0.0,
                                           "attention_probs_dropout_prob": 0.0, "relative_attention": True,
                                           "max_relative_positions": 16, "pos_att_type": "c2p|p2c", **extra})
    return transformers.DebertaForSequenceClassification(config)


#: the dimensions of the decoders' tiny models: 4 query heads sharing 2 K/V heads of dim 8
DECODER = dict(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64, num_labels=3, pad_token_id=0)


def _rope(transformers, params: dict) -> dict:
    """Config keywords of rotary ``params`` in the installed transformers' spelling: ``rope_parameters``
    from transformers 5, ``rope_theta`` + ``rope_scaling`` before (Gemma 3: the global θ and scaling,
    and ``rope_local_base_freq`` for the sliding layers)."""
    if installed_version(transformers) >= (5, 0):
        return {"rope_parameters": params}
    if "full_attention" in params:
        return {**_rope(transformers, params["full_attention"]),
                "rope_local_base_freq": params["sliding_attention"]["rope_theta"]}
    scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    return {"rope_theta": params["rope_theta"],
            "rope_scaling": scaling if scaling.get("rope_type", "default") != "default" else None}


def _llama(transformers, **extra):
    """Every bias on, Llama 3.1's rope frequencies (scaled below 16 positions of the original length)."""
    rope = {"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    config = transformers.LlamaConfig(**{**DECODER, "attention_bias": True, "mlp_bias": True,
                                         **_rope(transformers, rope), **extra})
    return transformers.LlamaForSequenceClassification(config)


def _mistral(transformers, **extra):
    """A sliding window of 4 tokens (the contract's window 3) in every layer: shorter than the batches."""
    config = transformers.MistralConfig(**{**DECODER, "sliding_window": 4, **_rope(transformers, {"rope_theta": 300.0}),
                                           **extra})
    return transformers.MistralForSequenceClassification(config)


#: the first transformers release whose eager and sdpa Qwen2 slide the layers ``max_window_layers`` names
#: (``layer_types``); before it only flash_attention_2 did: 4.48's eager/sdpa ignore ``sliding_window``
#: (``eager_attention_forward`` drops the keyword, the mask has no window), 4.49–4.52's mask slides
#: every layer
QWEN_LAYER_WINDOWS = (4, 53)


def _qwen2(transformers, **extra):
    """q/k/v biases; layer 1 slides (4 tokens), layer 0 is global — from transformers 4.53 on; before
    it, no window (:data:`QWEN_LAYER_WINDOWS`: eager and sdpa compute another model there)."""
    window = ({"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}
              if installed_version(transformers) >= QWEN_LAYER_WINDOWS else {"use_sliding_window": False})
    config = transformers.Qwen2Config(**{**DECODER, **window, **extra})
    return transformers.Qwen2ForSequenceClassification(config)


def _qwen3(transformers, **extra):
    """q/k norms; every attention bias on; head_dim 16 (the heads are wider than hidden / heads)."""
    config = transformers.Qwen3Config(**{**DECODER, "head_dim": 16, "attention_bias": True, **extra})
    return transformers.Qwen3ForSequenceClassification(config)


def _gemma2(transformers, **extra):
    """Layer 0 slides (4 tokens), layer 1 is global; scores capped at 2 (|S| reaches it: the cap bends).

    Eager attention, the one that soft-caps in every release (transformers 4 defaults Gemma 2 to sdpa,
    whose ``sdpa_attention_forward`` ignores ``softcap``; 5 has no sdpa for it), and no cache: 4.48's
    ``HybridCache`` overflows on a prompt longer than the window (its ``update`` is not told the window;
    fixed in 4.49) — a cache never changes the logits of one forward."""
    config = transformers.Gemma2Config(**{**DECODER, "head_dim": 16, "query_pre_attn_scalar": 24,
                                          "attn_logit_softcapping": 2.0, "final_logit_softcapping": 5.0,
                                          "sliding_window": 4, "attn_implementation": "eager", "use_cache": False,
                                          **extra})
    return transformers.Gemma2ForSequenceClassification(config)


def _gemma3(transformers, **extra):
    """q/k norms, local (θ 100) and global (θ 1000, linear ×2) rotary bases, one sliding layer of 4 tokens."""
    rope = {"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
            "full_attention": {"rope_type": "linear", "rope_theta": 1000.0, "factor": 2.0}}
    config = transformers.Gemma3TextConfig(**{**DECODER, "head_dim": 16, "query_pre_attn_scalar": 24,
                                              "sliding_window": 4, "layer_types": ["sliding_attention",
                                                                                   "full_attention"],
                                              **_rope(transformers, rope), **extra})
    return transformers.Gemma3TextForSequenceClassification(config)


def _gemma3_multimodal(transformers, **extra):
    """Gemma3ForSequenceClassification: the text model of :func:`_gemma3` beside a tiny vision tower."""
    top = {k: extra.pop(k) for k in ("num_labels", "id2label", "label2id", "attn_implementation") if k in extra}
    text = _gemma3(transformers, **extra).config.to_dict()
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    config = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                       **{"num_labels": DECODER["num_labels"], **top})
    return transformers.Gemma3ForSequenceClassification(config)


def _phi3(transformers, **extra):
    """Fused qkv_proj and gate_up_proj; a sliding window of 5 tokens in every layer."""
    config = transformers.Phi3Config(**{**DECODER, "sliding_window": 5, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                                        **extra})
    return transformers.Phi3ForSequenceClassification(config)


def _gpt2(transformers, **extra):
    values = {**DECODER, **extra}
    names = dict(hidden_size="n_embd", num_hidden_layers="n_layer", num_attention_heads="n_head",
                 max_position_embeddings="n_positions", intermediate_size="n_inner")
    config = transformers.GPT2Config(**{names.get(k, k): v for k, v in values.items() if k != "num_key_value_heads"},
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2ForSequenceClassification(config)


#: the decoder families of :data:`CONFIGS`
DECODERS = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "gemma3", "phi3", "gpt2")

#: family name -> builder(transformers, **config overrides) of a *ForSequenceClassification model
CONFIGS = {
    "bert": _bert,
    "roberta": _roberta,
    "xlm-roberta": _xlm_roberta,
    "camembert": _camembert,
    "distilbert": _distilbert,
    "electra": _electra,
    "albert": _albert,
    "modernbert": _modernbert,
    "eurobert": _eurobert,
    "deberta_v3": _deberta,
    "deberta_v2": lambda transformers, **extra: _deberta(transformers, "v2", **extra),
    "deberta_v1": _deberta_v1,
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "gemma2": _gemma2,
    "gemma3_text": _gemma3,
    "gemma3": _gemma3_multimodal,
    "phi3": _phi3,
    "gpt2": _gpt2,
}


def _is_norm(name: str) -> bool:
    return "LayerNorm" in name or "norm" in name or ".ln_" in name


#: the transformers release that added a family, where it is newer than the lowest supported one
#: (pyproject.toml): on older releases the tests that build that family's transformers model skip
ADDED_IN = {"eurobert": (5, 3), "qwen3": (4, 51), "gemma3": (4, 54), "gemma3_text": (4, 57)}


def installed_version(transformers=None) -> tuple[int, int]:
    """(major, minor) of the installed transformers."""
    if transformers is None:
        import transformers
    major, minor = transformers.__version__.split(".")[:2]
    return int(major), int(minor)


def require_family(kind: str) -> None:
    """Skip the calling test when the installed transformers predates the family ``kind``."""
    import pytest
    import transformers

    added = ADDED_IN.get(kind)
    if added is not None and installed_version(transformers) < added:
        pytest.skip(f"transformers {transformers.__version__} has no {kind} (added in {'.'.join(map(str, added))})")


def make_hf(kind: str, seed: int = 0, **extra):
    """A seeded random ``kind`` classifier (see :data:`CONFIGS`), eval mode, biases and norms perturbed."""
    import transformers

    require_family(kind)
    torch.manual_seed(seed)
    try:
        model = CONFIGS[kind](transformers, **extra).eval()
    except ValueError as exc:  # e.g. ELECTRA before transformers 5 has no sdpa attention
        if "attention implementation" not in str(exc):
            raise
        import pytest

        pytest.skip(f"transformers {transformers.__version__}: {kind} has no {extra.get('attn_implementation')} attention")
    _perturb(model)
    return model


#: the causal language model class of each decoder family of :data:`DECODERS` (transformers' names)
LM_CLASSES = {"gpt2": "GPT2LMHeadModel", "gemma3": "Gemma3ForConditionalGeneration",
              "gemma3_text": "Gemma3ForCausalLM"}


def make_lm(kind: str, seed: int = 0, **extra):
    """A seeded random causal language model of the decoder family ``kind`` (the config of
    :func:`make_hf`'s classifier), eval mode, biases and norms perturbed; tied embeddings where the
    family's config ties them (Gemma, GPT-2)."""
    import transformers

    config = make_hf(kind, seed=seed, **extra).config
    name = LM_CLASSES.get(kind) or type(config).__name__.replace("Config", "ForCausalLM")
    torch.manual_seed(seed)
    model = getattr(transformers, name)(config).eval()
    _perturb(model)
    return model


def reload_strictly(hf, directory):
    """``hf`` saved to ``directory`` and loaded back by :func:`lrp_kernels.models.load_pretrained`,
    any warning an error: nothing missing, nothing unused."""
    import warnings

    from lrp_kernels.models import load_pretrained

    hf.save_pretrained(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_pretrained(directory)


def _perturb(model) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or _is_norm(name):
                p.add_(0.1 * torch.randn_like(p))


def zero_biases(model, linear: bool = True, norm: bool = True):
    """A copy of ``model`` with the linear layers' biases (``linear``) and the norms' β (``norm``)
    zeroed (embedding tables untouched)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") and (norm if _is_norm(name) else linear):
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
def read_out_modules(hf):
    """(module whose input is the embedding sum, module whose output is ``embedding_output``, the word
    embeddings) of a ``transformers`` classifier; a family without an embedding norm (EuroBERT) reads
    every point at the token embeddings: (None, embeddings, embeddings)."""
    base = hf.base_model
    if not hasattr(base, "embeddings"):
        return None, base.get_input_embeddings(), base.get_input_embeddings()
    norm = getattr(base.embeddings, "LayerNorm", None) or base.embeddings.norm
    return norm, norm, base.get_input_embeddings()


def decoder_gradient(hf, ids, mask, target):
    """(e, ∂logit_target/∂e, the token term of e) of a ``transformers`` decoder classifier by plain
    autograd, e the input of its first block (a pre-hook makes it a leaf); the token term is the
    input embedding module's output (Gemma: scaled; GPT-2: without the positions) — for Gemma 2 before
    transformers 5, whose embedding module does not scale (the model's forward multiplies by its
    ``normalizer``, √hidden in the embeddings' dtype), that output times the same normalizer."""
    store = {}

    def leaf(_module, args, kwargs):
        store["e"] = args[0].detach().requires_grad_(True)
        return (store["e"], *args[1:]), kwargs

    base = hf.base_model
    if base is hf:  # Gemma3ForSequenceClassification before transformers 5 (base_model_prefix "")
        base = hf.model
    base = getattr(base, "language_model", base)  # Gemma 3's multimodal model: its language model
    first = (base.layers if hasattr(base, "layers") else base.h)[0]
    handles = [first.register_forward_pre_hook(leaf, with_kwargs=True),
               base.get_input_embeddings().register_forward_hook(lambda _m, _a, out: store.setdefault("w", out.detach()))]
    try:
        logits = hf(input_ids=ids, attention_mask=mask).logits
        (grad,) = torch.autograd.grad(logits[torch.arange(len(ids)), target].sum(), store["e"])
    finally:
        for handle in handles:
            handle.remove()
    words = store["w"]
    if hf.config.model_type.startswith("gemma") and not hasattr(base.get_input_embeddings(), "embed_scale"):
        words = words * torch.tensor(hf.config.get_text_config().hidden_size ** 0.5, dtype=words.dtype)
    return store["e"].detach(), grad, words


def hf_gradient_at(hf, ids, mask, target, point, **inputs):
    """x at read-out ``point`` (a read-out point of :mod:`lrp_kernels.methods`) and ∂logit_target/∂x by
    plain autograd on the unmodified transformers model (a hook makes x a leaf of the graph)."""
    store = {}

    def leaf(t):
        store["x"] = t.detach().requires_grad_(True)
        return store["x"].clone()  # a non-leaf: some transformers releases change it in place (DeBERTa)

    before, after, word = read_out_modules(hf)
    if point == "embedding_sum" and before is not None:
        handle = before.register_forward_pre_hook(lambda _m, args: (leaf(args[0]),))
    else:
        module = {"embedding_sum": word, "embedding_output": after, "word_embeddings": word}[point]
        handle = module.register_forward_hook(lambda _m, _args, out: leaf(out))
    try:
        logits = hf(input_ids=ids, attention_mask=mask, **inputs).logits
        (grad,) = torch.autograd.grad(logits[torch.arange(len(ids)), target].sum(), store["x"])
    finally:
        handle.remove()
    return store["x"].detach(), grad
