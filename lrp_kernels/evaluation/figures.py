"""The evaluation's figures (PNG): word-deletion curves, perturbation curves, metric bars, the
agreement matrix.

Every figure states in its title how many examples it rests on and what is better (↑/↓); every
method keeps one style in every figure (:func:`method_style`: colour, marker and line style, so
that 9+ methods stay apart, and the ``random`` control in black); legends stay off the data
(outside on the right, in the order of the curves' ends), or a figure has small multiples
with direct titles instead.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

_MARKERS = "osD^vP*Xh<>p"
_LINES = ("-", "--", "-.", ":")


def method_style(index: int, method: str) -> dict[str, Any]:
    """Colour, marker and line style of the ``index``-th method (distinct for the first ten)."""
    if method == "random":
        return {"color": "black", "marker": "x", "linestyle": ":"}
    return {"color": f"C{index % 10}", "marker": _MARKERS[index % len(_MARKERS)], "linestyle": _LINES[index % 4]}


@contextlib.contextmanager
def _figure(path: Path, **subplots: Any):
    """A matplotlib figure and its axes, laid out, saved to ``path`` (120 dpi, legends included) and closed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(**subplots)
    try:
        yield fig, ax
        fig.tight_layout()
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)


def _count(values: list[int]) -> str:
    """``"641"``, or ``"598–641"`` when the figure's parts rest on different numbers of examples."""
    low, high = min(values), max(values)
    return f"{high}" if low == high else f"{low}–{high}"


#: by what a deletion curve tracks (:data:`~lrp_kernels.evaluation.perturbation.CURVE_COLUMN`): its axis, its examples
_DELETION_AXES = {
    "accuracy": ("accuracy ↓ (lower: the tokens mattered)", "correctly classified examples"),
    "still_predicted": ("explained label still predicted ↓ (share)", "examples whose explained label is predicted"),
    "value": ("mean predicted value ↓ (lower: the tokens raised it)", "examples"),
}


def plot_deletion(path: Path, results) -> Path | None:
    """Accuracy (a multi-label model: the share still predicted; a regression: the mean value) after
    replacing the top-k tokens, a line per method; the legend outside, ordered as the lines end (top
    first)."""
    rows = [(i, m, r["deletion"]) for i, (m, r) in enumerate(results["methods"].items()) if "deletion" in r]
    if not rows or all(d.n_examples == 0 for _, _, d in rows):
        return None
    ylabel, examples = _DELETION_AXES[rows[0][2].measure]
    with _figure(path, figsize=(7.4, 4.4)) as (_, ax):
        for i, method, d in rows:
            ax.plot([0] + d.ks, [d.start] + d.values, markersize=4, label=_name(method, d.values, rows),
                    **method_style(i, method))
        ax.set_xlabel("k: most relevant tokens replaced")
        ax.set_ylabel(ylabel)
        ax.set_title(f"Word deletion on {_count([d.n_examples for _, _, d in rows])} {examples}", fontsize=10)
        ax.grid(alpha=0.3)
        last = [d.values[-1] if d.values else d.start for _, _, d in rows]
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda k: -_finite(last[k]))
        ax.legend([handles[k] for k in order], [labels[k] for k in order], loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, title="at k = 10, top first", title_fontsize=7)
    return path


def _name(method: str, curve: list[float], rows) -> str:
    """The legend entry of a curve: the method, and an earlier method whose curve it (nearly) covers."""
    for _, other, d in rows:
        if other == method:
            return method
        if len(d.values) == len(curve) and all(abs(a - b) < 0.005 for a, b in zip(d.values, curve)):
            return f"{method} (≈ {other})"
    return method


def _finite(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def plot_perturbation(path: Path, results) -> Path | None:
    """ABPC's curves, one small panel per method (no legend over crossing curves): the mean target
    logit as the most (solid) or least (dotted) relevant tokens are replaced, the area between shaded."""
    rows = [(i, m, r["abpc"]) for i, (m, r) in enumerate(results["methods"].items()) if "abpc" in r]
    if not rows:
        return None
    cols = min(3, len(rows))
    n_rows = math.ceil(len(rows) / cols)
    with _figure(path, nrows=n_rows, ncols=cols, figsize=(3.3 * cols, 2.4 * n_rows + 0.9), sharex=True, sharey=True,
                 squeeze=False) as (fig, axes):
        for ax, (i, method, a) in zip(axes.flat, rows):
            color = method_style(i, method)["color"]
            ax.plot(a.fractions, a.morf, color=color, linestyle="-")
            ax.plot(a.fractions, a.lerf, color=color, linestyle=":")
            ax.fill_between(a.fractions, a.morf, a.lerf, color=color, alpha=0.15, linewidth=0)
            ax.set_title(f"{method}: ABPC {a.abpc:.2f}", fontsize=9)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(rows):]:
            ax.axis("off")
        fig.supxlabel("fraction of tokens replaced", fontsize=9)
        fig.supylabel("mean target logit", fontsize=9)
        fig.suptitle(f"Perturbation curves on {_count([a.n_examples for _, _, a in rows])} examples: solid = most "
                     "relevant first, dotted = least relevant first;\nABPC ↑ = the shaded area between them",
                     fontsize=10)
    return path


def _faithfulness_panels(results, regression: bool = False) -> list[tuple[str, str, list[float], int, str]]:
    """(title with direction, definition, a value per method, examples, y-axis label) per faithfulness
    metric."""
    from lrp_kernels.evaluation.columns import COLUMNS

    rows = list(results["methods"].values())
    panels = []
    if "aopc" in rows[0]:
        n = _count([r["aopc"].n_examples for r in rows])
        drop = "mean drop of the predicted value" if regression else "mean drop of p(target)"
        panels.append(("AOPC comprehensiveness ↑", COLUMNS["aopc_comprehensiveness"][1],
                       [r["aopc"].comprehensiveness for r in rows], n, drop))
        panels.append(("AOPC sufficiency ↓", COLUMNS["aopc_sufficiency"][1], [r["aopc"].sufficiency for r in rows], n,
                       "mean drop of p(target)"))
    if "abpc" in rows[0]:
        panels.append(("ABPC ↑", COLUMNS["abpc"][1], [r["abpc"].abpc for r in rows],
                       _count([r["abpc"].n_examples for r in rows]), "area (target logit × fraction replaced)"))
    return panels


def plot_faithfulness(path: Path, results, regression: bool = False) -> Path | None:
    """A bar panel per faithfulness metric, each titled with its direction, definition and examples, its
    y-axis saying what the bars measure (``regression``: AOPC comprehensiveness of the predicted value)."""
    import textwrap

    methods = list(results["methods"])
    panels = _faithfulness_panels(results, regression)
    if not panels:
        return None
    colors = [method_style(i, m)["color"] for i, m in enumerate(methods)]
    with _figure(path, nrows=1, ncols=len(panels), figsize=(3.6 * len(panels), 3.9), squeeze=False) as (_, axes):
        for ax, (title, definition, values, n, ylabel) in zip(axes[0], panels):
            ax.bar(range(len(methods)), values, color=colors)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_xticks(range(len(methods)), methods, rotation=60, ha="right", fontsize=7)
            ax.set_title(f"{title} ({n} examples)\n" + "\n".join(textwrap.wrap(definition, 48)), fontsize=8)
            ax.axhline(0, color="black", linewidth=0.5)
            ax.grid(axis="y", alpha=0.3)
    return path


def plot_agreement(path: Path, methods: list[str], agreement) -> Path | None:
    """The mean Spearman ρ between every two methods, each cell annotated in a colour it can be read on."""
    if not agreement:
        return None
    n = len(methods)
    matrix = [[agreement[(a, b)][0] for b in methods] for a in methods]
    examples = _count([agreement[(a, b)][1] for a in methods for b in methods if a != b] or [agreement[(a, a)][1]
                                                                                             for a in methods])
    with _figure(path, figsize=(1.8 + 0.72 * n, 1.4 + 0.62 * n)) as (fig, ax):
        im = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_xticks(range(n), methods, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), methods, fontsize=8)
        for i in range(n):
            for j in range(n):
                v = matrix[i][j]
                ax.text(j, i, "" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if abs(v) > 0.6 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                     label="mean Spearman ρ (1: same ranking, 0: unrelated, −1: reversed)")
        ax.set_title(f"Method agreement: mean Spearman ρ of the token rankings\nover {examples} examples", fontsize=9)
    return path
