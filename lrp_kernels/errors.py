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


def did_you_mean(name, valid) -> str:
    """" (did you mean attnlrp?)" when ``name`` is close to one of ``valid`` — the same name but for
    case, ``_`` and ``-``, or a near spelling (difflib) —, else "": for the messages of unknown names."""
    import difflib

    def key(text) -> str:
        return str(text).lower().replace("_", "").replace("-", "")

    by_key = {key(v): v for v in valid}
    match = by_key.get(key(name))
    if match is None:
        close = difflib.get_close_matches(key(name), list(by_key), n=1, cutoff=0.6)
        match = by_key[close[0]] if close else None
    return f" (did you mean {match}?)" if match is not None else ""
