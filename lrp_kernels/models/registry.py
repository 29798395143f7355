"""The registry of model families, keyed by ``model_type``.

A family is one small module under ``lrp_kernels/models/families/`` that defines its classifier
(an :class:`~lrp_kernels.models.base.EncoderClassifier` with the parameter names ``transformers``
saves) and registers a :class:`Family`: which ``model_type`` values it serves, its config class,
and how checkpoint keys map onto its parameters. A decoder family also registers its causal
language model (:func:`register_language_model`): the same backbone under a language-model head.
Which of the two a checkpoint or a ``transformers`` model is, is read from its architecture (the
``transformers`` class name): ``*ForCausalLM``, ``*LMHeadModel`` and ``*ForConditionalGeneration``
are language models (:func:`is_language_model`), the rest classifiers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lrp_kernels.errors import CheckpointError

if TYPE_CHECKING:
    from lrp_kernels.models.base import EncoderClassifier
    from lrp_kernels.models.config import ModelConfig

#: architectures (config.json ``architectures`` / the transformers class) whose head is neither a
#: sequence classifier nor a causal language model: loading them would silently explain the wrong output
_WRONG_HEADS = ("ForMultipleChoice", "ForTokenClassification", "ForQuestionAnswering", "ForNextSentencePrediction")
#: architectures of causal language models (next-token logits over the vocabulary)
LANGUAGE_MODEL_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


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
    #: parameters of a head that a checkpoint must hold (a language model's ``lm_head.``), not under base_prefix
    head_prefixes: tuple[str, ...] = ()
    #: checkpoint key prefixes that are not ours (pre-training heads)
    ignored_prefixes: tuple[str, ...] = ("cls.", "lm_head.", "qa_outputs.")
    #: old spellings in checkpoint keys -> ours
    renames: tuple[tuple[str, str], ...] = (("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias"))
    #: buffers some checkpoints save that we compute
    ignored_suffixes: tuple[str, ...] = ("position_ids", "token_type_ids")
    aliases: tuple[str, ...] = field(default=())
    #: the family's causal language model (:func:`register_language_model`), or None
    language_model: "type[EncoderClassifier] | None" = None

    def normalize_key(self, key: str) -> str | None:
        """A checkpoint key as our parameter name, or None when it is not ours."""
        if key.startswith(self.ignored_prefixes) or key.endswith(self.ignored_suffixes):
            return None
        for old, new in self.renames:
            key = key.replace(old, new)
        if not key.startswith((self.base_prefix + ".", *self.optional_prefixes, *self.head_prefixes)):
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


def register_language_model(classifier: type, language_model: type) -> type:
    """Make ``language_model`` (the same backbone as ``classifier``, under a language-model head) the
    causal LM of ``classifier``'s family. Its checkpoint keys: the classifier's, but ``lm_head.``
    is ours and the classifier's optional head (``score.``) is not."""
    family = next((f for f in _FAMILIES.values() if f.classifier is classifier), None)
    if family is None:
        raise ValueError(f"{classifier.__name__} is not a registered classifier")
    lm = dataclasses.replace(family, name=f"{family.name} language model", classifier=language_model,
                             optional_prefixes=(), head_prefixes=("lm_head.",), language_model=None,
                             ignored_prefixes=tuple(p for p in family.ignored_prefixes if p != "lm_head.")
                             + family.optional_prefixes)
    served = dataclasses.replace(family, language_model=language_model)
    for model_type in family.model_types:
        _FAMILIES[model_type] = served
    _LANGUAGE_MODELS[language_model] = lm
    return language_model


_LANGUAGE_MODELS: dict[type, Family] = {}


def is_language_model(architecture: str) -> bool:
    """Whether a transformers class name (config.json ``architectures``) is a causal language model."""
    return architecture.endswith(LANGUAGE_MODEL_HEADS)


def supported_model_types() -> tuple[str, ...]:
    """Every registered ``model_type`` (the families register when ``lrp_kernels.models`` is imported)."""
    return tuple(_FAMILIES)


def family_for(model_type: str | None, source: str = "config", language_model: bool = False) -> Family:
    """The family serving ``model_type`` — with ``language_model``, its causal language model (whose
    ``classifier`` is the LM class); :class:`CheckpointError` naming the supported ones otherwise."""
    family = _FAMILIES.get(model_type)
    if family is None:
        raise CheckpointError(
            f"{source}: unsupported architecture model_type={model_type!r}; supported: {', '.join(_FAMILIES)}"
        )
    if not language_model:
        return family
    if family.language_model is None:
        served = ", ".join(t for t, f in _FAMILIES.items() if f.language_model is not None)
        raise CheckpointError(f"{source}: lrp-kernels has no causal language model of {family.name} "
                              f"(model_type {model_type!r}); language models: {served}")
    return _LANGUAGE_MODELS[family.language_model]


def check_architecture(name: str, source: str) -> None:
    """Reject a transformers class whose head is neither a sequence classifier nor a causal LM."""
    if name.endswith(_WRONG_HEADS):
        raise CheckpointError(
            f"{source}: {name} is not a sequence classifier; lrp-kernels explains *ForSequenceClassification "
            "models (or a headless encoder, which gets a fresh classification head) and the causal language "
            "models (*ForCausalLM) of the decoder families"
        )
