"""Writing an evaluation: CSV tables, PNG plots, ``report.md`` and a self-contained ``index.html``.

Files (in the output directory):

``summary.csv``        one row per method: deletion accuracy at k = 1…10 (a multi-label model: the
                       share still predicted, ``pred@k``; a regression: the mean value, ``value@k``),
                       its mean, AOPC comprehensiveness / sufficiency, ABPC, seconds (and
                       cross-dataset ρ)
``deletion.csv``       method, k, accuracy (or still_predicted, value), examples (k = 0: unperturbed)
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

from lrp_kernels.evaluation.columns import definitions, with_direction
from lrp_kernels.evaluation.items import Item
from lrp_kernels.evaluation.perturbation import CURVE_COLUMN
from lrp_kernels.evaluation.ranking import RANK_RULE
from lrp_kernels.models.config import Head


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
        short = CURVE_COLUMN[any_row["deletion"].measure]
        header += [f"{short}@{k}" for k in any_row["deletion"].ks] + [f"deletion_mean_{short}", "deletion_n"]
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
            acc = row["deletion"].values
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


def item_explanation(item: Item, method: str, id2label: dict[int, str], head: Head = Head()) -> dict[str, Any]:
    """The dict form of an explanation (as :meth:`Explanation.to_dict`) for a scored item."""
    from lrp_kernels.explainer import prediction

    label = item.target if head.is_regression else int(item.logits.argmax())
    return {
        "id": item.index,
        "text": item.text,
        "text_pair": item.text_pair,
        "tokens": item.tokens,
        "scores": item.scores.tolist(),
        "special": (~item.content).tolist(),
        **prediction(head, item.logits.float(), label, id2label),
        "logits": item.logits.float().tolist(),
        "target": item.target,
        "target_name": id2label.get(item.target, str(item.target)),
        "method": method,
    }


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(v, 3) if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; floats with 3 decimals, None as an empty cell."""
    head = "".join(f"<th>{html.escape(str(h)).replace('_', '_<wbr>')}</th>" for h in header)  # long names may break
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v, 3) if isinstance(v, float) else str(v))}</td>" for v in r)
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def png_html(name: str, path: Path) -> str:
    """A PNG file embedded in a paragraph (the page stays one self-contained file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>'


_PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; max-width: 1440px; }
table { border-collapse: collapse; font-size: 0.75em; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.35em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
.lrpk-legend { display: flex; align-items: center; gap: 0.5em; font-size: 0.85em; margin-bottom: 1em; }
.lrpk-bar { width: 240px; height: 14px; border: 1px solid #ccc;
  background: linear-gradient(to right, rgb(31,119,180), #ffffff, rgb(214,39,40)); }
"""


def html_page(title: str, parts: Sequence[str]) -> str:
    """A standalone page (no scripts, no external assets) of the HTML ``parts``."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_PAGE_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")


AGREEMENT_NOTE = ("mean Spearman ρ between two methods' token rankings over the examples (1: the same ranking, "
                  "0: unrelated, −1: reversed); no better direction: it shows which methods agree")
WORD_RANK_NOTE = ("score: a word's attribution divided by the largest |attribution| of its example, averaged over "
                  "the examples it appears in (count); per explained class, the top words first")


def metric_table_md(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table whose metric columns show their direction (↑/↓), then a definition per metric."""
    return ([_md_table([with_direction(h) for h in header], rows), ""]
            + [f"- `{name}`: {definition}" for name, definition in definitions(header)])


def metric_table_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table whose metric columns show their direction (↑/↓), then a definition per metric."""
    items = "".join(f"<li><code>{html.escape(name)}</code>: {html.escape(definition)}</li>"
                    for name, definition in definitions(header))
    return (html_table([with_direction(h) for h in header], rows)
            + f'<ul style="font-size:0.85em">{items}<li>↑ higher is better, ↓ lower is better</li></ul>')


def _note(text: str) -> str:
    return f'<p style="font-size:0.85em;color:#555">{html.escape(text)}</p>'


def _per_method(results: dict[str, Any], key: str):
    """(method, its ``key`` result) for every method."""
    return [(m, r[key]) for m, r in results["methods"].items()]


class _Report:
    """The files of one evaluation, written step by step (tables, plots, report.md, index.html)."""

    def __init__(self, out: Path, info: dict[str, Any], results: dict[str, Any],
                 by_method: dict[str, list[Item]], id2label: dict[int, str]):
        self.out, self.info, self.results, self.by_method, self.id2label = out, info, results, by_method, id2label
        self.methods = list(results["methods"])
        self.first = results["methods"][self.methods[0]]  # every method has the same metrics
        self.agreement = results.get("agreement")
        self.header, self.rows = summary_rows(results)
        self.plots: dict[str, Path] = {}

    def _head(self) -> Head:
        return Head(self.info.get("problem_type") or Head().problem_type)

    def _label(self, target: int) -> str:
        return self.id2label.get(target, str(target))

    def _agreement_rows(self) -> list[list[Any]]:
        return [[a] + [self.agreement[(a, b)][0] for b in self.methods] for a in self.methods]

    def _word_note(self) -> str:
        """The word rank's definition and which words it leaves out (``keep_stop_words``: none)."""
        kept = self.info.get("keep_stop_words", False)
        examples = self.info.get("word_rank_examples", self.info.get("examples"))
        return f"over {examples} examples; " + WORD_RANK_NOTE + ("; every word ranked (--keep-stop-words)" if kept else f"; {RANK_RULE} (--keep-stop-words "
                                                                                         "ranks them too)")

    def _word_rows(self, max_rank: int | None = None) -> list[list[Any]]:
        return [[m, self._label(w.target), w.rank, w.word, w.score, w.count]
                for m, words in _per_method(self.results, "word_rank") for w in words
                if max_rank is None or w.rank <= max_rank]

    # ------------------------------------------------------------------------------ CSV tables
    def write_tables(self) -> None:
        out, first = self.out, self.first
        write_csv(out / "summary.csv", self.header, self.rows)
        if "deletion" in first:
            write_csv(out / "deletion.csv", ["method", "k", first["deletion"].measure, "examples"],
                      self._deletion_rows())
        if "abpc" in first:
            write_csv(out / "abpc_curves.csv", ["method", "fraction", "morf_logit", "lerf_logit"],
                      [[m, f, a, b] for m, r in _per_method(self.results, "abpc")
                       for f, a, b in zip(r.fractions, r.morf, r.lerf)])
        if "word_rank" in first:
            write_csv(out / "word_rank.csv", ["method", "class", "rank", "word", "mean_normalized_score", "count"],
                      self._word_rows())
        if self.agreement:
            write_csv(out / "agreement.csv", ["method"] + self.methods, self._agreement_rows())
        if "cross_dataset" in first:
            self._write_cross_dataset()

    def _deletion_rows(self) -> list[list[Any]]:
        deletion = _per_method(self.results, "deletion")
        return ([[m, 0, d.start, d.n_examples] for m, d in deletion]
                + [[m, k, a, d.n_examples] for m, d in deletion for k, a in zip(d.ks, d.values)])

    def _write_cross_dataset(self) -> None:
        header = ["method", "per_example_rho", "examples"]
        if "word_rank" in self.first["cross_dataset"]:
            header += ["word_rank_rho", "shared_words"]
        rows = [[m, *c["per_example"], *c.get("word_rank", ())] for m, c in _per_method(self.results, "cross_dataset")]
        write_csv(self.out / "cross_dataset.csv", header, rows)

    def write_plots(self) -> None:
        from lrp_kernels.evaluation import figures

        out, results = self.out, self.results
        plots = {
            "deletion.png": figures.plot_deletion(out / "deletion.png", results),
            "perturbation_curves.png": figures.plot_perturbation(out / "perturbation_curves.png", results),
            "faithfulness.png": figures.plot_faithfulness(out / "faithfulness.png", results, self._head().is_regression),
            "agreement.png": figures.plot_agreement(out / "agreement.png", self.methods, self.agreement),
        }
        self.plots = {name: path for name, path in plots.items() if path is not None}

    # ------------------------------------------------------------------------------ pages
    def setup(self) -> str:
        info, head = self.info, Head(self.info.get("problem_type") or Head().problem_type)
        accuracy = "" if info.get("accuracy") is None else f", accuracy {info['accuracy']:.4f}"
        deleted = ("every example" if head.is_regression else "examples whose explained label is predicted"
                   if head.is_multi_label else "correctly classified examples")
        return (f"model `{info['model']}`, task `{info['task']}` ({info['split']}), {info['examples']} examples"
                f"{accuracy}; replacement `{info['replacement']}`; word deletion on {deleted} "
                f"with ≥ {info['min_tokens']} content tokens; device {info['device']} "
                f"({info['torch_threads']} threads); {info['seconds']:.1f} s in all")

    def markdown(self) -> str:
        md = [f"# {self.info['title']}", "", self.setup(), "", "## Faithfulness", "",
              *metric_table_md(self.header, self.rows), "- ↑ higher is better, ↓ lower is better", ""]
        md += [f"![{name}]({name})" for name in self.plots]
        if "word_rank" in self.first:
            md += ["", "## Word rank (top words by mean normalized attribution)", "", self._word_note(), "",
                   _md_table(["method", "class", "top words"], self._top_words())]
        if self.agreement:
            md += ["", "## Method agreement (mean Spearman ρ over examples)", "", AGREEMENT_NOTE, "",
                   _md_table(["method"] + self.methods, self._agreement_rows())]
        return "\n".join(md) + "\n"

    def _top_words(self) -> list[list[Any]]:
        """(method, class, its 10 top words) per method and class."""
        rows = []
        for m, words in _per_method(self.results, "word_rank"):
            by_class: dict[int, list[str]] = {}
            for w in words:
                by_class.setdefault(w.target, []).append(w.word)
            rows += [[m, self._label(c), ", ".join(ws[:10])] for c, ws in sorted(by_class.items())]
        return rows

    def index_html(self, heatmaps: int) -> str:
        parts = [f"<h1>{html.escape(self.info['title'])}</h1>", f"<p>{html.escape(self.setup().replace('`', ''))}</p>",
                 "<h2>Faithfulness</h2>", metric_table_html(self.header, self.rows)]
        parts += [png_html(name, path) for name, path in self.plots.items()]
        if "word_rank" in self.first:
            parts += ["<h2>Word rank</h2>", _note(self._word_note()),
                      html_table(["method", "class", "rank", "word", "score", "count"], self._word_rows(max_rank=5))]
        if self.agreement:
            parts += ["<h2>Method agreement (mean Spearman ρ)</h2>", _note(AGREEMENT_NOTE),
                      html_table(["method"] + self.methods, self._agreement_rows())]
        if heatmaps > 0:
            parts += self._heatmaps(heatmaps)
        return html_page(self.info["title"], parts)

    def _heatmaps(self, count: int) -> list[str]:
        from lrp_kernels.visualization import group_html, legend_html

        parts = ["<h2>Heatmaps</h2>", legend_html()]
        for i in range(min(count, len(self.by_method[self.methods[0]]))):
            label = self.by_method[self.methods[0]][i].label
            gold = "" if label is None else f" (gold: {self.id2label.get(label, label)})"
            parts.append(f"<h3>Example {i}{html.escape(gold)}</h3>")
            head = Head(self.info.get("problem_type") or Head().problem_type)
            parts.append(group_html([item_explanation(self.by_method[m][i], m, self.id2label, head)
                                     for m in self.methods]))
        return parts

    def summary(self) -> dict[str, Any]:
        """The JSON-able summary: the setup, the summary table per method, agreement, the files written."""
        summary = dict(self.info)
        summary["methods"] = {r[0]: {h: (None if isinstance(v, float) and math.isnan(v) else v)
                                     for h, v in zip(self.header[1:], r[1:])} for r in self.rows}
        if self.agreement:
            summary["agreement"] = {f"{a}|{b}": self.agreement[(a, b)][0] for a in self.methods for b in self.methods}
        summary["files"] = sorted(p.name for p in self.out.iterdir() if p.is_file())
        return summary


def write_report(out: Path, info: dict[str, Any], results: dict[str, Any], by_method: dict[str, list[Item]],
                 id2label: dict[int, str], heatmaps: int = 5) -> dict[str, Any]:
    """Write every table, plot and page; return the JSON-able summary."""
    out.mkdir(parents=True, exist_ok=True)
    report = _Report(out, info, results, by_method, id2label)
    report.write_tables()
    report.write_plots()
    (out / "report.md").write_text(report.markdown(), encoding="utf-8")
    (out / "index.html").write_text(report.index_html(heatmaps), encoding="utf-8")
    return report.summary()
