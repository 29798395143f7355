"""The ``lrp-kernels`` command line.

Each subcommand is a module of this package that provides ``add_arguments(parser)`` and
``run(args) -> int``; the options several of them share (model, device, dtype, threads, methods,
batch size, max length, output, …) are spelled once in :mod:`lrp_kernels.cli._common`. This file
only wires the subcommands, prints warnings as one line each, and turns user errors into one line
on stderr and exit status 2 (:func:`error_message` is the one place that decides what a user error
is and how it reads). It leaves the environment alone: ``HF_HUB_OFFLINE`` and the other Hugging Face
settings are the user's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings

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


class Parser(argparse.ArgumentParser):
    """argparse with its errors (a bad or missing option) as one line and exit status 2, like every
    other user error: ``lrp-kernels explain: error: argument --stride: invalid int value: 'x'``."""

    def error(self, message: str):
        self.exit(USER_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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


def one_line(exc: BaseException | str) -> str:
    """The first line of an error's (or a warning's) message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Errors of the file formats a checkpoint may come in, raised by libraries (matched by name so that
# neither is imported here): a truncated or corrupt safetensors file, a pickle that is not plain tensors.
_FORMAT_ERRORS = ("SafetensorError", "UnpicklingError")


def error_message(exc: BaseException) -> str | None:
    """The one line that a user error prints, or None for anything else (a bug: it keeps its traceback).

    User errors: the library's own (:class:`~lrp_kernels.errors.LRPKernelsError`, whose messages
    name the file and what is wrong), operating-system errors about a path (named with the path:
    ``out: is a directory``), bad values (``ValueError``, JSON and UTF-8 errors among them) and
    unreadable checkpoint formats.
    """
    from lrp_kernels.errors import LRPKernelsError

    if isinstance(exc, LRPKernelsError):
        return one_line(exc)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        reason = exc.strerror[:1].lower() + exc.strerror[1:]
        return f"{exc.filename}: {reason}"
    if isinstance(exc, (OSError, ValueError)) or type(exc).__name__ in _FORMAT_ERRORS:
        return one_line(exc)
    return None


@contextlib.contextmanager
def one_line_warnings(command: str):
    """Python warnings printed as ``lrp-kernels COMMAND: warning: ...`` (one line each, each text once)."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = one_line(message)
        if text not in shown:
            shown.add(text)
            print(f"lrp-kernels {command}: warning: {text}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():  # restores the previous showwarning on the way out
        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (one line printed): a status, as every command returns
        return exc.code if isinstance(exc.code, int) else USER_ERROR
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return USER_ERROR
    try:
        with one_line_warnings(args.command):
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"lrp-kernels {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = error_message(exc)
        if message is None:
            raise
        print(f"lrp-kernels {args.command}: error: {message}", file=sys.stderr)
        return USER_ERROR
