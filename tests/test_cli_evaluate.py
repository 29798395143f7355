"""``lrp-kernels evaluate`` end to end on a tiny checkpoint and a tiny SST-2-style split (user errors:
test_cli_errors.py)."""

import csv
import random
import re

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
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count('class="lrpk-expl"') == 2 * 2
    assert "punctuation (a word with no letter or digit) and English stop words" in page  # the rule, stated
    kept = tmp_path / "kept"
    assert main(["evaluate", "--model", str(ckpt), "--task", "sst2", "--data-dir", str(data), "--out", str(kept),
                 "--no-progress", "--methods", "attnlrp", "--metrics", "word_rank", "--keep-stop-words"]) == 0
    assert "every word ranked (--keep-stop-words)" in (kept / "index.html").read_text(encoding="utf-8")


def test_evaluate_prints_its_plan_and_a_progress_bar_per_method(setup, tmp_path, capsys):
    ckpt, data = setup
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(ckpt), "--task", "sst2", "--data-dir", str(data), "--output", f"{out}/",
                 "--methods", "attnlrp,integrated_gradients", "--ig-steps", "4", "--max-examples", "12",
                 "--metrics", "aopc"]) == 0
    captured = capsys.readouterr()
    plan = captured.err.splitlines()[0]
    # 12 examples: attnlrp 12 passes, IG 12 x 4; AOPC: two variants per kept bin of each example
    assert plan.startswith("plan: 12 examples x 2 methods: 60 forward+backward passes (integrated gradients: "
                           "4 steps each), up to ")
    assert re.search(r"; estimated at most \d+ (s|min|h) in all \(from the first forward's [\d,]+ sequences/s\)$",
                     plan), plan
    assert sum("100%" in line for line in captured.err.replace("\r", "\n").splitlines()) == 2  # once per method
    assert "evaluate 1/2 attnlrp" in captured.err and "evaluate 2/2 integrated_gradients" in captured.err
    assert "<" in captured.err and "pass/s" in captured.err  # tqdm's elapsed<remaining (the ETA)
    assert f"report: {out}/index.html" in captured.out and "//" not in captured.out


def test_explain_and_evaluate_warn_about_a_checkpoint_near_chance(setup, tmp_path, run_cli):
    import json
    import shutil

    ckpt, data = setup
    model = tmp_path / "model"
    shutil.copytree(ckpt, model)
    (model / "metrics.json").write_text(json.dumps({"dev": {"accuracy": 0.51}, "dev_majority_rate": 0.509}))
    expected = (f"warning: {model / 'metrics.json'}: saved dev accuracy 0.5100 is near the majority-class rate "
                "0.5090: the model has not learned the task")
    explain = run_cli("explain", "--model", model, "--no-progress", "good")
    evaluate = run_cli("evaluate", "--model", model, "--task", "sst2", "--data-dir", data, "--output", tmp_path / "r",
                       "--no-progress", "--methods", "random", "--metrics", "word_rank")
    for result in (explain, evaluate):
        assert result.status == 0
        assert [line for line in result.err.splitlines() if expected in line] != []
