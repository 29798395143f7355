"""What each metric column of the evaluation's tables means: its direction (↑ higher is better, ↓
lower is better, none for counts and descriptive correlations) and a one-line definition. report.md,
index.html, the demo page and the figures show them next to every metric; the CSV files keep the
bare column names.
"""

from __future__ import annotations

import re
from typing import Sequence

# column (``acc@k`` for acc@1 … acc@10) -> (direction, one-line definition)
COLUMNS: dict[str, tuple[str, str]] = {
    "acc@k": ("↓", "word deletion: accuracy after replacing the k most relevant tokens (lower: the tokens mattered)"),
    "deletion_mean_acc": ("↓", "word deletion: the mean of acc@1 … acc@10"),
    "pred@k": ("↓", "word deletion (multi-label): the share of examples whose explained label is still predicted "
               "(sigmoid ≥ 0.5) after replacing the k most relevant tokens"),
    "deletion_mean_pred": ("↓", "word deletion: the mean of pred@1 … pred@10"),
    "value@k": ("↓", "word deletion (regression): the mean predicted value after replacing the k most relevant "
                "tokens (lower: the tokens raised it)"),
    "deletion_mean_value": ("↓", "word deletion: the mean of value@1 … value@10"),
    "deletion_n": ("", "word deletion: the examples it uses (correctly classified — multi-label: the explained label "
                       "predicted; regression: all —, with enough content tokens)"),
    "aopc_comprehensiveness": ("↑", "mean drop of p(target) when the top 10 … 100 % tokens are removed "
                                    "(a regression: of the predicted value)"),
    "aopc_sufficiency": ("↓", "mean drop of p(target) when only the top 10 … 100 % tokens are kept"),
    "abpc": ("↑", "area between the least- and the most-relevant-first curves of the target logit"),
    "cross_model_rho": ("", "mean Spearman ρ between the two models' scores of the same examples (descriptive)"),
    "cross_word_rho": ("", "Spearman ρ between the two models' word ranks (descriptive)"),
    "cross_words": ("", "the words both models' word ranks share"),
    "attribution_seconds": ("↓", "seconds spent computing the attributions (the cost; with --word-rank-examples, of those examples too)"),
}


def column_key(name: str) -> str:
    """The :data:`COLUMNS` key of a column (``acc@3`` -> ``acc@k``; ``pred@3``, ``value@3`` alike)."""
    return re.sub(r"^(acc|pred|value)@\d+$", r"\1@k", name)


def with_direction(name: str) -> str:
    """``name`` followed by its direction (``abpc ↑``), as table headers show it."""
    direction = COLUMNS.get(column_key(name), ("", ""))[0]
    return f"{name} {direction}" if direction else name


def definitions(header: Sequence[str]) -> list[tuple[str, str]]:
    """(the column with its direction, its definition) for each metric of ``header``, once per key."""
    seen, out = set(), []
    for name in header:
        key = column_key(name)
        if key in COLUMNS and key not in seen:
            seen.add(key)
            out.append((with_direction(key), COLUMNS[key][1]))
    return out
