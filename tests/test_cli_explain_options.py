"""``explain``'s options that map onto :meth:`Explainer.explain`: ``--target all``, ``--contrast``,
``--stride`` (long documents), ``--layers`` and several ``--methods``; resuming such runs; their bad
values (exit 2, one line)."""

import json
from pathlib import Path

import pytest

from lrp_kernels import Explainer
from tiny_checkpoint import shared_tiny_checkpoint, tiny_sentences

WINDOW, STRIDE = 16, 4


@pytest.fixture(scope="module")
def ckpt():
    return shared_tiny_checkpoint()


@pytest.fixture(scope="module")
def documents():
    """Texts of 1 to 4 windows of 16 tokens (one token per word in the tiny vocabulary)."""
    return [" ".join(tiny_sentences(1, seed=s, min_words=n, max_words=n)) for s, n in
            enumerate([40, 5, 20, 44, 9, 30, 12, 36, 3, 26])]


def _records(result):
    assert result.status == 0, result.err
    return [json.loads(line) for line in result.out.splitlines()]


def _explain(run_cli, ckpt, *argv):
    return _records(run_cli("explain", "--model", ckpt, "--no-progress", "--json", *argv))


def _close(a, b, tol=1e-5):
    return len(a) == len(b) and all(abs(x - y) <= tol * (1 + abs(y)) for x, y in zip(a, b))


def test_target_all_gives_every_class_and_equals_one_run_per_class(ckpt, run_cli, tmp_path):
    page = tmp_path / "all.html"
    every = _explain(run_cli, ckpt, "--method", "grad_x_input", "--target", "all", "--html", page, "good film",
                     "the plot is dull")
    assert [r["class_names"] for r in every] == [["neg<b>", "pos&amp"]] * 2
    for k in (0, 1):
        single = _explain(run_cli, ckpt, "--method", "grad_x_input", "--target", k, "good film", "the plot is dull")
        assert all(_close(e["class_scores"][k], s["scores"]) for e, s in zip(every, single))
    assert all(r["scores"] == r["class_scores"][r["label"]] and r["target"] == r["label"] for r in every)
    html = page.read_text(encoding="utf-8")
    assert html.count('<input type="radio" name="lrpk-pick"') == 3 and "class neg&lt;b&gt;</label>" in html
    assert html.count('class="lrpk-cls lrpk-k') == 2 * 2 and html.count(" lrpk-pred\"") == 2  # the predicted one each


def test_checkpoint_gives_the_same_records(ckpt, run_cli):
    """--checkpoint recomputes each layer during the backward: the same scores (bit for bit)."""
    argv = ("--methods", "attnlrp,integrated_gradients", "good film", "the plot is dull")
    assert _explain(run_cli, ckpt, "--checkpoint", *argv) == _explain(run_cli, ckpt, *argv)


def test_contrast_explains_the_difference_of_two_logits(ckpt, run_cli):
    by_index = _explain(run_cli, ckpt, "--method", "grad_x_input", "--target", "1", "--contrast", "0", "good film")[0]
    by_name = _explain(run_cli, ckpt, "--method", "grad_x_input", "--target", "1", "--contrast", "neg<b>",
                       "good film")[0]
    one, zero = (_explain(run_cli, ckpt, "--method", "grad_x_input", "--target", k, "good film")[0] for k in "10")
    assert by_index == by_name and by_index["contrast"] == 0 and by_index["contrast_name"] == "neg<b>"
    assert _close(by_index["scores"], [a - b for a, b in zip(one["scores"], zero["scores"])])
    assert abs(by_index["target_logit"] - (by_index["logits"][1] - by_index["logits"][0])) < 1e-6
    predicted = run_cli("explain", "--model", ckpt, "--no-progress", "--contrast", by_index["label"], "good film")
    assert predicted.status == 0 and not any(json.loads(predicted.out)["scores"])
    assert predicted.err.splitlines() == ["lrp-kernels explain: warning: some texts are predicted as the --contrast "
                                          "class: their scores are all 0 (give --target to explain another class "
                                          "against it)"]


def test_stride_explains_long_texts_whole_as_the_library_does(ckpt, documents, run_cli, tmp_path):
    page = tmp_path / "long.html"
    records = _explain(run_cli, ckpt, "--method", "cp_lrp", "--max-length", WINDOW, "--stride", STRIDE, "--html", page,
                       *documents[:4])
    expected = Explainer.from_pretrained(ckpt, method="cp_lrp", max_length=WINDOW).explain(documents[:4], stride=STRIDE)
    assert [r["windows"] for r in records] == [e.windows for e in expected] == [4, 1, 2, 4]
    assert [r["tokens"] for r in records] == [e.tokens for e in expected]
    assert len(records[0]["tokens"]) == 42  # the whole document, not one window
    assert all(_close(r["scores"], e.scores) for r, e in zip(records, expected))
    html = page.read_text(encoding="utf-8")
    assert "4 windows" in html and "in windows sharing 4" in html
    assert html.count('class="lrpk-tok"') == sum(len(r["tokens"]) - 2 for r in records)  # every token shown


def test_layers_reach_the_records_and_the_page(ckpt, run_cli, tmp_path):
    page = tmp_path / "layers.html"
    record = _explain(run_cli, ckpt, "--method", "cp_lrp", "--layers", "--merge-subwords", "--html", page,
                      "good film")[0]
    layers = record["layers"]
    assert layers["points"] == ["embedding_sum", "layer.0", "layer.1", "encoder_output"]
    assert [len(row) for row in layers["relevance"]] == [len(record["tokens"])] * 4
    assert len(layers["absorbed"]) == len(layers["stages"]) == 4 and len(layers["absorbed"][0]) == len(layers["kinds"])
    assert abs(sum(layers["relevance"][0]) - record["total"]) < 1e-5
    assert "relevance per layer" in page.read_text(encoding="utf-8")


def test_several_methods_give_one_record_per_text_and_method(ckpt, run_cli, tmp_path):
    page = tmp_path / "methods.html"
    texts = ["good film", "the plot is dull", "a witty script"]
    both = _explain(run_cli, ckpt, "--methods", "attnlrp,grad_x_input", "--html", page, *texts)
    assert [(r["id"], r["method"]) for r in both] == [(i, m) for i in (1, 2, 3) for m in ("attnlrp", "grad_x_input")]
    for method in ("attnlrp", "grad_x_input"):
        alone = _explain(run_cli, ckpt, "--method", method, *texts)
        assert all(_close(a["scores"], b["scores"]) for a, b in zip(alone, [r for r in both if r["method"] == method]))
    assert page.read_text(encoding="utf-8").count('class="lrpk-row"') == 3  # each text's methods side by side


def test_a_terminal_table_names_the_contrast(ckpt, monkeypatch, run_cli):
    import _pytest.capture

    monkeypatch.setattr(_pytest.capture.CaptureIO, "isatty", lambda self: True, raising=False)
    table = run_cli("explain", "--model", ckpt, "--no-progress", "--target", "1", "--contrast", "0", "good film")
    assert table.status == 0 and "relevance for pos&amp against neg<b> (attnlrp)" in table.out


# ---------------------------------------------------------------------------------------------
# resuming


def test_resumed_long_documents_equal_an_uninterrupted_run(ckpt, documents, tmp_path, run_cli):
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(documents) + "\n", encoding="utf-8")
    common = ["explain", "--model", ckpt, "--input", source, "--batch-size", "3", "--methods", "cp_lrp,grad_x_input",
              "--max-length", WINDOW, "--stride", STRIDE, "--target", "all", "--layers", "--no-progress"]
    full, resumed = tmp_path / "full.jsonl", tmp_path / "resumed.jsonl"
    assert run_cli(*common, "--output", full).status == 0
    stopped = run_cli(*common, "--output", resumed, "--stop-after-batches", "2")
    assert stopped.status == 0 and "stopped early" in stopped.err
    lines = resumed.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == 2 * 3 * 2  # two batches of three texts, two methods each
    # an interruption inside a batch: its last record (a text's second method) and half of the one before
    resumed.write_text("".join(lines[:-2]) + lines[-2][:40], encoding="utf-8")
    assert run_cli(*common, "--output", resumed, "--stop-after-batches", "1").status == 0
    assert run_cli(*common, "--output", resumed).status == 0
    assert resumed.read_bytes() == full.read_bytes()
    rows = [json.loads(line) for line in full.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 * len(documents) and max(r["windows"] for r in rows) == 4
    assert rows[0]["computed_from"]["stride"] == STRIDE and rows[0]["computed_from"]["target"] == "all"


@pytest.fixture(scope="module")
def written(ckpt, tmp_path_factory):
    """An output written with every new option, and the command that wrote it."""
    directory = tmp_path_factory.mktemp("resume-options")
    source = directory / "in.txt"
    source.write_text("\n".join(tiny_sentences(4, seed=3, min_words=10, max_words=30)) + "\n", encoding="utf-8")
    out = directory / "out.jsonl"
    command = ["explain", "--model", ckpt, "--input", source, "--no-progress", "--output", out, "--methods",
               "attnlrp,grad_x_input", "--target", "1", "--contrast", "0", "--max-length", WINDOW, "--stride", STRIDE,
               "--layers"]
    from lrp_kernels.cli import main

    assert main([str(a) for a in command]) == 0
    return command, out.read_bytes()


def _replace(command, option, value):
    """``command`` with ``option``'s value replaced (``value`` None: the option removed)."""
    i = command.index(option)
    tail = command[i + (1 if option == "--layers" else 2):]
    return command[:i] + ([] if value is None else [option, value]) + tail


@pytest.mark.parametrize("option, value, message", [
    ("--methods", "attnlrp", 'computed with methods ["attnlrp", "grad_x_input"], this run uses ["attnlrp"]'),
    ("--methods", "attnlrp,grad_x_input,cp_lrp", "this run uses [\"attnlrp\", \"grad_x_input\", \"cp_lrp\"]"),
    ("--methods", "cp_lrp,gradient", 'computed with method "attnlrp", this run uses "cp_lrp,gradient"'),
    ("--target", "all", 'computed with target 1, this run uses "all"'),
    ("--contrast", None, "computed with contrast 0, this run uses null"),
    ("--stride", "2", "computed with stride 4, this run uses 2"),
    ("--stride", None, "computed with stride 4, this run uses null"),
    ("--layers", None, "computed with layers true, this run uses false"),
])
def test_resume_refuses_other_options(written, run_cli, option, value, message):
    command, before = written
    result = run_cli(*_replace(command, option, value))
    result.assert_user_error(message)
    assert Path(command[command.index("--output") + 1]).read_bytes() == before  # nothing lost


def test_the_same_options_resume_and_older_outputs_still_do(written, run_cli, ckpt, tmp_path):
    command, before = written
    assert run_cli(*command).status == 0  # nothing left to do: unchanged
    out = tmp_path / "old.jsonl"
    assert run_cli("explain", "--model", ckpt, "--no-progress", "--output", out, "good film", "dull").status == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for row in rows:  # as the previous version wrote them: no methods, contrast, stride, layers
        row["computed_from"] = {k: v for k, v in row["computed_from"].items()
                                if k not in ("methods", "contrast", "stride", "layers")}
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    old = out.read_bytes()
    assert run_cli("explain", "--model", ckpt, "--no-progress", "--output", out, "good film", "dull").status == 0
    assert out.read_bytes() == old
    run_cli("explain", "--model", ckpt, "--no-progress", "--output", out, "--layers", "good film",
            "dull").assert_user_error("computed with layers false, this run uses true")


# ---------------------------------------------------------------------------------------------
# bad values


@pytest.mark.parametrize("extra, message", [
    (["--target", "everything"], "--target 'everything' is neither a class index nor a label name nor all"),
    (["--contrast", "all"], "--contrast 'all' is neither a class index nor a label name (labels: neg<b>, pos&amp)"),
    (["--contrast", "2"], "--contrast 2 out of range: the model has 2 labels (0..1)"),
    (["--target", "1", "--contrast", "pos&amp"], "--contrast pos&amp is the explained class (--target 1)"),
    (["--contrast", "0", "--methods", "attnlrp,rollout"], "--contrast applies to the methods whose scores depend"),
    (["--layers", "--method", "integrated_gradients"], "--layers applies to the gradient methods (gradient, "),
    (["--read-at", "embedding_sum", "--methods", "attnlrp,lat"], "--read-at applies to the gradient methods"),
    (["--stride", "-1"], "--stride must be non-negative, not -1"),
    (["--max-length", "16", "--stride", "14"], "--stride 14 must be below 14: a window of 16 tokens"),
    (["--methods", "attnlrp,nope"], "unknown method 'nope'"),
    (["--methods", "attnlrp,attnlrp"], "listed twice"),
    (["--stride", "x"], "--stride: invalid int value: 'x'"),
    (["--layers", "--checkpoint"], "checkpoint=True does not combine with layers=True"),
])
def test_bad_values_are_one_line_errors(ckpt, run_cli, extra, message):
    run_cli("explain", "--model", ckpt, "--no-progress", *extra, "good film").assert_user_error(message)
