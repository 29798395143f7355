"""Running ``lrp-kernels`` in-process in tests (the ``run_cli`` fixture of conftest.py), and the tiny
SST-2-style files the CLI and evaluation tests read."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from lrp_kernels.cli import USER_ERROR


@dataclasses.dataclass
class CliResult:
    """Exit status and captured output of one ``main(argv)`` call."""

    status: int
    out: str
    err: str

    def assert_user_error(self, message: str) -> None:
        """Exit status 2 and exactly one line on stderr that contains ``message`` (no traceback)."""
        err = self.err.strip()
        assert self.status == USER_ERROR, (self.status, err)
        assert message in err, err
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def write_sst2_split(path: Path, sentences: list[str], rng: random.Random) -> Path:
    """A GLUE-layout SST-2 TSV (``sentence``, ``label``) with labels 0/1 drawn from ``rng``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for s in sentences:
            f.write(f"{s}\t{rng.randint(0, 1)}\n")
    return path
