"""Errors that carry a one-line message meant for the user (the CLI prints them without a traceback).

A leaf module: it imports nothing of the package, so every layer (kernels included) may raise these.
"""


class LRPKernelsError(Exception):
    """Base class for user-facing errors of lrp-kernels."""


class InputError(LRPKernelsError, ValueError):
    """Bad user input: unknown names, out-of-range targets, empty texts, malformed files."""


class CheckpointError(LRPKernelsError, FileNotFoundError):
    """A checkpoint directory is missing files or holds an unsupported architecture."""


class BackendError(LRPKernelsError, RuntimeError):
    """A kernel backend cannot run what it was asked to (unknown name, not built, wrong device, bad shapes)."""


class BackendUnavailable(BackendError):
    """A backend was requested explicitly but cannot run here; the message says why."""
