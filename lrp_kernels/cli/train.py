"""``lrp-kernels train``: fine-tune a classifier (:func:`lrp_kernels.training.train`).

The flags are the fields of :class:`~lrp_kernels.training.TrainConfig` with dashes, their help
texts and defaults taken from it; the fields that are shared options use the shared spelling
(``--output`` for ``output_dir``, ``--max-length`` for ``max_seq_length`` …, with the old
spellings as aliases).
"""

from __future__ import annotations

import argparse
import dataclasses

from lrp_kernels.cli._common import add_option
from lrp_kernels.training import TrainConfig, train

# TrainConfig field -> the shared option that sets it
SHARED_FIELDS = {
    "model": "model",
    "output_dir": "output",
    "batch_size": "batch_size",
    "max_seq_length": "max_length",
    "device": "device",
    "threads": "threads",
    "progress": "progress",
}
_TYPES = {"int": int, "float": float, "str": str}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig(model="", task="", output_dir="")
    for field in dataclasses.fields(TrainConfig):
        if field.name in SHARED_FIELDS:
            _add_shared(parser, field, getattr(defaults, field.name))
        else:
            _add_field(parser, field, getattr(defaults, field.name))


def _add_shared(parser: argparse.ArgumentParser, field: dataclasses.Field, default) -> None:
    required = field.default is dataclasses.MISSING
    overrides = {"required": True} if required else {"default": default}
    if field.name == "output_dir":
        overrides["help"] = field.metadata["help"]
    add_option(parser, SHARED_FIELDS[field.name], **overrides)


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, default) -> None:
    """``--name-with-dashes`` for a TrainConfig field: a switch for booleans, else a typed value."""
    flag = "--" + field.name.replace("_", "-")
    text = field.metadata["help"]
    if field.type == "bool":
        parser.add_argument(flag, action="store_true", help=text)
        return
    required = field.default is dataclasses.MISSING
    if not required and default is not None:
        text += " (default %(default)s)"
    parser.add_argument(flag, type=_TYPES[field.type.replace(" | None", "")], required=required,
                        default=None if required else default, choices=field.metadata.get("choices"), help=text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, SHARED_FIELDS.get(f.name, f.name)) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    metrics = train(config_from_args(args))
    if metrics.get("interrupted"):
        print(f"stopped after step {metrics['step']} of {metrics['total_steps']}; continue with --resume")
        return 0
    dev = metrics["dev"]
    line = f"saved {args.output}: {metrics['steps']} steps in {metrics['train_seconds']:.0f} s"
    if dev is not None:
        line += f", dev accuracy {dev['accuracy']:.4f} (step {metrics['best_step']})"
    if metrics["test"] is not None:
        line += f", test accuracy {metrics['test']['accuracy']:.4f}"
    print(line)
    return 0
