"""The evaluation's figures and pages: a style per method that stays apart for 9+ methods, legends off
the curves, the examples each figure rests on in its title, ↑/↓ and a definition beside every
metric; the CSV files keep their bare column names."""

import csv

import pytest

from lrp_kernels.evaluation import figures
from lrp_kernels.evaluation.columns import COLUMNS, column_key, definitions, with_direction
from lrp_kernels.evaluation.perturbation import ABPCResult, AOPCResult, DeletionResult
from lrp_kernels.evaluation.report import write_report
from lrp_kernels.methods import METHODS

KS = list(range(1, 11))


def _results(methods=METHODS, n=40):
    """Evaluation results of ``methods`` with made-up numbers (two methods with the same curve)."""
    rows = {}
    for i, method in enumerate(methods):
        slope = 0.01 * (i + 1 if i != 2 else 2)  # methods 1 and 2 share a deletion curve
        rows[method] = {
            "deletion": DeletionResult(KS, [1.0 - slope * k for k in KS], n - 5, []),
            "aopc": AOPCResult(0.1 * i, 0.05 * i - 0.2, [], [], n),
            "abpc": ABPCResult([0.0, 0.5, 1.0], [1.0, 0.2 - 0.1 * i, 0.0], [1.0, 0.9, 0.0], 0.1 * i, [], n),
            "attribution_seconds": 1.5,
        }
    agreement = {(a, b): (1.0 if a == b else 0.9 - 0.1 * abs(i - j), n - (i + j) % 3)
                 for i, a in enumerate(methods) for j, b in enumerate(methods)}
    return {"methods": rows, "agreement": agreement, "cross_dataset": None}


@pytest.fixture
def kept_figures(monkeypatch):
    """The figures the plot functions make, kept open (they close them when saved)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    return kept


def test_nine_methods_and_more_each_have_their_own_style():
    styles = [figures.method_style(i, m) for i, m in enumerate(METHODS + ("extra",))]
    looks = [(s["color"], s["marker"]) for s in styles]
    assert len(set(looks)) == len(looks) == 10
    assert figures.method_style(8, "random")["color"] == "black"  # the control stands apart


def test_the_deletion_legend_is_outside_the_curves(kept_figures, tmp_path):
    figures.plot_deletion(tmp_path / "d.png", _results())
    fig = kept_figures[-1]
    ax = fig.axes[0]
    fig.canvas.draw()
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= frame.x1  # right of the axes, over no curve
    assert "35 correctly classified examples" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "gradient" and "lrp_epsilon (≈ grad_x_input)" in labels  # ordered as the lines end


def test_every_figure_names_its_examples(kept_figures, tmp_path):
    results = _results()
    figures.plot_perturbation(tmp_path / "p.png", results)
    figures.plot_faithfulness(tmp_path / "f.png", results)
    figures.plot_agreement(tmp_path / "a.png", list(METHODS), results["agreement"])
    perturbation, faithfulness, agreement = kept_figures
    assert perturbation.get_suptitle().startswith("Perturbation curves on 40 examples")
    assert all(ax.get_legend() is None for ax in perturbation.axes)  # small multiples, no legend over curves
    assert [ax.get_title().split("\n")[0] for ax in faithfulness.axes] == [
        "AOPC comprehensiveness ↑ (40 examples)", "AOPC sufficiency ↓ (40 examples)", "ABPC ↑ (40 examples)"]
    assert "over 38–40 examples" in agreement.axes[0].get_title()


def test_agreement_annotations_are_readable_on_dark_cells(kept_figures, tmp_path):
    figures.plot_agreement(tmp_path / "a.png", ["a", "b"], {("a", "a"): (1.0, 9), ("b", "b"): (1.0, 9),
                                                            ("a", "b"): (0.1, 9), ("b", "a"): (0.1, 9)})
    texts = {t.get_text(): t for t in kept_figures[-1].axes[0].texts}
    assert texts["1.00"].get_color() == "white" and texts["0.10"].get_color() == "black"
    assert texts["1.00"].get_fontsize() >= 8


def test_every_metric_has_a_direction_and_a_definition(tmp_path):
    out = tmp_path / "report"
    info = {"title": "t", "model": "m", "task": "sst2", "split": "dev", "examples": 40, "accuracy": 0.9,
            "replacement": "pad", "min_tokens": 10, "device": "cpu", "torch_threads": 1, "seconds": 1.0}
    write_report(out, info, _results(("attnlrp", "random")), {}, {0: "neg", 1: "pos"}, heatmaps=0)
    with open(out / "summary.csv") as f:
        header = next(csv.reader(f))
    assert "abpc" in header and not any("↑" in h or "↓" in h for h in header)  # the CSV keeps bare names
    metrics = [h for h in header if h != "method"]
    assert all(column_key(h) in COLUMNS for h in metrics)
    assert len(definitions(header)) == len({column_key(h) for h in metrics})
    markdown, page = (out / "report.md").read_text(encoding="utf-8"), (out / "index.html").read_text(encoding="utf-8")
    for h in metrics:
        assert with_direction(h) in markdown and with_direction(h) in page
    assert "| method | acc@1 ↓ |" in markdown and "- `aopc_sufficiency ↓`: mean drop of p(target)" in markdown
    assert "<code>abpc ↑</code>: area between" in page and "no better direction" in page
