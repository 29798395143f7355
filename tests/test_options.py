"""lrp_kernels.options (one parser per option value) and the CLI's shared option spellings."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from lrp_kernels.errors import CheckpointError, InputError
from lrp_kernels.options import (
    parse_device,
    parse_dtype,
    parse_methods,
    parse_names,
    resolve_model_path,
    set_threads,
)


def test_parse_device():
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "cuda:x", "cuda0", ""):
        with pytest.raises(InputError, match="unknown device"):
            parse_device(bad)
    if torch.cuda.is_available():
        assert parse_device("cuda", local_rank=0) == torch.device("cuda:0")
    else:
        with pytest.raises(InputError, match="CUDA is not available"):
            parse_device("cuda:1")


def test_parse_dtype():
    assert parse_dtype(None) is None and parse_dtype(torch.float16) is torch.float16
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("float64") is torch.float64
    with pytest.raises(InputError, match="unknown dtype 'int8'"):
        parse_dtype("int8")


def test_parse_methods_and_names():
    from lrp_kernels.methods import METHODS

    assert parse_methods(None) == parse_methods("all") == parse_methods("") == METHODS
    assert parse_methods(" attnlrp, cp_lrp ") == ("attnlrp", "cp_lrp")
    assert parse_methods(("lat",)) == ("lat",)
    with pytest.raises(InputError, match="unknown method 'shap'; valid methods: gradient"):
        parse_methods("attnlrp,shap")
    with pytest.raises(InputError, match="listed twice"):
        parse_methods("lat,lat")
    with pytest.raises(InputError, match="no methods given"):
        parse_methods(())
    assert parse_names("b", ("a", "b"), "metric") == ("b",)


def test_set_threads():
    before = torch.get_num_threads()
    set_threads(None)
    assert torch.get_num_threads() == before
    with pytest.raises(InputError, match="--threads must be at least 1"):
        set_threads(0)


def test_resolve_model_path(tmp_path, minilm_dir):
    assert str(resolve_model_path("minilm")) == minilm_dir
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        resolve_model_path(tmp_path / "absent")
    with pytest.raises(CheckpointError, match="no config.json"):
        resolve_model_path(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_path(str(tmp_path)) == tmp_path


def test_every_subcommand_spells_a_shared_option_the_same_way():
    from lrp_kernels.cli import build_parser
    from lrp_kernels.cli._common import SHARED

    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert set(subcommands) == {"train", "explain", "evaluate", "demo", "bench"}
    seen = set()
    for name, parser in subcommands.items():
        for action in parser._actions:
            flags = set(action.option_strings)
            for dest, (shared_flags, keywords) in SHARED.items():
                if flags & set(shared_flags):
                    assert action.dest == dest and flags == _spellings(shared_flags, keywords), (name, flags)
                    seen.add(dest)
    assert seen == set(SHARED)


def _spellings(flags, keywords) -> set[str]:
    """An option's flags as argparse takes them: a BooleanOptionalAction adds the --no- forms."""
    if keywords.get("action") is argparse.BooleanOptionalAction:
        return set(flags) | {"--no-" + f[2:] for f in flags}
    return set(flags)


def test_merge_subwords_is_the_default_and_no_merge_subwords_keeps_pieces():
    from lrp_kernels.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["explain", "--model", "m", "t"]).merge_subwords is True
    assert parse(["explain", "--model", "m", "--merge-subwords", "t"]).merge_subwords is True
    assert parse(["explain", "--model", "m", "--no-merge-subwords", "t"]).merge_subwords is False


# The shared options of each subcommand (one vocabulary: the same concept is the same flag everywhere)
VOCABULARY = {
    "train": {"model", "output", "batch_size", "max_length", "device", "threads", "progress"},
    "explain": {"model", "methods", "output", "batch_size", "max_length", "device", "dtype", "threads", "backend",
                "eps", "ig_steps", "progress", "merge_subwords"},
    "evaluate": {"model", "methods", "output", "batch_size", "max_length", "device", "dtype", "threads", "backend",
                 "eps", "ig_steps", "progress"},
    "demo": {"model", "methods", "output", "device", "threads", "backend", "ig_steps", "progress"},
    "bench": {"model", "methods", "batch_size", "device", "dtype", "threads", "backend", "eps"},
}


def test_each_subcommand_has_its_shared_options():
    from lrp_kernels.cli import build_parser
    from lrp_kernels.cli._common import SHARED

    subcommands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in subcommands.items():
        assert {a.dest for a in parser._actions if a.dest in SHARED} == VOCABULARY[name], name


@pytest.mark.parametrize("alias, dest, value", [
    ("--out", "output", "x"), ("--output-dir", "output", "x"), ("--max-seq-length", "max_length", 7),
    ("--batch", "batch_size", 3), ("--method", "methods", "lat"),
])
def test_old_spellings_are_aliases(alias, dest, value):
    from lrp_kernels.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--model", "m", "--task", "t", "--output", "o", alias, str(value)])
    assert getattr(args, dest) == value


# ---------------------------------------------------------------------------------------------
# hub names: the Hugging Face cache (laid out as the hub lays it out), no network


REVISION = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(root, repo_id: str = "org/tiny"):
    """A Hugging Face hub cache holding the tiny checkpoint as ``repo_id`` at ``refs/main``."""
    import shutil

    from tiny_checkpoint import shared_tiny_checkpoint

    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    shutil.copytree(shared_tiny_checkpoint(), snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


def test_hub_name_resolves_to_its_cached_snapshot(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = _hub_cache(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_model_path("org/tiny") == snapshot
    with pytest.raises(CheckpointError, match=r"^org/absent: .*not in the local cache and offline"):
        resolve_model_path("org/absent")  # the tests run offline
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        resolve_model_path("no/such/dir")  # not a hub id


def test_cli_explains_a_hub_model_from_the_cache(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    _hub_cache(tmp_path / "hub")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    command = [sys.executable, "-m", "lrp_kernels.cli", "explain", "--no-progress", "--model"]
    ok = subprocess.run(command + ["org/tiny", "good film"], env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["tokens"] == ["[CLS]", "good", "film", "[SEP]"]
    miss = subprocess.run(command + ["org/other", "good"], env=env, capture_output=True, text=True, timeout=300)
    assert miss.returncode == 2 and miss.stderr.strip().splitlines() == [
        "lrp-kernels explain: error: org/other: no such directory, and the hub model org/other is not in the local "
        "cache and offline (HF_HUB_OFFLINE is set)"]


def test_the_cli_leaves_hf_hub_offline_to_the_user(tmp_path, monkeypatch, run_cli):
    """Neither the CLI nor the library entry points set HF_HUB_OFFLINE (the tests do, in conftest)."""
    import random

    from cli_helpers import write_sst2_split
    from tiny_checkpoint import shared_tiny_checkpoint, tiny_sentences

    import datasets  # noqa: F401  (these read HF_HUB_OFFLINE when imported: import them while it is set)
    import huggingface_hub  # noqa: F401
    import transformers  # noqa: F401

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    ckpt = shared_tiny_checkpoint()
    for split in ("train", "dev"):
        write_sst2_split(tmp_path / f"{split}.tsv", tiny_sentences(12, seed=1, max_words=6), random.Random(1))
    data = ["--task", "sst2", "--data-dir", tmp_path, "--no-progress"]
    assert run_cli("explain", "--model", ckpt, "--no-progress", "good").status == 0
    assert run_cli("evaluate", "--model", ckpt, *data, "--output", tmp_path / "r", "--methods", "random",
                   "--metrics", "word_rank").status == 0
    assert run_cli("train", "--model", ckpt, *data, "--output", tmp_path / "t", "--epochs", "1",
                   "--max-length", "16").status == 0
    assert "HF_HUB_OFFLINE" not in os.environ
