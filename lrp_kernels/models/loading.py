"""Loading Hugging Face checkpoints into :class:`~lrp_kernels.models.bert.BertClassifier`.

A checkpoint directory holds ``config.json`` and the weights as ``model.safetensors`` (or a sharded
``model.safetensors.index.json``) or ``pytorch_model.bin`` (read with ``weights_only=True``). Both
headless encoders (``BertModel``, e.g. MiniLM) and ``*ForSequenceClassification`` checkpoints load;
a missing classification head is initialized from a seeded generator, with a warning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from lrp_kernels.errors import CheckpointError
from lrp_kernels.models.bert import BertClassifier
from lrp_kernels.models.config import ModelConfig

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_IGNORED_PREFIXES = ("cls.", "lm_head.", "qa_outputs.")


def _read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(directory / "model.safetensors"))
    if (directory / "model.safetensors.index.json").is_file():
        from safetensors.torch import load_file

        index = json.loads((directory / "model.safetensors.index.json").read_text(encoding="utf-8"))
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            if not (directory / shard).is_file():
                raise CheckpointError(f"{directory}: missing file {shard} (named by model.safetensors.index.json)")
            state.update(load_file(str(directory / shard)))
        return state
    if (directory / "pytorch_model.bin").is_file():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise CheckpointError(f"{directory}: missing file model.safetensors (or pytorch_model.bin)")


def _normalize_keys(state: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """Map a checkpoint's keys onto our parameter names (``bert.``/``roberta.`` prefix, old names)."""
    out = {}
    prefix = family + "."
    for key, value in state.items():
        if key.startswith(_IGNORED_PREFIXES) or key.endswith(("position_ids", "token_type_ids")):
            continue
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if not key.startswith(prefix) and not key.startswith("classifier."):
            key = prefix + key
        out[key] = value
    return out


def _fresh_head(model: BertClassifier, missing: list[str], seed: int = 0) -> None:
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


def _finish(model: BertClassifier, dtype, device) -> BertClassifier:
    model.eval()
    model.requires_grad_(False)
    if dtype is not None or device is not None:
        model.to(device=device, dtype=dtype)
    return model


def load_pretrained(path, num_labels: int | None = None, dtype=None, device=None) -> BertClassifier:
    """Load a Hugging Face checkpoint directory as a :class:`BertClassifier` in eval mode.

    ``num_labels`` overrides the config (and forces a fresh head when it differs from the saved
    one). Parameters never require grad.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory (it does not exist)")
    config = ModelConfig.from_file(directory / "config.json", num_labels=num_labels)
    state = _normalize_keys(_read_state_dict(directory), config.family)
    with torch.device("meta"):
        model = BertClassifier(config)
    expected = dict(model.named_parameters())
    for key in [k for k in state if k.startswith("classifier.")]:
        if key in expected and state[key].shape != expected[key].shape:
            warnings.warn(f"{directory}: classifier shape {tuple(state[key].shape)} does not fit "
                          f"{config.num_labels} labels; the head is initialized afresh", stacklevel=2)
            del state[key]
    unexpected = sorted(set(state) - set(expected))
    state = {k: v for k, v in state.items() if k in expected}
    missing = sorted(set(expected) - set(state))
    hard_missing = [k for k in missing if not k.startswith(("classifier.", "bert.pooler."))]
    if hard_missing:
        raise CheckpointError(
            f"{directory}: the weights lack {len(hard_missing)} parameter(s) of a {config.model_type} model, "
            f"e.g. {hard_missing[0]}"
        )
    model.load_state_dict(state, strict=False, assign=True)
    if missing:
        warnings.warn(f"{directory}: no trained {', '.join(sorted({m.rsplit('.', 1)[0] for m in missing}))} "
                      "in the checkpoint; initialized randomly (seed 0)", stacklevel=2)
        _fresh_head(model, missing)
    if unexpected:
        warnings.warn(f"{directory}: ignored {len(unexpected)} unused weight(s), e.g. {unexpected[0]}", stacklevel=2)
    return _finish(model, dtype, device)


def from_hf(hf_model) -> BertClassifier:
    """A :class:`BertClassifier` that shares the parameters of a ``transformers`` sequence classifier.

    Nothing is copied: our parameters *are* the Hugging Face model's tensors.
    """
    raw = hf_model.config.to_dict()
    config = ModelConfig.from_dict(raw, num_labels=hf_model.config.num_labels, source=type(hf_model).__name__)
    with torch.device("meta"):
        model = BertClassifier(config)
    for name, _ in list(model.named_parameters()):
        try:
            source = hf_model.get_parameter(name)
        except AttributeError:
            raise CheckpointError(
                f"{type(hf_model).__name__} has no parameter {name}: pass a *ForSequenceClassification model"
            ) from None
        module_name, _, kind = name.rpartition(".")
        model.get_submodule(module_name)._parameters[kind] = source
    model.eval()
    return model
