"""Progress bars (``tqdm``) for every loop of the package that shows one: explain, evaluate, train.

On a terminal a bar redraws itself in place. Written to a log (stderr not a terminal), every redraw
stays as text, so :func:`progress_bar` draws at most one line every :data:`LOG_INTERVAL` seconds
there and the final line once (tqdm draws it again on close after the last update drew it).
"""

from __future__ import annotations

import sys

#: seconds between two progress lines in a log (stderr not a terminal)
LOG_INTERVAL = 30.0


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(iterable=None, **kwargs):
    """A ``tqdm`` bar on stderr (``kwargs`` as tqdm's); in a log, no redraw more than once per
    :data:`LOG_INTERVAL` seconds and the final line written once."""
    from tqdm.auto import tqdm

    class _Bar(tqdm):
        def close(self):
            # the last update already drew the final state (n == last drawn n): close without redrawing it
            if not getattr(self, "_lrpk_terminal", True) and getattr(self, "last_print_n", None) == self.n:
                self.display = lambda *args, **kw: True
            super().close()

    stream = kwargs.setdefault("file", sys.stderr)
    terminal = _is_terminal(stream) or tqdm.__module__ == "tqdm.notebook"  # a notebook's widget: no log
    if not terminal:
        kwargs.setdefault("mininterval", LOG_INTERVAL)
    bar = _Bar(iterable, **kwargs)
    bar._lrpk_terminal = terminal
    return bar
