"""The registry of model families, keyed by ``model_type``.

A family is one small module under ``lrp_kernels/models/families/`` that defines its classifier
(an :class:`~lrp_kernels.models.base.EncoderClassifier` with the parameter names ``transformers``
saves) and registers a :class:`Family`: which ``model_type`` values it serves, its config class,
and how checkpoint keys map onto its parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lrp_kernels.errors import CheckpointError

if TYPE_CHECKING:
    from lrp_kernels.models.base import EncoderClassifier
    from lrp_kernels.models.config import ModelConfig

#: architectures (config.json ``architectures`` / the transformers class) whose head is not a
#: sequence classifier: loading them would silently explain the wrong output
_WRONG_HEADS = ("ForMultipleChoice", "ForTokenClassification", "ForQuestionAnswering", "ForCausalLM",
                "LMHeadModel", "ForNextSentencePrediction")


@dataclass(frozen=True)
class Family:
    """How one architecture plugs into the model layer."""

    name: str
    model_types: tuple[str, ...]
    classifier: "type[EncoderClassifier]"
    config: "type[ModelConfig]"
    #: attribute holding the encoder (``bert``, ``roberta``, …): a headless checkpoint's keys get it prepended
    base_prefix: str
    #: parameters a headless checkpoint may lack (initialized afresh, with a warning)
    optional_prefixes: tuple[str, ...] = ("classifier.",)
    #: checkpoint key prefixes that are not ours (pre-training heads)
    ignored_prefixes: tuple[str, ...] = ("cls.", "lm_head.", "qa_outputs.")
    #: old spellings in checkpoint keys -> ours
    renames: tuple[tuple[str, str], ...] = (("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias"))
    #: buffers some checkpoints save that we compute
    ignored_suffixes: tuple[str, ...] = ("position_ids", "token_type_ids")
    aliases: tuple[str, ...] = field(default=())

    def normalize_key(self, key: str) -> str | None:
        """A checkpoint key as our parameter name, or None when it is not ours."""
        if key.startswith(self.ignored_prefixes) or key.endswith(self.ignored_suffixes):
            return None
        for old, new in self.renames:
            key = key.replace(old, new)
        if not key.startswith(self.base_prefix + ".") and not key.startswith(self.optional_prefixes):
            key = f"{self.base_prefix}.{key}"
        return key


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make ``family`` serve its ``model_types``."""
    for model_type in family.model_types:
        if model_type in _FAMILIES and _FAMILIES[model_type] is not family:
            raise ValueError(f"model_type {model_type!r} is already served by {_FAMILIES[model_type].name}")
        _FAMILIES[model_type] = family
    return family


def family(name: str, *model_types: str, config: "type[ModelConfig] | None" = None, optional=None, ignored=None,
           renames=None):
    """Class decorator: register the decorated classifier as the family ``name`` serving
    ``model_types``, with its ``base_prefix``, its config class (default :class:`ModelConfig`) and,
    when given, the key prefixes a headless checkpoint may lack (``optional``) or that are not ours
    (``ignored``) and the (old, new) spellings of checkpoint keys (``renames``) instead of
    :class:`Family`'s defaults."""

    def decorate(classifier):
        from lrp_kernels.models.config import ModelConfig

        rules = {"optional_prefixes": optional, "ignored_prefixes": ignored, "renames": renames}
        register(Family(name=name, model_types=model_types, classifier=classifier, config=config or ModelConfig,
                        base_prefix=classifier.base_prefix, **{k: v for k, v in rules.items() if v is not None}))
        return classifier

    return decorate


def supported_model_types() -> tuple[str, ...]:
    """Every registered ``model_type`` (the families register when ``lrp_kernels.models`` is imported)."""
    return tuple(_FAMILIES)


def family_for(model_type: str | None, source: str = "config") -> Family:
    """The family serving ``model_type``; :class:`CheckpointError` naming the supported ones otherwise."""
    family = _FAMILIES.get(model_type)
    if family is None:
        raise CheckpointError(
            f"{source}: unsupported architecture model_type={model_type!r}; supported: {', '.join(_FAMILIES)}"
        )
    return family


def check_architecture(name: str, source: str) -> None:
    """Reject a transformers class whose head is not a sequence classifier."""
    if name.endswith(_WRONG_HEADS):
        raise CheckpointError(
            f"{source}: {name} is not a sequence classifier; lrp-kernels explains *ForSequenceClassification "
            "models (or a headless encoder, which gets a fresh classification head)"
        )
