"""Writing an evaluation: CSV tables, PNG plots, ``report.md`` and a self-contained ``index.html``.

Files (in the output directory):

``summary.csv``        one row per method: deletion accuracy at k = 1…10, its mean, AOPC
                       comprehensiveness / sufficiency, ABPC, seconds (and cross-dataset ρ)
``deletion.csv``       method, k, accuracy, examples (k = 0 is the unperturbed accuracy, 1)
``abpc_curves.csv``    method, fraction, MoRF and LeRF mean target logit
``word_rank.csv``      method, class, rank, word, mean normalized score, count
``agreement.csv``      the Spearman matrix between methods
``cross_dataset.csv``  per method, the correlation between the two models (when given)
``*.png``              deletion curves, perturbation curves, agreement matrix, metric bars
``report.md``          the tables in Markdown, linking the plots
``index.html``         tables, plots (embedded) and heatmaps of a few examples per method
"""

from __future__ import annotations

import base64
import csv
import html
import math
from pathlib import Path
from typing import Any, Sequence

from lrp_kernels.evaluation.items import Item


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_fmt(v, 6) if isinstance(v, float) else v for v in row])
    return path


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of ``summary.csv`` (and of the tables in report.md / index.html)."""
    header = ["method"]
    any_row = next(iter(results["methods"].values()))
    if "deletion" in any_row:
        header += [f"acc@{k}" for k in any_row["deletion"].ks] + ["deletion_mean_acc", "deletion_n"]
    if "aopc" in any_row:
        header += ["aopc_comprehensiveness", "aopc_sufficiency"]
    if "abpc" in any_row:
        header += ["abpc"]
    if "cross_dataset" in any_row:
        header += ["cross_model_rho"]
        if "word_rank" in any_row["cross_dataset"]:
            header += ["cross_word_rho", "cross_words"]
    header += ["attribution_seconds"]
    rows = []
    for method, row in results["methods"].items():
        r: list[Any] = [method]
        if "deletion" in row:
            acc = row["deletion"].accuracy
            finite = [a for a in acc if not math.isnan(a)]
            r += list(acc) + [sum(finite) / len(finite) if finite else float("nan"), row["deletion"].n_examples]
        if "aopc" in row:
            r += [row["aopc"].comprehensiveness, row["aopc"].sufficiency]
        if "abpc" in row:
            r += [row["abpc"].abpc]
        if "cross_dataset" in row:
            r += [row["cross_dataset"]["per_example"][0]]
            if "word_rank" in row["cross_dataset"]:
                r += list(row["cross_dataset"]["word_rank"])
        r += [round(row["attribution_seconds"], 3)]
        rows.append(r)
    return header, rows


def _plot_deletion(path: Path, results) -> Path | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [(m, r["deletion"]) for m, r in results["methods"].items() if "deletion" in r]
    if not rows or all(d.n_examples == 0 for _, d in rows):
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, d in rows:
        ax.plot([0] + d.ks, [1.0] + d.accuracy, marker="o", markersize=3, label=method,
                linestyle="--" if method == "random" else "-")
    ax.set_xlabel("top-k tokens replaced")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Word deletion ({rows[0][1].n_examples} examples)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_abpc(path: Path, results) -> Path | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [(m, r["abpc"]) for m, r in results["methods"].items() if "abpc" in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (method, a) in enumerate(rows):
        color = f"C{i % 10}"
        ax.plot(a.fractions, a.morf, color=color, label=f"{method} (ABPC {a.abpc:.2f})")
        ax.plot(a.fractions, a.lerf, color=color, linestyle=":")
    ax.set_xlabel("fraction of tokens replaced (solid: most relevant first, dotted: least)")
    ax.set_ylabel("target logit")
    ax.set_title("Perturbation curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_agreement(path: Path, methods: list[str], agreement) -> Path | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not agreement:
        return None
    n = len(methods)
    matrix = [[agreement[(a, b)][0] for b in methods] for a in methods]
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.55 * n))
    im = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n), methods, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), methods, fontsize=7)
    for i in range(n):
        for j in range(n):
            v = matrix[i][j]
            ax.text(j, i, "" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="mean Spearman ρ")
    ax.set_title("Method agreement", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_faithfulness(path: Path, results) -> Path | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    methods = list(results["methods"])
    panels = []
    any_row = results["methods"][methods[0]]
    if "aopc" in any_row:
        panels.append(("AOPC comprehensiveness ↑", [results["methods"][m]["aopc"].comprehensiveness for m in methods]))
        panels.append(("AOPC sufficiency ↓", [results["methods"][m]["aopc"].sufficiency for m in methods]))
    if "abpc" in any_row:
        panels.append(("ABPC ↑", [results["methods"][m]["abpc"].abpc for m in methods]))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4))
    axes = axes if len(panels) > 1 else [axes]
    for ax, (title, values) in zip(axes, panels):
        ax.bar(range(len(methods)), values, color=[f"C{i % 10}" for i in range(len(methods))])
        ax.set_xticks(range(len(methods)), methods, rotation=60, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def item_explanation(item: Item, method: str, id2label: dict[int, str]) -> dict[str, Any]:
    """The dict form of an explanation (as :meth:`Explanation.to_dict`) for a scored item."""
    import torch

    probs = torch.softmax(item.logits.float(), dim=-1)
    pred = int(probs.argmax())
    return {
        "id": item.index,
        "text": item.text,
        "text_pair": item.text_pair,
        "tokens": item.tokens,
        "scores": item.scores.tolist(),
        "special": (~item.content).tolist(),
        "label": pred,
        "label_name": id2label.get(pred, str(pred)),
        "probability": float(probs[pred]),
        "target": item.target,
        "target_name": id2label.get(item.target, str(item.target)),
        "method": method,
    }


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(v, 3) if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v, 3) if isinstance(v, float) else str(v))}</td>" for v in r)
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
.lrpk-legend { display: flex; align-items: center; gap: 0.5em; font-size: 0.85em; margin-bottom: 1em; }
.lrpk-bar { width: 240px; height: 14px; border: 1px solid #ccc;
  background: linear-gradient(to right, rgb(31,119,180), #ffffff, rgb(214,39,40)); }
"""

EXPLANATIONS = {
    "acc@k": "accuracy after replacing the k most relevant tokens (lower = more faithful)",
    "deletion_mean_acc": "mean of acc@1…acc@10 (lower = more faithful)",
    "aopc_comprehensiveness": "mean drop of p(target) when the top 10…100 % tokens are removed (higher = better)",
    "aopc_sufficiency": "mean drop of p(target) when only the top 10…100 % tokens are kept (lower = better)",
    "abpc": "area between the least- and most-relevant-first curves of the target logit (higher = better)",
}


def write_report(out: Path, info: dict[str, Any], results: dict[str, Any], by_method: dict[str, list[Item]],
                 id2label: dict[int, str], heatmaps: int = 5) -> dict[str, Any]:
    """Write every table, plot and page; return the JSON-able summary."""
    from lrp_kernels.visualization import explanation_html, legend_html

    out.mkdir(parents=True, exist_ok=True)
    methods = list(results["methods"])
    header, rows = summary_rows(results)
    write_csv(out / "summary.csv", header, rows)
    first = results["methods"][methods[0]]
    if "deletion" in first:
        write_csv(out / "deletion.csv", ["method", "k", "accuracy", "examples"],
                  [[m, 0, 1.0, r["deletion"].n_examples] for m, r in results["methods"].items()]
                  + [[m, k, a, r["deletion"].n_examples] for m, r in results["methods"].items()
                     for k, a in zip(r["deletion"].ks, r["deletion"].accuracy)])
    if "abpc" in first:
        write_csv(out / "abpc_curves.csv", ["method", "fraction", "morf_logit", "lerf_logit"],
                  [[m, f, a, b] for m, r in results["methods"].items()
                   for f, a, b in zip(r["abpc"].fractions, r["abpc"].morf, r["abpc"].lerf)])
    if "word_rank" in first:
        write_csv(out / "word_rank.csv", ["method", "class", "rank", "word", "mean_normalized_score", "count"],
                  [[m, id2label.get(w.target, str(w.target)), w.rank, w.word, w.score, w.count]
                   for m, r in results["methods"].items() for w in r["word_rank"]])
    agreement = results.get("agreement")
    if agreement:
        write_csv(out / "agreement.csv", ["method"] + methods,
                  [[a] + [agreement[(a, b)][0] for b in methods] for a in methods])
    if "cross_dataset" in first:
        cross_rows = []
        for m, r in results["methods"].items():
            c = r["cross_dataset"]
            row = [m, c["per_example"][0], c["per_example"][1]]
            if "word_rank" in c:
                row += list(c["word_rank"])
            cross_rows.append(row)
        cross_header = ["method", "per_example_rho", "examples"]
        if "word_rank" in first["cross_dataset"]:
            cross_header += ["word_rank_rho", "shared_words"]
        write_csv(out / "cross_dataset.csv", cross_header, cross_rows)

    plots = {
        "deletion.png": _plot_deletion(out / "deletion.png", results),
        "perturbation_curves.png": _plot_abpc(out / "perturbation_curves.png", results),
        "faithfulness.png": _plot_faithfulness(out / "faithfulness.png", results),
        "agreement.png": _plot_agreement(out / "agreement.png", methods, agreement),
    }
    plots = {name: path for name, path in plots.items() if path is not None}

    # ---------------------------------------------------------------- report.md
    setup = (f"model `{info['model']}`, task `{info['task']}` ({info['split']}), {info['examples']} examples, "
             f"accuracy {info['accuracy']:.4f}; replacement `{info['replacement']}`; word deletion on correctly "
             f"classified examples with ≥ {info['min_tokens']} content tokens; device {info['device']} "
             f"({info['torch_threads']} threads); {info['seconds']:.1f} s in all")
    md = [f"# {info['title']}", "", setup, "", "## Faithfulness", "", _md_table(header, rows), ""]
    md += [f"- `{k}`: {v}" for k, v in EXPLANATIONS.items()]
    md.append("")
    md += [f"![{name}]({name})" for name in plots]
    if "word_rank" in first:
        md += ["", "## Word rank (top words by mean normalized attribution)", ""]
        wr_rows = []
        for m, r in results["methods"].items():
            by_class: dict[int, list[str]] = {}
            for w in r["word_rank"]:
                by_class.setdefault(w.target, []).append(w.word)
            for c, words in sorted(by_class.items()):
                wr_rows.append([m, id2label.get(c, str(c)), ", ".join(words[:10])])
        md.append(_md_table(["method", "class", "top words"], wr_rows))
    if agreement:
        md += ["", "## Method agreement (mean Spearman ρ over examples)", "",
               _md_table(["method"] + methods, [[a] + [agreement[(a, b)][0] for b in methods] for a in methods])]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    # ---------------------------------------------------------------- index.html
    parts = [f"<h1>{html.escape(info['title'])}</h1>", f"<p>{html.escape(setup.replace('`', ''))}</p>",
             "<h2>Faithfulness</h2>", _html_table(header, rows), "<ul>"]
    parts += [f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in EXPLANATIONS.items()]
    parts.append("</ul>")
    for name, path in plots.items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>')
    if "word_rank" in first:
        parts += ["<h2>Word rank</h2>", _html_table(
            ["method", "class", "rank", "word", "score", "count"],
            [[m, id2label.get(w.target, str(w.target)), w.rank, w.word, w.score, w.count]
             for m, r in results["methods"].items() for w in r["word_rank"] if w.rank <= 5])]
    if agreement:
        parts += ["<h2>Method agreement (mean Spearman ρ)</h2>", _html_table(
            ["method"] + methods, [[a] + [agreement[(a, b)][0] for b in methods] for a in methods])]
    if heatmaps > 0:
        parts += ["<h2>Heatmaps</h2>", legend_html()]
        for i in range(min(heatmaps, len(next(iter(by_method.values()))))):
            first_item = by_method[methods[0]][i]
            gold = "" if first_item.label is None else f" (gold: {id2label.get(first_item.label, first_item.label)})"
            parts.append(f"<h3>Example {i}{html.escape(gold)}</h3>")
            parts += [explanation_html(item_explanation(by_method[m][i], m, id2label)) for m in methods]
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(info['title'])}</title>\n<style>{_PAGE_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")
    (out / "index.html").write_text(page, encoding="utf-8")

    summary = dict(info)
    summary["methods"] = {}
    for r in rows:
        summary["methods"][r[0]] = {h: (None if isinstance(v, float) and math.isnan(v) else v)
                                    for h, v in zip(header[1:], r[1:])}
    if agreement:
        summary["agreement"] = {f"{a}|{b}": agreement[(a, b)][0] for a in methods for b in methods}
    summary["files"] = sorted(p.name for p in out.iterdir() if p.is_file())
    return summary
