"""Building a family's classifier — or a decoder family's causal language model — from a checkpoint
directory or an in-memory ``transformers`` model.

A checkpoint directory holds ``config.json`` and the weights (:mod:`lrp_kernels.models.checkpoint`).
Both headless encoders (``BertModel``, e.g. MiniLM) and ``*ForSequenceClassification`` checkpoints
load; a missing classification head is initialized from a seeded generator, with a warning. A
checkpoint whose ``architectures`` name a causal language model (``LlamaForCausalLM``,
``GPT2LMHeadModel``, ``Gemma3ForConditionalGeneration``, …; :func:`~lrp_kernels.models.registry.is_language_model`)
loads as the family's :class:`~lrp_kernels.models.decoder.DecoderLM`, its ``lm_head`` tied to the
token embeddings where ``tie_word_embeddings`` says so (one tensor, as transformers ties them).
"""

from __future__ import annotations

import re
import warnings
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrp_kernels.errors import CheckpointError, InputError, warn_user
from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.checkpoint import read_state_dict
from lrp_kernels.models.config import ModelConfig, read_config_file
from lrp_kernels.models.registry import Family, check_architecture, family_for, is_language_model


def config_from_dict(raw: dict[str, Any], num_labels: int | None = None, source: str = "config",
                     language_model: bool | None = None) -> ModelConfig:
    """The family's :class:`ModelConfig` of a config.json dictionary (unsupported ones: CheckpointError);
    a language model's when ``language_model`` says so (None: when ``architectures`` names one)."""
    architectures = [str(name) for name in raw.get("architectures") or ()]
    for name in architectures:
        check_architecture(name, source)
    if language_model is None:
        language_model = any(is_language_model(name) for name in architectures)
    family = family_for(raw.get("model_type"), source, language_model)
    return family.config.from_dict(raw, num_labels=num_labels, source=source, language_model=language_model)


def read_config(directory: str | Path, num_labels: int | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of the checkpoint in ``directory``."""
    path = Path(directory) / "config.json"
    return config_from_dict(read_config_file(path), num_labels=num_labels, source=str(path))


def build(config: ModelConfig) -> EncoderClassifier:
    """An uninitialized classifier (or language model) of the config's family."""
    return family_for(config.model_type, language_model=config.language_model).classifier(config)


def _fresh_head(model: EncoderClassifier, missing: list[str], seed: int = 0) -> None:
    """Initialize the parameters a headless checkpoint lacks, as Hugging Face does (N(0, σ), b = 0)."""
    generator = torch.Generator().manual_seed(seed)
    std = model.config.initializer_range
    for name in missing:
        module_name, _, kind = name.rpartition(".")
        module = model.get_submodule(module_name)
        shape = getattr(module, kind).shape
        if kind == "weight" and isinstance(module, nn.Linear):
            value = torch.randn(shape, generator=generator) * std
        elif kind == "weight":
            value = torch.ones(shape)
        else:
            value = torch.zeros(shape)
        setattr(module, kind, nn.Parameter(value, requires_grad=False))


def _matching_state(family: Family, state: dict[str, torch.Tensor], expected: dict[str, nn.Parameter],
                    directory: Path, num_labels: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The checkpoint tensors under our names that fit the model, and the names of the ignored ones."""
    normalized = {}
    for key, value in state.items():
        name = family.normalize_key(key)
        if name is not None:
            normalized[name] = value
    for key in [k for k in normalized if k.startswith(family.optional_prefixes)]:
        if key in expected and normalized[key].shape != expected[key].shape and key.startswith("classifier."):
            warnings.warn(f"{directory}: classifier shape {tuple(normalized[key].shape)} does not fit "
                          f"{num_labels} labels; the head is initialized afresh", stacklevel=3)
            del normalized[key]
    for key, value in normalized.items():
        if key in expected and value.shape != expected[key].shape:
            raise CheckpointError(f"{directory}: weight {key} has shape {tuple(value.shape)} but config.json "
                                  f"implies {tuple(expected[key].shape)}")
    unexpected = sorted(set(normalized) - set(expected))
    return {k: v for k, v in normalized.items() if k in expected}, unexpected


def load_pretrained(path, num_labels: int | None = None, dtype=None, device=None) -> EncoderClassifier:
    """Load a Hugging Face checkpoint directory as its family's classifier, in eval mode.

    ``num_labels`` overrides the config (and forces a fresh head when it differs from the saved
    one). Parameters never require grad.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory (it does not exist)")
    config = read_config(directory, num_labels=num_labels)
    family = family_for(config.model_type, language_model=config.language_model)
    with torch.device("meta"):
        model = family.classifier(config)
    expected = dict(model.named_parameters())  # a tied lm_head is the embeddings' (one name, no copy)
    state, unexpected = _matching_state(family, read_state_dict(directory), expected, directory, config.num_labels)
    if getattr(config, "tie_word_embeddings", False) and config.language_model:
        unexpected = [k for k in unexpected if not k.startswith("lm_head.")]  # a saved copy of the tied matrix
    missing = sorted(set(expected) - set(state))
    hard_missing = [k for k in missing if not k.startswith(family.optional_prefixes)]
    if hard_missing:
        raise CheckpointError(
            f"{directory}: the weights lack {len(hard_missing)} parameter(s) of a {config.model_type} model, "
            f"e.g. {hard_missing[0]}"
        )
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()  # assignment replaced the tied tensor under one of its names
    if missing:
        warn_user(f"{directory}: no trained {', '.join(sorted({m.rsplit('.', 1)[0] for m in missing}))} "
                  "in the checkpoint; initialized randomly (seed 0)")
        _fresh_head(model, missing)
    if unexpected:
        warnings.warn(f"{directory}: ignored {len(unexpected)} unused weight(s), e.g. {unexpected[0]}", stacklevel=2)
    model.eval()
    model.requires_grad_(False)
    if dtype is not None or device is not None:
        model.to(device=device, dtype=dtype)
    return model


def _transformers_version() -> tuple[int, int]:
    import transformers

    major, minor = re.match(r"(\d+)\.(\d+)", transformers.__version__).groups()
    return int(major), int(minor)


def from_hf(hf_model) -> EncoderClassifier:
    """A classifier (or causal language model) that shares the parameters of a ``transformers`` sequence
    classifier (or ``*ForCausalLM``, ``GPT2LMHeadModel``, ``Gemma3ForConditionalGeneration``).

    Nothing is copied: our parameters *are* the Hugging Face model's tensors (a tied ``lm_head`` stays
    tied: both names get the one tensor the transformers model holds). Where the installed
    ``transformers`` release computes this model otherwise (:meth:`ModelConfig.transformers_differs`:
    Gemma 2 under 4.x's sdpa, Qwen2/3 sliding windows before 4.53) a warning says how: the family
    computes the model its config describes.
    """
    name = type(hf_model).__name__
    check_architecture(name, name)
    language_model = is_language_model(name)
    if not language_model and not name.endswith("ForSequenceClassification"):
        raise CheckpointError(f"{name}: pass a *ForSequenceClassification model or a causal language model "
                              "(*ForCausalLM), or load a checkpoint directory")
    num_labels = None if language_model else hf_model.config.num_labels
    config = config_from_dict(hf_model.config.to_dict(), num_labels=num_labels, source=name,
                              language_model=language_model)
    differs = config.transformers_differs(getattr(hf_model.config, "_attn_implementation", None),
                                          _transformers_version())
    if differs is not None:
        warnings.warn(f"{name}: {differs}", stacklevel=2)
    with torch.device("meta"):
        model = build(config)
    for param_name, _ in list(model.named_parameters(remove_duplicate=False)):
        try:
            source = hf_model.get_parameter(param_name)
        except AttributeError:
            raise CheckpointError(f"{name} has no parameter {param_name}: pass a *ForSequenceClassification model") from None
        module_name, _, kind = param_name.rpartition(".")
        model.get_submodule(module_name)._parameters[kind] = source
    model.eval()
    return model


# A transformers model -> (our classifier, the identities of the parameters it shares).
_converted: "weakref.WeakKeyDictionary[nn.Module, tuple[EncoderClassifier, tuple[int, ...]]]" = weakref.WeakKeyDictionary()


def _shared_ids(ours: EncoderClassifier, hf_model: nn.Module) -> tuple[int, ...]:
    return tuple(id(hf_model.get_parameter(n)) for n, _ in ours.named_parameters())


def as_lrp_model(model) -> EncoderClassifier:
    """Our classifier for ``model``; a ``transformers`` model is converted once and the conversion
    reused while it still shares every parameter (a replaced head or layer is converted afresh)."""
    if isinstance(model, EncoderClassifier):
        return model
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise InputError(f"expected a lrp_kernels classifier or a transformers model, got {type(model).__name__}")
    cached = _converted.get(model)
    if cached is not None:
        ours, ids = cached
        try:
            if _shared_ids(ours, model) == ids:
                return ours
        except AttributeError:  # a module was removed: convert again (and report that)
            pass
    ours = from_hf(model)
    _converted[model] = (ours, _shared_ids(ours, model))
    return ours
