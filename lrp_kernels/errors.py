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


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the caller's own code — the first frame outside this package —,
    whatever the depth of the call inside it: Python shows the user's file, line and call, not a line
    of lrp_kernels (filters by module and the once-per-location registry work on that frame too)."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1 if frame is not None else 2)
