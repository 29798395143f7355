"""``lrp-kernels explain`` end to end on a tiny checkpoint: inputs, outputs, resuming, torchrun, bad
input files (bad arguments: test_cli_errors.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrp_kernels.cli import main
from tiny_checkpoint import shared_tiny_checkpoint, tiny_sentences

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt():
    return shared_tiny_checkpoint()


@pytest.fixture(scope="module")
def texts():
    return tiny_sentences(45, seed=5, min_words=2, max_words=30) + ["<script> alert & the film"]


def _lines(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_texts_to_stdout(ckpt, capsys):
    assert main(["explain", "--model", str(ckpt), "--no-progress", "good film", "the plot is dull", "--target", "1"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in records] == [1, 2]  # ids start at 1, as the line numbers of files do
    assert records[0]["tokens"] == ["[CLS]", "good", "film", "[SEP]"]
    assert records[0]["special"] == [True, False, False, True]
    assert all(r["target"] == 1 and r["method"] == "attnlrp" for r in records)
    assert len(records[1]["scores"]) == len(records[1]["tokens"]) == 6


def test_label_name_target_and_merge(ckpt, capsys):
    assert main(["explain", "--model", str(ckpt), "--no-progress", "--method", "gradient", "--target", "neg<b>",
                 "--merge-subwords", "a dull film"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["target"] == 0 and record["target_name"] == "neg<b>" and record["method"] == "gradient"


def test_word_pieces_are_merged_unless_no_merge_subwords(minilm_dir, run_cli, tmp_path):
    """Words by default in the JSON lines and the page (MiniLM splits "unbelievably" into pieces)."""
    page = tmp_path / "words.html"
    command = ["explain", "--model", "minilm", "--no-progress", "--json", "unbelievably boring"]
    words = run_cli(*command, "--html", page)
    assert words.status == 0, words.err
    merged = json.loads(words.out)
    assert merged["tokens"] == ["[CLS]", "unbelievably", "boring", "[SEP]"]
    assert ">unbelievably<" in page.read_text(encoding="utf-8")
    pieces = json.loads(run_cli(*command, "--no-merge-subwords").out)
    assert pieces["tokens"][:3] == ["[CLS]", "un", "##bel"] and len(pieces["tokens"]) == 8
    assert sum(merged["scores"]) == pytest.approx(sum(pieces["scores"]), rel=1e-5, abs=1e-7)
    assert json.loads(run_cli(*command, "--merge-subwords").out)["tokens"] == merged["tokens"]


def test_input_txt_writes_jsonl_and_escaped_html(ckpt, texts, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts[:10] + [""] + texts[10:]) + "\n", encoding="utf-8")
    out, page, png = tmp_path / "out.jsonl", tmp_path / "out.html", tmp_path / "out.png"
    assert main(["explain", "--model", str(ckpt), "--input", str(source), "--output", str(out), "--html", str(page),
                 "--png", str(png), "--batch-size", "8", "--no-progress"]) == 0
    records = _lines(out)
    assert [r["text"] for r in records] == texts  # input order, blank line skipped
    assert [r["id"] for r in records] == list(range(1, 11)) + list(range(12, len(texts) + 2))  # line numbers
    html = page.read_text(encoding="utf-8")
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "neg&lt;b&gt;" in html or "pos&amp;amp" in html
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_input_jsonl_and_csv(ckpt, tmp_path):
    jl = tmp_path / "in.jsonl"
    jl.write_text("\n".join(json.dumps({"id": f"x{i}", "body": t}) for i, t in enumerate(["good film", "bad plot"])),
                  encoding="utf-8")
    out = tmp_path / "a.jsonl"
    assert main(["explain", "--model", str(ckpt), "--input", str(jl), "--text-column", "body", "--output", str(out),
                 "--no-progress"]) == 0
    assert [r["id"] for r in _lines(out)] == ["x0", "x1"]
    table = tmp_path / "in.csv"
    table.write_text('key,review,other\nk1,"good, fun film",1\nk2,the acting is awful,2\n', encoding="utf-8")
    out2 = tmp_path / "b.jsonl"
    assert main(["explain", "--model", str(ckpt), "--input", str(table), "--text-column", "review", "--id-column",
                 "key", "--output", str(out2), "--no-progress"]) == 0
    records = _lines(out2)
    assert [r["id"] for r in records] == ["k1", "k2"] and records[0]["text"] == "good, fun film"


def test_input_lines_and_tsv_quotes_are_read_as_written(ckpt, tmp_path, run_cli):
    texts = ["good \u2028 film", "bad\x0cplot", "dull\x1dacting", "fine"]
    source = tmp_path / "in.txt"
    source.write_bytes(("\r\n".join(texts) + "\n").encode("utf-8"))
    result = run_cli("explain", "--model", ckpt, "--no-progress", "--input", source, "--method", "random")
    rows = result.out.split("\n")[:-1]  # (a raw U+2028 stays in a JSON line: str.splitlines would cut it)
    assert [(r["id"], r["text"]) for r in map(json.loads, rows)] == list(enumerate(texts, 1))
    table = tmp_path / "in.tsv"
    rows = ['"good," she said', 'an "unbalanced film', "plain plot", '"quoted"']
    table.write_text("text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = run_cli("explain", "--model", ckpt, "--no-progress", "--input", table, "--method", "random")
    assert [(r["id"], r["text"]) for r in map(json.loads, result.out.splitlines())] == list(enumerate(rows, 1))


def test_pairs(ckpt, tmp_path, capsys):
    jl = tmp_path / "pairs.jsonl"
    jl.write_text(json.dumps({"text": "good film", "text_pair": "bad plot"}) + "\n", encoding="utf-8")
    assert main(["explain", "--model", str(ckpt), "--input", str(jl), "--text-pair-column", "text_pair",
                 "--no-progress"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["tokens"] == ["[CLS]", "good", "film", "[SEP]", "bad", "plot", "[SEP]"]
    assert record["text_pair"] == "bad plot"


@pytest.mark.parametrize("method", ["random", "attnlrp"])
def test_resumed_output_equals_uninterrupted(ckpt, texts, tmp_path, method):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    full, resumed = tmp_path / "full.jsonl", tmp_path / "resumed.jsonl"
    common = ["explain", "--model", str(ckpt), "--input", str(source), "--batch-size", "8", "--method", method,
              "--no-progress"]
    assert main(common + ["--output", str(full)]) == 0
    assert main(common + ["--output", str(resumed), "--stop-after-batches", "3"]) == 0
    first = resumed.read_text(encoding="utf-8").splitlines()
    assert len(first) == 24  # three batches of 8, written as they finished
    with open(resumed, "a", encoding="utf-8") as f:  # an interrupted write: half a line, no newline
        f.write(first[0][: len(first[0]) // 2])
    assert main(common + ["--output", str(resumed), "--stop-after-batches", "1"]) == 0
    assert len(resumed.read_text(encoding="utf-8").splitlines()) == 32
    assert main(common + ["--output", str(resumed)]) == 0
    assert resumed.read_bytes() == full.read_bytes()
    assert main(common + ["--output", str(resumed)]) == 0  # nothing left to do: unchanged
    assert resumed.read_bytes() == full.read_bytes()


def _assert_same_record(a, b, where="record"):
    """Equal JSON values, floats within fp32 summation-order noise: one process with 2 threads and two
    with 1 thread sum the same products in other orders (measured up to 4.2e-5 on scores of ~1)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-4), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_record(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_record(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_torchrun_two_processes_equal_one(ckpt, texts, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    single, parallel = tmp_path / "single.jsonl", tmp_path / "parallel.jsonl"
    args = ["explain", "--model", str(ckpt), "--input", str(source), "--batch-size", "8", "--method", "grad_x_input",
            "--no-progress", "--device", "cpu"]
    assert main(args + ["--output", str(single)]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "lrp_kernels.cli"] + args + ["--output", str(parallel)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = (path.read_text(encoding="utf-8").splitlines() for path in (parallel, single))
    assert len(got) == len(want)
    for a, b in zip(got, want):  # same records in the same order; floats as below
        _assert_same_record(json.loads(a), json.loads(b))
    assert not list(tmp_path.glob("parallel.jsonl.part-rank*"))  # rank 0 merged and removed the parts


@pytest.mark.parametrize(
    "name, content, extra, message",
    [
        ("empty.txt", b"", [], "file is empty"),
        ("latin1.txt", "caf\u00e9 film\n".encode("latin-1"), [], "not valid UTF-8"),
        ("cols.csv", b"a,b\n1,2\n", [], "no column 'text'"),
        ("cols2.csv", b"text,b\ngood,2\n", ["--id-column", "key"], "no column 'key'"),
        ("broken.jsonl", b'{"text": "good"}\n{"text": \n', [], "invalid JSON"),
        ("nofield.jsonl", b'{"body": "good"}\n', [], "no 'text' field"),
        ("dupe.jsonl", b'{"id": 1, "text": "good"}\n{"id": 1, "text": "bad"}\n', [], "appears twice"),
        ("in.docx", b"good", [], "unsupported input type"),
        ("noid.csv", b"key,text\nk1,good\n,bad\n", ["--id-column", "key"], "noid.csv:3 (column 'key'): empty id"),
        ("noid.tsv", b"key\ttext\nk1\tgood\n \tbad\n", ["--id-column", "key"], "noid.tsv:3 (column 'key'): empty id"),
        ("nullid.jsonl", b'{"id": 1, "text": "good"}\n{"id": null, "text": "bad"}\n', [],
         "nullid.jsonl:2: the id must be an integer or a string, not null"),
        ("noidfield.jsonl", b'{"key": 1, "text": "good"}\n{"text": "bad"}\n', ["--id-column", "key"],
         "noidfield.jsonl:2: no 'key' field"),
    ],
)
def test_bad_inputs_are_one_line_errors(ckpt, tmp_path, run_cli, name, content, extra, message):
    path = tmp_path / name
    path.write_bytes(content)
    run_cli("explain", "--model", ckpt, "--input", path, "--no-progress", *extra).assert_user_error(message)


def test_missing_model_and_foreign_output(ckpt, tmp_path, capsys):
    assert main(["explain", "--model", str(tmp_path / "none"), "good"]) == 2
    assert "checkpoint directory not found" in capsys.readouterr().err
    out = tmp_path / "o.jsonl"
    assert main(["explain", "--model", str(ckpt), "--output", str(out), "--no-progress", "good"]) == 0
    line = out.read_text(encoding="utf-8")
    assert main(["explain", "--model", str(ckpt), "--output", str(out), "--method", "lat", "--no-progress", "good"]) == 2
    assert 'computed with method "attnlrp", this run uses "lat"' in capsys.readouterr().err
    out.write_text(line + "not json\n" + line)
    assert main(["explain", "--model", str(ckpt), "--output", str(out), "--no-progress", "good"]) == 2
    assert ":2: not a JSON line" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# resuming refuses to mix rows computed from other texts, models or settings


@pytest.fixture(scope="module")
def written(ckpt, texts, tmp_path_factory):
    """An output of three texts (attnlrp, predicted class) and the command that wrote it."""
    directory = tmp_path_factory.mktemp("resume")
    source = directory / "in.txt"
    source.write_text("\n".join(texts[:3]) + "\n", encoding="utf-8")
    out = directory / "out.jsonl"
    command = ["explain", "--model", ckpt, "--input", source, "--no-progress", "--output", out]
    assert main([str(a) for a in command]) == 0
    return command, out.read_bytes()


def _other_input(tmp_path, texts, lines):
    path = tmp_path / "other.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["--input", path]


@pytest.mark.parametrize("field, change, message", [
    ("text", lambda tmp, texts: _other_input(tmp, texts, texts[3:6]), "computed from a different text"),
    ("id", lambda tmp, texts: _other_input(tmp, texts, texts[:1]), "id 2 is not in this input"),
    ("model", lambda tmp, texts: ["--model", shared_tiny_checkpoint(seed=1)], "computed with model"),
    ("method", lambda tmp, texts: ["--method", "cp_lrp"], 'computed with method "attnlrp", this run uses "cp_lrp"'),
    ("target", lambda tmp, texts: ["--target", "1"], 'computed with target "predicted", this run uses 1'),
    ("eps", lambda tmp, texts: ["--eps", "0.01"], "computed with eps 1e-06, this run uses 0.01"),
    ("read_at", lambda tmp, texts: ["--read-at", "embedding_output"], 'computed with read_at "embedding_sum"'),
    ("max_length", lambda tmp, texts: ["--max-length", "40"], "computed with max_length 64, this run uses 40"),
    ("merge_subwords", lambda tmp, texts: ["--no-merge-subwords"], "computed with merge_subwords true, this run "
                                                                    "uses false"),
    ("dtype", lambda tmp, texts: ["--dtype", "float64"], 'computed with dtype "float32"'),
])
def test_resume_refuses_rows_of_other_inputs_or_settings(written, texts, tmp_path, run_cli, field, change, message):
    command, before = written
    out = Path(command[-1])
    result = run_cli(*command, *change(tmp_path, texts))
    result.assert_user_error(message)
    assert "--overwrite" in result.err and out.read_bytes() == before  # nothing lost


def test_resume_names_the_flag_for_pieces_written_before_words_were_the_default(written, run_cli, tmp_path):
    command, _ = written
    out = tmp_path / "pieces.jsonl"
    command = [*command[:-1], out]
    assert run_cli(*command, "--no-merge-subwords").status == 0  # pieces, as the former default wrote them
    run_cli(*command).assert_user_error("computed with merge_subwords false, this run uses true "
                                        "(--no-merge-subwords resumes it); use another --output")


def test_resume_refuses_an_output_of_an_older_version(ckpt, tmp_path, run_cli):
    out = tmp_path / "old.jsonl"
    out.write_text('{"id": 1, "text": "good", "method": "attnlrp", "scores": [0.1, 0.2, 0.3]}\n', encoding="utf-8")
    before = out.read_bytes()
    run_cli("explain", "--model", ckpt, "--no-progress", "--output", out, "good").assert_user_error(
        "does not record what it was computed from")
    assert out.read_bytes() == before


def test_overwrite_replaces_the_output(written, run_cli):
    command, _ = written
    out = Path(command[-1])
    assert run_cli(*command, "--target", "1", "--overwrite").status == 0
    rows = _lines(out)
    assert len(rows) == 3 and all(r["target"] == 1 and r["computed_from"]["target"] == 1 for r in rows)
    assert rows[0]["computed_from"]["model"].startswith("sha256:")
    assert run_cli(*command, "--target", "1").status == 0  # the same settings resume (nothing left to do)


# ---------------------------------------------------------------------------------------------
# stdin, ids, terminal table, warnings


def test_input_dash_reads_stdin_and_ids_start_at_one(ckpt, monkeypatch, run_cli):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"good film\n\nthe plot is dull\n")))
    result = run_cli("explain", "--model", ckpt, "--no-progress", "--input", "-")
    assert result.status == 0, result.err
    assert [json.loads(line)["id"] for line in result.out.splitlines()] == [1, 3]  # line numbers, as for files
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"id": "a", "text": "good"}\n')))
    result = run_cli("explain", "--model", ckpt, "--no-progress", "--input", "-", "--input-format", "jsonl")
    assert json.loads(result.out)["id"] == "a"


def test_terminal_gets_a_table_and_json_on_request(ckpt, monkeypatch, run_cli):
    import _pytest.capture

    monkeypatch.setattr(_pytest.capture.CaptureIO, "isatty", lambda self: True, raising=False)
    table = run_cli("explain", "--model", ckpt, "--no-progress", "--top-k", "2", "good film", "the plot is dull")
    assert table.status == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].startswith("id 1: predicted ") and "(attnlrp)" in lines[0]
    assert any(line.split()[:1] == ["good"] and line.split()[1].startswith(("+", "-")) for line in lines)
    assert any(line.strip().startswith("top 2: ") for line in lines) and "id 2: predicted" in table.out
    as_json = run_cli("explain", "--model", ckpt, "--no-progress", "--json", "good film")
    assert json.loads(as_json.out)["tokens"] == ["[CLS]", "good", "film", "[SEP]"]


def test_truncation_is_one_clean_warning_line(ckpt, run_cli):
    result = run_cli("explain", "--model", ckpt, "--no-progress", "--max-length", "3", "good film is very bad", "good")
    assert result.status == 0
    assert result.err.splitlines() == ["lrp-kernels explain: warning: 1 text(s) longer than 3 tokens were truncated "
                                       "(first: id 1); --stride N explains them whole, in windows"]


def test_a_rerun_with_nothing_left_says_so_and_the_last_progress_line_is_printed_once(ckpt, tmp_path, run_cli):
    """stderr here is not a terminal (a log): the bar's final line once; a re-run that finds every
    record written says 'nothing to do', draws no bar, and leaves the file alone."""
    out = tmp_path / "o.jsonl"
    command = ("explain", "--model", ckpt, "--output", out, "--methods", "gradient,cp_lrp", "good film", "bad plot")
    first = run_cli(*command)
    assert first.status == 0 and first.err.splitlines()[-1] == f"wrote 4 explanations to {out}"
    lines = first.err.replace("\r", "\n").splitlines()
    assert sum("100%" in line for line in lines) == 1, first.err
    written = out.read_bytes()
    again = run_cli(*command)
    assert again.status == 0 and out.read_bytes() == written
    assert again.err.splitlines() == [f"nothing to do: {out} already holds all 4 explanations (--overwrite "
                                      "recomputes them)"]
    one = run_cli("explain", "--model", ckpt, "--output", tmp_path / "one.jsonl", "--no-progress", "--method",
                  "gradient", "good")
    assert one.err.splitlines() == [f"wrote 1 explanation to {tmp_path / 'one.jsonl'}"]


def test_a_mistyped_local_directory_is_not_looked_up_on_the_hub(ckpt, tmp_path, monkeypatch, run_cli):
    """``runs/sst22`` beside ``runs/sst2`` (one slash, as a hub id ``org/name``): a missing local
    directory, with the close name; ``./x``, ``~/x`` and ``a/b/c`` alike."""
    import shutil

    shutil.copytree(ckpt, tmp_path / "runs" / "sst2")
    monkeypatch.chdir(tmp_path)
    run_cli("explain", "--model", "runs/sst22", "good").assert_user_error(
        "runs/sst22: checkpoint directory not found (did you mean runs/sst2?)")
    for name in ("./runs/sst3", "~/no-such-dir-lrpk/x", "a/b/c"):
        run_cli("explain", "--model", name, "good").assert_user_error(f"{name}: checkpoint directory not found")
