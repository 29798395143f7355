"""``explain``'s readable output on a terminal: per text the prediction, every token with its score
and a bar, and the top-k tokens (JSON lines instead with ``--json`` or when stdout is not a terminal)."""

from __future__ import annotations

from typing import Any

from lrp_kernels.models.config import REGRESSION
from lrp_kernels.visualization import prediction_text

BAR = 12  # characters of the longest bar


def format_explanation(record: dict[str, Any], top_k: int) -> str:
    """One explanation (an output record) as a block of lines."""
    scores = record["scores"]
    peak = max((abs(s) for s in scores), default=0.0) or 1.0
    width = max(len(t) for t in record["tokens"])
    lines = [f"id {record['id']}: {prediction_text(record)}; relevance for {_explained(record)} ({record['method']})"]
    for token, score in zip(record["tokens"], scores):
        bar = ("+" if score >= 0 else "-") * round(BAR * abs(score) / peak)
        lines.append(f"  {token:<{width}}  {score:+.4f}  {bar}")
    content = [(t, s) for t, s, special in zip(record["tokens"], scores, record["special"]) if not special]
    top = sorted(content, key=lambda pair: -pair[1])[:top_k]
    if top:
        lines.append(f"  top {len(top)}: " + ", ".join(f"{t} {s:+.4f}" for t, s in top))
    return "\n".join(lines)


def _explained(record: dict[str, Any]) -> str:
    """The explained class in words: with its contrast, and a pointer to the others (``--target all``,
    or the labels a multi-label model explains); a regression's: its value."""
    text = str(record["target_name"])
    if record.get("problem_type") == REGRESSION and len(record.get("logits") or ()) <= 1:
        text = "the predicted value"
    if record.get("contrast_name") is not None:
        text += f" against {record['contrast_name']}"
    classes = record.get("class_scores")
    if classes is not None and all(c is not None for c in classes):
        text += " (every class: --json or --html)"
    elif classes is not None:
        names = [n for n, c in zip(record["class_names"], classes) if c is not None]
        text += f" (explained labels {', '.join(names)}: --json or --html)"
    return text


def format_table(records: list[dict[str, Any]], top_k: int) -> str:
    return "\n\n".join(format_explanation(r, top_k) for r in records)
