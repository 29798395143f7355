"""``lrp-kernels evaluate`` end to end on a tiny checkpoint and a tiny SST-2-style split (user errors:
test_cli_errors.py)."""

import csv
import random

import pytest

from cli_helpers import write_sst2_split
from lrp_kernels.cli import main
from tiny_checkpoint import shared_tiny_checkpoint, tiny_sentences


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("tiny") / "data"
    write_sst2_split(data / "dev.tsv", tiny_sentences(30, seed=4, min_words=5, max_words=20), random.Random(2))
    return shared_tiny_checkpoint(), data


def test_evaluate_all_methods(setup, tmp_path, capsys):
    ckpt, data = setup
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(ckpt), "--task", "sst2", "--data-dir", str(data), "--out", str(out),
                 "--no-progress", "--ig-steps", "4", "--replacement", "mask", "--max-examples", "24"]) == 0
    stdout = capsys.readouterr().out
    assert "24 examples" in stdout and f"{out}/index.html" in stdout
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["gradient", "grad_x_input", "lrp_epsilon", "attnlrp", "cp_lrp", "lat",
                                           "integrated_gradients", "rollout", "random"]
    for r in rows:
        accuracies = [float(r[f"acc@{k}"]) for k in range(1, 11)]
        assert all(0.0 <= a <= 1.0 for a in accuracies)
        assert float(r["attribution_seconds"]) >= 0.0
    with open(out / "deletion.csv") as f:
        deletion = list(csv.DictReader(f))
    assert len(deletion) == 9 * 11 and {d["k"] for d in deletion} == {str(k) for k in range(11)}
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Faithfulness" in report and "## Method agreement" in report and "![deletion.png](deletion.png)" in report
    with open(out / "agreement.csv") as f:
        matrix = list(csv.reader(f))
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)


def test_evaluate_selected_metrics(setup, tmp_path):
    ckpt, data = setup
    out = tmp_path / "r"
    assert main(["evaluate", "--model", str(ckpt), "--task", "sst2", "--data-dir", str(data), "--out", str(out),
                 "--no-progress", "--methods", "attnlrp,random", "--metrics", "deletion,word_rank",
                 "--min-tokens", "3", "--heatmaps", "2"]) == 0
    with open(out / "summary.csv") as f:
        header = next(csv.reader(f))
    assert "acc@1" in header and "abpc" not in header and "aopc_comprehensiveness" not in header
    assert (out / "word_rank.csv").is_file() and not (out / "abpc_curves.csv").exists()
    assert (out / "index.html").read_text(encoding="utf-8").count('class="lrpk-expl"') == 2 * 2
