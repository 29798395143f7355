"""Reading a Hugging Face checkpoint directory's weights, with one-line errors.

``model.safetensors``, a sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` read with
``torch.load(weights_only=True)`` (a pickle that would run code is refused). Knows nothing of the
model classes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from lrp_kernels.errors import CheckpointError


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None


def _load_sharded(directory: Path) -> dict[str, torch.Tensor]:
    index_path = directory / "model.safetensors.index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{index_path}: not valid JSON ({exc})") from None
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{index_path}: no 'weight_map' object naming the shards") from None
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        if not (directory / shard).is_file():
            raise CheckpointError(f"{directory}: missing file {shard} (named by model.safetensors.index.json)")
        state.update(_load_safetensors(directory / shard))
    return state


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        culprit = re.search(r"unsupported GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f"it would call {culprit.group(1) or culprit.group(2)}" if culprit else "it holds more than tensors"
        raise CheckpointError(f"{path}: refused to unpickle ({what}); convert it to model.safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def read_state_dict(directory: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in ``directory`` by their saved names."""
    directory = Path(directory)
    if (directory / "model.safetensors").is_file():
        return _load_safetensors(directory / "model.safetensors")
    if (directory / "model.safetensors.index.json").is_file():
        return _load_sharded(directory)
    if (directory / "pytorch_model.bin").is_file():
        return _load_pickle(directory / "pytorch_model.bin")
    raise CheckpointError(f"{directory}: missing file model.safetensors (or pytorch_model.bin)")
