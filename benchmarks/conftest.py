"""Collect the ``bench_*.py`` files when ``pytest benchmarks/`` is given the directory.

pytest's default file patterns (``test_*.py``) skip them, so ``python -m pytest benchmarks/
--benchmark-only`` would collect nothing; this collects them in every folder below (``ops/``: one
file per rule, ``e2e/``: end to end). A file named on the command line is collected anyway and is
left to pytest here, so that it is not collected twice.
"""

from __future__ import annotations

import pytest


def pytest_collect_file(file_path, parent):
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
