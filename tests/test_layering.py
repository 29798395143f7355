"""The layering of the package, read from the source: low layers never import high ones, and no
module imports another that (directly or through others) imports it back.

Layers, low to high: ``errors`` · ``backends`` · ``ops``/``rules`` · ``models`` · ``methods``/
``attribution`` · ``explainer`` … · ``cli``. Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lrp_kernels"

# module prefix -> modules it must never import (prefix match)
FORBIDDEN = {
    "lrp_kernels.errors": ("lrp_kernels.",),
    "lrp_kernels.backends": ("lrp_kernels.ops", "lrp_kernels.models", "lrp_kernels.methods", "lrp_kernels.attribution",
                             "lrp_kernels.explainer", "lrp_kernels.cli", "lrp_kernels.rules", "lrp_kernels.training",
                             "lrp_kernels.evaluation", "lrp_kernels.commands"),
    "lrp_kernels.ops": ("lrp_kernels.models", "lrp_kernels.methods", "lrp_kernels.attribution", "lrp_kernels.explainer",
                        "lrp_kernels.cli", "lrp_kernels.training", "lrp_kernels.evaluation", "lrp_kernels.commands"),
    "lrp_kernels.models": ("lrp_kernels.methods", "lrp_kernels.attribution", "lrp_kernels.explainer", "lrp_kernels.cli",
                           "lrp_kernels.training", "lrp_kernels.evaluation", "lrp_kernels.commands"),
    "lrp_kernels.methods": ("lrp_kernels.attribution", "lrp_kernels.explainer", "lrp_kernels.cli"),
    "lrp_kernels.attribution": ("lrp_kernels.explainer", "lrp_kernels.cli", "lrp_kernels.evaluation"),
    "lrp_kernels.token_attribution": ("lrp_kernels.explainer", "lrp_kernels.cli", "lrp_kernels.evaluation"),
    "lrp_kernels.data": ("lrp_kernels.cli", "lrp_kernels.commands"),
    "lrp_kernels.generation": ("lrp_kernels.cli", "lrp_kernels.commands"),
    "lrp_kernels.visualization": ("lrp_kernels.cli", "lrp_kernels.commands"),
    "lrp_kernels.evaluation": ("lrp_kernels.cli", "lrp_kernels.commands"),
    "lrp_kernels.training": ("lrp_kernels.cli", "lrp_kernels.commands"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports (``from a import b`` names a.b when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules or sub.endswith("._C") else base)
    return {m for m in found if m == "lrp_kernels" or m.startswith("lrp_kernels.")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_low_layers_never_import_high_ones(graph):
    bad = []
    for name, deps in graph.items():
        for layer, forbidden in FORBIDDEN.items():
            if name == layer or name.startswith(layer + "."):
                bad += [f"{name} imports {d}" for d in deps if d.startswith(forbidden) or d == "lrp_kernels"]
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles(graph):
    """No module reaches itself through imports (a package __init__ re-exporting its own
    submodules is not a cycle: the submodules import siblings, never their package's __init__)."""
    def reach(start: str) -> set[str]:
        seen, stack = set(), list(graph.get(start, ()))
        while stack:
            m = stack.pop()
            if m not in seen:
                seen.add(m)
                stack.extend(graph.get(m, ()))
        return seen

    cycles = sorted(name for name in graph if name in reach(name) and name != "lrp_kernels")
    assert not cycles, f"modules that import themselves through others: {cycles}"


def test_the_check_sees_imports():
    """The parser finds relative, absolute and function-level imports (so the tests above can fail)."""
    modules = all_modules()
    deps = imports_of("lrp_kernels.backends.cpp", PACKAGE / "backends" / "cpp" / "__init__.py", modules)
    assert "lrp_kernels.backends.cpp._glue" in deps and "lrp_kernels.backends.contract" in deps
    assert "lrp_kernels.backends.torch" in imports_of(
        "lrp_kernels.ops._backend", PACKAGE / "ops" / "_backend.py", modules)
