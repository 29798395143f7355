"""The README's Python blocks run as written, with the tiny checkpoint as the placeholder path."""

import os
import re
from pathlib import Path

import pytest

pytest.importorskip("transformers")
from tiny_checkpoint import shared_tiny_checkpoint  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
PLACEHOLDER = "path/to/hf-checkpoint"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_has_python_blocks_with_the_placeholder():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks and any(PLACEHOLDER in b for b in blocks)


@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text(encoding="utf-8")))))
def test_readme_python_block_runs(index, tmp_path, capsys):
    block = python_blocks(README.read_text(encoding="utf-8"))[index]
    code = block.replace(PLACEHOLDER, str(shared_tiny_checkpoint()))
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
