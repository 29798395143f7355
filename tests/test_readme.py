"""The README's Python blocks run as written, with the tiny checkpoint as the placeholder path."""

import os
import re
from pathlib import Path

import pytest

pytest.importorskip("transformers")
from tiny_checkpoint import shared_tiny_checkpoint  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
PLACEHOLDER = "path/to/hf-checkpoint"
REWARD_PLACEHOLDER = "path/to/reward-model"  # a random tiny Llama reward model with a chat template
LM_PLACEHOLDER = "path/to/causal-lm"  # a random tiny Llama causal LM with a Llama-3-style tokenizer


def reward_checkpoint(root: Path) -> Path:
    from decoder_checkpoints import build_decoder_checkpoint

    return build_decoder_checkpoint("llama", "tiktoken", root / "reward-model", num_labels=1)


def lm_checkpoint(root: Path) -> Path:
    from decoder_checkpoints import build_decoder_checkpoint

    return build_decoder_checkpoint("llama", "tiktoken", root / "causal-lm", language_model=True)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_has_python_blocks_with_the_placeholder():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks and any(PLACEHOLDER in b for b in blocks)


@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text(encoding="utf-8")))))
def test_readme_python_block_runs(index, tmp_path, capsys):
    block = python_blocks(README.read_text(encoding="utf-8"))[index]
    code = block.replace(PLACEHOLDER, str(shared_tiny_checkpoint()))
    if REWARD_PLACEHOLDER in code:
        code = code.replace(REWARD_PLACEHOLDER, str(reward_checkpoint(tmp_path / "checkpoints")))
    if LM_PLACEHOLDER in code:
        code = code.replace(LM_PLACEHOLDER, str(lm_checkpoint(tmp_path / "checkpoints")))
    cwd = os.getcwd()
    os.chdir(tmp_path)  # files the block writes land here
    try:
        exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
    if "print(" in block:
        assert capsys.readouterr().out.strip()
    for written in re.findall(r'save_html\("([^"]+)"\)', block):
        assert (tmp_path / written).is_file()


# What the README's commands and Python blocks write: --output/--html/--png PATH, save_html("PATH"), …
WRITES = re.compile(r'(?:--output|--html|--png)\s+([^\s\\]+)|(?:save_html|save_png|to_json)\("([^"]+)"\)')


def test_what_the_readme_writes_is_ignored_by_git():
    import shutil
    import subprocess

    root = README.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    from lrp_kernels.cli import build_parser

    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    paths = {a or b for a, b in WRITES.findall(README.read_text(encoding="utf-8"))} | {demo.get_default("output") + "/"}
    assert {"runs/sst2", "out.jsonl", "out.html", "report/", "explanations.html", "reward.html",
            "generation.html"} <= paths
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *sorted(paths)], cwd=root, capture_output=True,
                             text=True).stdout.split()
    assert sorted(paths - set(ignored)) == []
