"""The ``lrp-kernels`` command line.

Each subcommand is a module of this package that provides ``add_arguments(parser)`` and
``run(args) -> int``; the options several of them share (model, device, dtype, threads, methods,
batch size, max length, output, …) are spelled once in :mod:`lrp_kernels.cli._common`. This file
only wires the subcommands and turns user errors into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand -> (module, one-line help)
COMMANDS = {
    "train": ("lrp_kernels.cli.train", "fine-tune a BERT-family classifier and save a Hugging Face checkpoint"),
    "explain": ("lrp_kernels.cli.explain", "explain texts with an attribution method"),
    "evaluate": ("lrp_kernels.cli.evaluate", "word deletion, AOPC, ABPC and word-rank studies"),
    "demo": ("lrp_kernels.cli.demo", "fine-tune (cached), explain and evaluate a MiniLM SST-2 model"),
    "bench": ("lrp_kernels.cli.bench", "time forward, gradient and every method"),
}

# Exit status for user errors (bad arguments, missing files, bad input).
USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrp-kernels",
        description="Explain BERT-family text classifiers with Layer-wise Relevance Propagation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that subcommand is not part of this build
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return USER_ERROR
    from lrp_kernels.errors import LRPKernelsError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are local directories; nothing is downloaded
    try:
        return int(args._run(args) or 0)
    except (LRPKernelsError, ValueError, FileNotFoundError, UnicodeDecodeError, KeyError) as exc:
        print(f"lrp-kernels {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"lrp-kernels {args.command}: interrupted", file=sys.stderr)
        return 130
