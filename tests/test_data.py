"""The dataset processors: every named task from fixture files in its original layout, the generic
reader, and one clear error (file and line) for each kind of bad input."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from lrp_kernels.data import TASKS, bundled_sst2_dir, generic_task, get_task, has_labels, load_task
from lrp_kernels.errors import InputError

SST2_DIR = bundled_sst2_dir()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# Each named task: its files (split -> content) in the layout of the original release, and per split
# the expected texts (or text pairs) and 0-based labels (None: the split carries no labels).
FIXTURES = {
    "sst2": (
        {
            "train.tsv": "sentence\tlabel\nhide new secretions from the parental units \t0\na \"charming\" film\t1\n",
            "dev.tsv": "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n",
            "test.tsv": "index\tsentence\n0\tuneasy mishmash of styles and genres .\n1\tgood fun\n",
        },
        {
            "train": (["hide new secretions from the parental units", 'a "charming" film'], [0, 1]),
            "dev": (["it 's a charming and often affecting journey ."], [1]),
            "test": (["uneasy mishmash of styles and genres .", "good fun"], None),
        },
    ),
    "sst5": (
        {
            "stsa.fine.train": "4 a gorgeous , witty , seductive movie .\n0 the worst film of the year\n\n",
            "stsa.fine.dev": "2 it is what it is , 2 hours long\n",
            "stsa.fine.test": "3 a fun ride\n1 flat\n",
        },
        {
            "train": (["a gorgeous , witty , seductive movie .", "the worst film of the year"], [4, 0]),
            "dev": (["it is what it is , 2 hours long"], [2]),
            "test": (["a fun ride", "flat"], [3, 1]),
        },
    ),
    "sst3": (
        {
            "sst-tenary-train.tsv": "sentence\tlabel\nbad\t0\nfine\t1\ngreat\t2\n",
            "sst-tenary-dev.tsv": "sentence\tlabel\nokay\t1\n",
        },
        {"train": (["bad", "fine", "great"], [0, 1, 2]), "dev": (["okay"], [1])},
    ),
    "imdb": (
        {
            "train_IMDb.csv": 'text,label\n"A long review, with a comma\nand a second line",1\nterrible,0\n',
            "test_IMDb.csv": "text,label\nloved it,1\n",
        },
        {
            "train": (["A long review, with a comma\nand a second line", "terrible"], [1, 0]),
            "test": (["loved it"], [1]),
        },
    ),
    "semeval": (
        {
            "train_SemEval.csv": "text,label\n@user so sad today,0\nmeh,1\nyay!,2\n",
            "test_SemEval.csv": "text,label\nwhatever,1\n",
        },
        {"train": (["@user so sad today", "meh", "yay!"], [0, 1, 2]), "test": (["whatever"], [1])},
    ),
    "yelp2": (
        {"train_Yelp2.csv": "text,label\ncold food,1\ngreat pizza,2\n", "test_Yelp2.csv": "text,label\nok,2\n"},
        {"train": (["cold food", "great pizza"], [0, 1]), "test": (["ok"], [1])},
    ),
    "yelp5": (
        {"train_Yelp5.csv": "text,label\nawful,1\nsuperb,5\nfine,3\n", "test_Yelp5.csv": "text,label\nnice,4\n"},
        {"train": (["awful", "superb", "fine"], [0, 4, 2]), "test": (["nice"], [3])},
    ),
    "qnli": (
        {
            "train.tsv": "sentence1\tsentence2\tlabel\nWho won?\tThe home team won.\tentailment\n"
                         "Where is it?\tIt rained.\tnot_entailment\n",
            "dev.tsv": "sentence1\tsentence2\tlabel\nWhen?\tAt noon.\t0\n",
            "test.tsv": "index\tquestion\tsentence\n0\tWhy?\tBecause.\n",
        },
        {
            "train": ([("Who won?", "The home team won."), ("Where is it?", "It rained.")], [0, 1]),
            "dev": ([("When?", "At noon.")], [0]),
            "test": ([("Why?", "Because.")], None),
        },
    ),
    "mrpc": (
        {
            "train.tsv": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t11\t12\tHe said so.\tHe stated it.\n"
                         "0\t13\t14\tRain today.\tSun tomorrow.\n",
            "dev.tsv": "sentence1\tsentence2\tlabel\nA cat.\tA feline.\t1\n",
        },
        {
            "train": ([("He said so.", "He stated it."), ("Rain today.", "Sun tomorrow.")], [1, 0]),
            "dev": ([("A cat.", "A feline.")], [1]),
        },
    ),
}


def test_every_named_task_has_a_fixture():
    assert set(FIXTURES) == set(TASKS)


@pytest.mark.parametrize("task", sorted(FIXTURES))
def test_named_task_loads(tmp_path, task):
    files, expected = FIXTURES[task]
    for name, content in files.items():
        write(tmp_path / name, content)
    spec = TASKS[task]
    for split, (texts, labels) in expected.items():
        ds = load_task(task, tmp_path, split)
        if spec.is_pair:
            assert list(zip(ds["text"], ds["text_pair"])) == texts
        else:
            assert "text_pair" not in ds.column_names
            assert list(ds["text"]) == texts
        if labels is None:
            assert "label" not in ds.column_names
            assert not has_labels(spec, tmp_path, split)
        else:
            assert list(ds["label"]) == labels
            assert ds.features["label"].names == list(spec.label_names)
            assert has_labels(spec, tmp_path, split)
    assert spec.num_labels == len(spec.label_names)


def test_label_counts():
    assert {name: spec.num_labels for name, spec in TASKS.items()} == {
        "sst2": 2, "sst5": 5, "sst3": 3, "imdb": 2, "semeval": 3, "yelp2": 2, "yelp5": 5, "qnli": 2, "mrpc": 2,
    }
    assert TASKS["qnli"].is_pair and TASKS["mrpc"].is_pair and not TASKS["sst2"].is_pair


def test_bundled_sst2_sizes_and_digests():
    """The SST-2 copy inside the package: GLUE's dev set unchanged (GLUE's md5), the demo's train subset
    as its README records it."""
    readme = (SST2_DIR / "README.md").read_text(encoding="utf-8")
    sizes = {split: len(load_task("sst2", SST2_DIR, split)) for split in ("train", "dev")}
    assert sizes == {"train": 3000, "dev": 872}
    assert not has_labels(TASKS["sst2"], SST2_DIR, "test")  # no test file ships
    assert sorted(set(load_task("sst2", SST2_DIR, "dev")["label"])) == [0, 1]
    assert hashlib.md5((SST2_DIR / "dev.tsv").read_bytes()).hexdigest() == "268856b487b2a31a28c0a93daaff7288"
    for name in ("train.tsv", "dev.tsv"):
        digest = hashlib.md5((SST2_DIR / name).read_bytes()).hexdigest()
        assert re.search(rf"`{name}` \|.*\| {digest} \|", readme), (name, digest)


# ---------------------------------------------------------------------------------------------
# generic files


@pytest.mark.parametrize("ext", ["csv", "tsv", "jsonl"])
def test_generic_files(tmp_path, ext):
    rows = [("good movie", "the plot", "pos"), ("bad movie", "the acting", "neg"), ("fine", "ok", "pos")]
    if ext == "jsonl":
        content = "".join(json.dumps({"review": a, "aspect": b, "y": c}) + "\n" for a, b, c in rows)
    else:
        sep = "," if ext == "csv" else "\t"
        content = f"review{sep}aspect{sep}y\n" + "".join(f"{a}{sep}{b}{sep}{c}\n" for a, b, c in rows)
    write(tmp_path / f"train.{ext}", content)
    write(tmp_path / f"validation.{ext}", content)
    ds = load_task("generic", tmp_path, "dev", text_column="review", text_pair_column="aspect", label_column="y")
    assert list(ds["text"]) == ["good movie", "bad movie", "fine"]
    assert list(ds["text_pair"]) == ["the plot", "the acting", "ok"]
    assert ds.features["label"].names == ["neg", "pos"]  # sorted distinct values of the train file
    assert list(ds["label"]) == [1, 0, 1]


def test_generic_integer_labels_and_explicit_files(tmp_path):
    train = write(tmp_path / "a" / "mine.csv", "t,l\nx,0\ny,2\nz,1\n")
    spec = generic_task(text_column="t", label_column="l", files={"train": train})
    assert spec.label_names == ("0", "1", "2") and spec.splits == ("train",)
    assert list(load_task(spec, None, "train")["label"]) == [0, 2, 1]


def test_generic_label_not_in_train_set(tmp_path):
    write(tmp_path / "train.csv", "t,l\nx,pos\ny,neg\n")
    dev = write(tmp_path / "dev.csv", "t,l\nx,pos\ny,neutral\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(dev.resolve()))}:3: label 'neutral' is not in the label set"):
        load_task("generic", tmp_path, "dev", text_column="t", label_column="l")


def test_generic_needs_columns(tmp_path):
    write(tmp_path / "train.csv", "t,l\nx,0\ny,1\n")
    with pytest.raises(InputError, match="needs --text-column and --label-column"):
        load_task("generic", tmp_path, "train", text_column="t")
    with pytest.raises(InputError, match=r"train.csv:1: no column 'text'"):
        load_task("generic", tmp_path, "train", text_column="text", label_column="l")


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the file (and the line)


# (file name, its content (None: no file), task, split, the message after the file name, load_task keywords)
BAD_FILES = {
    "missing_file": ("dev.tsv", None, "sst2", "dev", r": file not found$", {}),
    "missing_column": ("dev.tsv", "text\tlabel\nfine\t1\n", "sst2", "dev",
                       r":1: no column 'sentence' in the header \(columns: text, label\)$", {}),
    "missing_label_column": ("train_IMDb.csv", "text,stars\nfine,1\n", "imdb", "train", r":1: no column 'label'", {}),
    "non_utf8": ("dev.tsv", b"sentence\tlabel\ngood\t1\ncaf\xe9 au lait\t1\n", "sst2", "dev",
                 r":3: not valid UTF-8 \(byte 0xe9 at column 4\)$", {}),
    "wrong_field_count": ("train.tsv", "sentence1\tsentence2\tlabel\na\tb\t0\nonly one\t1\n", "qnli", "train",
                          r":3: expected 3 fields \(sentence1, sentence2, label\), found 2$", {}),
    "empty_text": ("test_SemEval.csv", "text,label\nok,1\n,2\n", "semeval", "test",
                   r":3: empty text in column 'text'$", {}),
    "malformed_label_first_line": ("stsa.fine.train", "3 fine\n4\n", "sst5", "train",
                                   r":2: expected 'LABEL SENTENCE'", {}),
    "bad_jsonl": ("train.jsonl", '{"t": "a", "l": 0}\n{"t": "b", "l": 1\n', "generic", "train", r":2: invalid JSON",
                  {"text_column": "t", "label_column": "l"}),
}


@pytest.mark.parametrize("name, content, task, split, message, kwargs", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_file(tmp_path, name, content, task, split, message, kwargs):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        write(path, content)
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}{message}"):
        load_task(task, tmp_path, split, **kwargs)


@pytest.mark.parametrize(
    "task, name, content, line, raw",
    [
        ("sst2", "dev.tsv", "sentence\tlabel\ngood\t1\nbad\t2\n", 3, "2"),
        ("sst5", "stsa.fine.dev", "4 great\n5 greater\n", 2, "5"),
        ("yelp2", "train_Yelp2.csv", "text,label\ngood,2\nzero based,0\n", 3, "0"),
        ("imdb", "train_IMDb.csv", 'text,label\n"two\nlines",1\nbad,positive!\n', 4, "positive!"),
        ("qnli", "dev.tsv", "sentence1\tsentence2\tlabel\na\tb\tcontradiction\n", 2, "contradiction"),
    ],
)
def test_label_out_of_set(tmp_path, task, name, content, line, raw):
    path = write(tmp_path / name, content)
    split = "train" if "train" in name else "dev"
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:{line}: label '{raw}' is not in the label set of task {task}"):
        load_task(task, tmp_path, split)


@pytest.mark.parametrize("content", ["", "\n\n", "sentence\tlabel\n"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path / "dev.tsv", content)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: (file is empty|no examples after the header)$"):
        load_task("sst2", tmp_path, "dev")


def test_unknown_task_and_split(tmp_path):
    with pytest.raises(InputError, match="unknown task 'sst-2'; known tasks: sst2, sst5"):
        get_task("sst-2")
    with pytest.raises(InputError, match="task imdb has no dev split \\(its splits: train, test\\)"):
        load_task("imdb", tmp_path, "dev")
    with pytest.raises(InputError, match="unknown split 'validation'"):
        load_task("sst2", tmp_path, "validation")
    with pytest.raises(InputError, match="only apply to the generic and hub: tasks"):
        load_task("sst2", tmp_path, "dev", text_column="x")


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"sentence\tlabel\ngood\t1\nbad\t7\n", "dev.tsv:3: label '7' is not in the label set of task sst2"),
        (b"sentence\tlabel\n\xff\t1\n", "dev.tsv:2: not valid UTF-8"),
        (None, "dev.tsv: file not found"),
    ],
)
def test_cli_reports_one_line(tmp_path, run_cli, content, expected):
    """Bad data given to ``lrp-kernels train``: exit status 2, one line on stderr, no traceback."""
    write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    if content is not None:
        (tmp_path / "dev.tsv").write_bytes(content)
    result = run_cli("train", "--model", "minilm", "--task", "sst2", "--data-dir", tmp_path,
                     "--output-dir", tmp_path / "out", "--no-progress")
    result.assert_user_error(expected)
    assert result.err.startswith("lrp-kernels train: error: ")


def test_hub_path_with_a_local_dataset_directory(tmp_path):
    """``hub:NAME`` goes through ``datasets.load_dataset``; a local directory stands in for the hub."""
    write(tmp_path / "train.csv", "sentence,label\ngood,1\nbad,0\nfine,1\n")
    write(tmp_path / "validation.csv", "sentence,label\nnice,1\n")
    ds = load_task(f"hub:{tmp_path}", None, "dev", label_names=["negative", "positive"])  # dev -> validation
    assert list(ds["text"]) == ["nice"] and list(ds["label"]) == [1]
    assert ds.features["label"].names == ["negative", "positive"]
    train = load_task(f"hub:{tmp_path}", None, "train", text_column="sentence", label_column="label")
    assert train.column_names == ["text", "label"] and list(train["label"]) == [1, 0, 1]
    assert train.features["label"].names == ["0", "1"]
    with pytest.raises(InputError, match="no column 'review'"):
        load_task(f"hub:{tmp_path}", None, "train", text_column="review")


# ---------------------------------------------------------------------------------------------
# line ends and quotes: lines end at \n (or \r\n) only; TSV never interprets quotes


INSIDE_A_LINE = ("\u2028", "\x0c", "\x1d", "\u2029", "\x85", "\r")  # str.splitlines would split at each


def test_tsv_never_interprets_quotes_in_any_reader(tmp_path):
    from lrp_kernels.data.readers import read_table

    rows = ['"Hello," she said\tpos', 'an "unbalanced quote\tneg', 'plain\tpos', '"quoted"\tneg']
    path = write(tmp_path / "train.tsv", "text\tlabel\n" + "\n".join(rows) + "\n")
    for fmt in ("tsv", "glue-tsv"):
        _, records = read_table(path, fmt)
        assert [fields["text"] for _, fields in records] == [r.split("\t")[0] for r in rows]
    ds = load_task("generic", tmp_path, "train", text_column="text", label_column="label")  # train's reader
    assert list(ds["text"]) == ['"Hello," she said', 'an "unbalanced quote', "plain", '"quoted"']


@pytest.mark.parametrize("separator", INSIDE_A_LINE)
def test_lines_end_at_newline_only(tmp_path, separator):
    from lrp_kernels.data.readers import read_json_objects, read_label_first, read_lines

    texts = [f"one{separator}two", "three", f"four {separator} five"]
    lines = read_lines(write(tmp_path / "in.txt", "\r\n".join(texts) + "\n"))
    assert lines == [(1, texts[0]), (2, texts[1]), (3, texts[2].strip())]
    raw = "\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in texts) + "\n"
    assert [obj["text"] for _, obj in read_json_objects(write(tmp_path / "in.jsonl", raw))] == texts
    labelled = read_label_first(write(tmp_path / "stsa.fine.dev", "".join(f"1 {t}\n" for t in texts)))[1]
    assert [fields["sentence"] for _, fields in labelled] == [t.strip() for t in texts]


def test_a_json_line_with_a_raw_line_separator_is_accepted(tmp_path):
    from lrp_kernels.data.readers import read_json_objects

    path = tmp_path / "in.jsonl"
    path.write_bytes('{"id": 1, "text": "a\u2028b"}\n{"id": 2, "text": "c"}\n'.encode("utf-8"))
    assert [(n, obj["text"]) for n, obj in read_json_objects(path)] == [(1, "a\u2028b"), (2, "c")]
