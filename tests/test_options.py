"""lrp_kernels.options (one parser per option value) and the CLI's shared option spellings."""

from __future__ import annotations

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
            for dest, (shared_flags, _) in SHARED.items():
                if flags & set(shared_flags):
                    assert action.dest == dest and flags == set(shared_flags), (name, flags)
                    seen.add(dest)
    assert seen == set(SHARED)


@pytest.mark.parametrize("alias, dest, value", [
    ("--out", "output", "x"), ("--output-dir", "output", "x"), ("--max-seq-length", "max_length", 7),
    ("--batch", "batch_size", 3), ("--method", "methods", "lat"),
])
def test_old_spellings_are_aliases(alias, dest, value):
    from lrp_kernels.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--model", "m", "--task", "t", "--output", "o", alias, str(value)])
    assert getattr(args, dest) == value
