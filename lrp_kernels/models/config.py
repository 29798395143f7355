"""The configuration of a BERT-family classifier, read from a Hugging Face ``config.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrp_kernels.errors import CheckpointError

# model_type -> family. RoBERTa-like models share one architecture.
SUPPORTED_MODEL_TYPES = {
    "bert": "bert",
    "roberta": "roberta",
    "xlm-roberta": "roberta",
    "camembert": "roberta",
}

HIDDEN_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


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

    @property
    def family(self) -> str:
        return SUPPORTED_MODEL_TYPES[self.model_type]

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_tokens(self) -> int:
        """The longest input the position embeddings allow (RoBERTa's positions start at pad+1)."""
        if self.family == "roberta":
            return self.max_position_embeddings - self.pad_token_id - 1
        return self.max_position_embeddings

    @classmethod
    def from_dict(cls, raw: dict[str, Any], num_labels: int | None = None, source: str = "config") -> "ModelConfig":
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise CheckpointError(
                f"{source}: unsupported architecture model_type={model_type!r}; "
                f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        act = raw.get("hidden_act", "gelu")
        if act not in HIDDEN_ACTS:
            raise CheckpointError(f"{source}: unsupported hidden_act {act!r}; supported: {', '.join(HIDDEN_ACTS)}")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise CheckpointError(f"{source}: only absolute position embeddings are supported")
        id2label = {int(k): str(v) for k, v in (raw.get("id2label") or {}).items()}
        if num_labels is None:
            num_labels = raw.get("num_labels") or (len(id2label) if id2label else 2)
        if len(id2label) != num_labels:
            id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        names = {f.name for f in cls.__dataclass_fields__.values()}
        kwargs = {k: v for k, v in raw.items() if k in names and k not in ("id2label", "num_labels")}
        config = cls(**kwargs, num_labels=num_labels, id2label=id2label)
        if config.hidden_size % config.num_attention_heads:
            raise CheckpointError(f"{source}: hidden_size is not a multiple of num_attention_heads")
        return config

    @classmethod
    def from_file(cls, path: str | Path, num_labels: int | None = None) -> "ModelConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path.parent}: missing file config.json") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(raw, num_labels=num_labels, source=str(path))

    @property
    def activation(self) -> str:
        return HIDDEN_ACTS[self.hidden_act]
