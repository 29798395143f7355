"""The configuration of an encoder classifier, read from a Hugging Face ``config.json``.

:class:`ModelConfig` holds the fields every family has, under BERT's names. A family whose
``config.json`` spells them differently, or that needs more (ELECTRA's ``embedding_size``, ALBERT's
layer groups), subclasses it: :meth:`ModelConfig.normalize` maps the raw dictionary onto the
field names, :meth:`ModelConfig.validate` rejects what the family does not implement.

What the outputs mean is the :class:`Head` of ``problem_type`` (``ModelConfig.head``), read here
once — from config.json, or from the in-memory ``transformers`` model's config, which goes through
the same :meth:`ModelConfig.from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from lrp_kernels.errors import CheckpointError, InputError

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
#: transformers' ``problem_type`` values
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)


@dataclass(frozen=True)
class Head:
    """What a classifier's outputs (``logits`` [..., labels]) mean: transformers' ``problem_type``.

    * ``single_label_classification`` — one class per input: probabilities are the softmax, the
      prediction its argmax (what is explained when no target is given).
    * ``multi_label_classification`` — independent labels (a sigmoid each): a label is predicted when
      its sigmoid is ≥ 0.5; without a target every predicted label is explained, or the top one when
      none is.
    * ``regression`` — each output is a value (no probability); without a target output 0 is
      explained (every output when there are several). A difference of two values is no contrast
      between classes: it is refused.

    ``problem_type`` None in a config (as transformers saves it unless training set it) means
    regression with one label and single-label classification otherwise — transformers' own reading.
    ``vocabulary``: the outputs are a causal language model's next-token logits (single-label: the
    softmax over the vocabulary), too many to explain all at once (``target="all"`` is refused).
    """

    problem_type: str = SINGLE_LABEL
    vocabulary: bool = False

    @classmethod
    def parse(cls, problem_type, num_labels: int, source: str = "config") -> "Head":
        """The head of a config's ``problem_type`` (None: by ``num_labels``); anything else: CheckpointError."""
        if problem_type is None:
            return cls(REGRESSION if num_labels == 1 else SINGLE_LABEL)
        if problem_type not in PROBLEM_TYPES:
            raise CheckpointError(f"{source}: unknown problem_type {problem_type!r}; valid: {', '.join(PROBLEM_TYPES)}")
        return cls(problem_type)

    @property
    def is_regression(self) -> bool:
        return self.problem_type == REGRESSION

    @property
    def is_multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    def explains_several(self, num_labels: int) -> bool:
        """Whether ``target=None`` explains several outputs per input (multi-label; regression with
        several outputs)."""
        return self.is_multi_label or (self.is_regression and num_labels > 1)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor | None:
        """Softmax (single-label), per-label sigmoid (multi-label), or None (regression), float32."""
        if self.is_regression:
            return None
        logits = logits.float()
        return torch.sigmoid(logits) if self.is_multi_label else torch.softmax(logits, dim=-1)

    def measure(self, logits: torch.Tensor) -> torch.Tensor:
        """What the evaluation tracks per output: the probabilities, or the values of a regression."""
        probabilities = self.probabilities(logits)
        return logits.float() if probabilities is None else probabilities

    def predicted(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., labels] bool: the labels the model predicts — the argmax; for multi-label every sigmoid
        ≥ 0.5 (possibly none); for a regression every output."""
        if self.is_regression:
            return torch.ones_like(logits, dtype=torch.bool)
        if self.is_multi_label:
            return torch.sigmoid(logits.float()) >= 0.5
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).bool()

    def explained(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., labels] bool: what ``target=None`` explains — :meth:`predicted`, or the top label of a
        multi-label input that predicts none."""
        chosen = self.predicted(logits)
        top = torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).bool()
        return torch.where(chosen.any(dim=-1, keepdim=True), chosen, top)

    def check_contrast(self, contrast) -> None:
        """A contrast (logit_a − logit_b) compares classes: refused for a regression head."""
        if contrast is not None and self.is_regression:
            raise InputError("contrast compares two classes; this model is a regression (its outputs are values, "
                             "problem_type regression): explain its value without a contrast")

#: ``hidden_act`` of config.json -> the activation name of :mod:`lrp_kernels.ops.activation`
HIDDEN_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
#: the same for gated MLPs (ModernBERT's GeGLU, EuroBERT's SwiGLU): :data:`lrp_kernels.ops.gated_mlp` names
GATED_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "silu": "silu",
              "swish": "silu"}


@dataclass
class ModelConfig:
    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    num_labels: int = 2
    id2label: dict[int, str] = field(default_factory=dict)
    #: transformers' ``problem_type`` (None: by the number of labels; see :class:`Head`)
    problem_type: str | None = None
    #: a causal language model (``*ForCausalLM``): its "labels" are the vocabulary (``num_labels`` =
    #: ``vocab_size``, no ``id2label``: the tokenizer names them); never read from config.json
    language_model: bool = False

    #: the ``hidden_act`` values this family implements
    hidden_acts: ClassVar[dict[str, str]] = HIDDEN_ACTS
    #: this family's config.json names of the fields -> the field names (DistilBERT: ``dim`` -> ``hidden_size``)
    aliases: ClassVar[dict[str, str]] = {}
    #: the defaults of this family's ``transformers`` config class where they differ from the fields'
    #: (BERT's): a config.json that ``transformers`` saved leaves out the values equal to them
    defaults: ClassVar[dict[str, Any]] = {}

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_tokens(self) -> int:
        """The longest input the position embeddings allow."""
        return self.max_position_embeddings

    @property
    def head(self) -> Head:
        """What the outputs mean (:class:`Head`)."""
        parsed = Head.parse(self.problem_type, self.num_labels)
        return Head(parsed.problem_type, vocabulary=self.language_model)

    @property
    def activation(self) -> str:
        """The activation of the feed-forward blocks, as an :mod:`lrp_kernels.ops.activation` name."""
        return self.hidden_acts[self.hidden_act]

    # ------------------------------------------------------------------ reading config.json
    @classmethod
    def normalize(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """The raw config.json dictionary with this family's names (:attr:`aliases`) mapped onto the field names."""
        return {**raw, **{field: raw[name] for name, field in cls.aliases.items() if name in raw}}

    def validate(self, raw: dict[str, Any], source: str) -> None:
        """Raise :class:`CheckpointError` for a configuration this family does not implement."""
        if self.hidden_act not in self.hidden_acts:
            raise CheckpointError(
                f"{source}: unsupported hidden_act {self.hidden_act!r}; supported: {', '.join(self.hidden_acts)}"
            )
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise CheckpointError(f"{source}: only absolute position embeddings are supported")
        if raw.get("is_decoder") or raw.get("add_cross_attention"):
            raise CheckpointError(f"{source}: a decoder (is_decoder / add_cross_attention) is not supported; "
                                  "lrp-kernels explains bidirectional encoder classifiers")
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointError(f"{source}: hidden_size is not a multiple of num_attention_heads")

    def transformers_differs(self, attn_implementation: str | None, version: tuple[int, int]) -> str | None:
        """How an in-memory ``transformers`` model of this config computes something other than this
        family, where transformers ``version`` (major, minor) under ``attn_implementation`` is known to
        (one line for :func:`~lrp_kernels.models.from_hf`'s warning), else None."""
        return None

    @classmethod
    def from_dict(cls, raw: dict[str, Any], num_labels: int | None = None, source: str = "config",
                  language_model: bool = False) -> "ModelConfig":
        """The config of a classifier — or, with ``language_model``, of a causal language model, whose
        outputs are the vocabulary (softmax over ``vocab_size`` tokens; no label names)."""
        values = cls.normalize({**cls.defaults, **raw})
        id2label = {int(k): str(v) for k, v in (values.get("id2label") or {}).items()}
        if language_model:
            if num_labels is not None:
                raise CheckpointError(f"{source}: num_labels applies to a classifier; a language model's outputs "
                                      "are its vocabulary")
            num_labels, id2label, values["problem_type"] = values.get("vocab_size", cls.vocab_size), {}, SINGLE_LABEL
        if num_labels is None:
            num_labels = values.get("num_labels") or (len(id2label) if id2label else 2)
        if len(id2label) != num_labels and not language_model:
            id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        names = {f.name for f in dataclasses.fields(cls)} - {"id2label", "num_labels", "problem_type", "language_model"}
        head = Head.parse(values.get("problem_type"), num_labels, source)
        config = cls(**{k: v for k, v in values.items() if k in names}, num_labels=num_labels, id2label=id2label,
                     problem_type=head.problem_type, language_model=language_model)
        config.validate(values, source)
        return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The dictionary of a config.json, with one-line errors."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent}: missing file config.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return raw
