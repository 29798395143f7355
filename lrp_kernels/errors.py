"""Errors that carry a one-line message meant for the user (the CLI prints them without a traceback)."""


class LRPKernelsError(Exception):
    """Base class for user-facing errors of lrp-kernels."""


class InputError(LRPKernelsError, ValueError):
    """Bad user input: unknown names, out-of-range targets, empty texts, malformed files."""


class CheckpointError(LRPKernelsError, FileNotFoundError):
    """A checkpoint directory is missing files or holds an unsupported architecture."""
