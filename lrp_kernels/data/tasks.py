"""The registry of text-classification tasks and :func:`load_task`.

A task names its files per split, their layout, the text column(s), the label column and the label
set. :func:`load_task` reads one split into a ``datasets.Dataset`` with the columns ``text``,
``text_pair`` (sentence-pair tasks only) and ``label`` (an integer ``ClassLabel``; absent when the
split's file carries no labels, as in the GLUE test files).

Sources of the layouts: SST-2, QNLI and MRPC as distributed by GLUE (Wang et al. 2018, "GLUE: A
Multi-Task Benchmark and Analysis Platform for Natural Language Understanding"); SST-5 as the
``stsa.fine.*`` files of Kim (2014) "Convolutional Neural Networks for Sentence Classification";
SST-3 (``sst-tenary-*``), IMDb (Maas et al. 2011), SemEval and Yelp (Zhang et al. 2015) as CSV/TSV
files with a ``text``/``sentence`` and a ``label`` column.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from lrp_kernels.data.readers import Row, format_of, read_table
from lrp_kernels.errors import InputError

SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """How to read one task.

    ``files`` maps a split to its file name inside the data directory (or to an absolute path for a
    generic task); ``text_columns`` holds one column, or two for sentence pairs, each a tuple of
    accepted header names (the first is canonical). Raw labels in a file are the 0-based index
    plus ``label_offset`` or a label name (case-insensitive). ``unlabeled_splits`` may lack the label
    column.
    """

    name: str
    label_names: tuple[str, ...]
    files: dict[str, str]
    fmt: str
    text_columns: tuple[tuple[str, ...], ...] = (("sentence",),)
    label_column: tuple[str, ...] = ("label",)
    label_offset: int = 0
    unlabeled_splits: tuple[str, ...] = ()
    description: str = ""
    #: ``NAME:CONFIG`` of the same data on the Hugging Face hub, read when no data directory is given
    hub: str | None = None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in self.files)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    def label_index(self, raw: str) -> int | None:
        """The 0-based label for a raw value from a file, or None when it is not in the label set."""
        value = raw.strip()
        try:
            number = int(value)
        except ValueError:
            lowered = value.lower()
            for i, name in enumerate(self.label_names):
                if name.lower() == lowered:
                    return i
            return None
        index = number - self.label_offset
        return index if 0 <= index < self.num_labels else None

    def allowed_labels(self) -> str:
        return ", ".join(str(i + self.label_offset) for i in range(self.num_labels))


_SENTIMENT2 = ("negative", "positive")
_SENTIMENT3 = ("negative", "neutral", "positive")
_SENTIMENT5 = ("very negative", "negative", "neutral", "positive", "very positive")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "sst2", _SENTIMENT2, {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, "glue-tsv",
            unlabeled_splits=("test",), description="SST-2, GLUE TSV: sentence<TAB>label", hub="nyu-mll/glue:sst2",
        ),
        TaskSpec(
            "sst5", _SENTIMENT5,
            {"train": "stsa.fine.train", "dev": "stsa.fine.dev", "test": "stsa.fine.test"}, "label-first",
            description="SST-5, stsa.fine.*: LABEL SENTENCE per line",
        ),
        TaskSpec(
            "sst3", _SENTIMENT3, {"train": "sst-tenary-train.tsv", "dev": "sst-tenary-dev.tsv"}, "glue-tsv",
            description="SST-3, sst-tenary-*.tsv: sentence<TAB>label",
        ),
        TaskSpec(
            "imdb", _SENTIMENT2, {"train": "train_IMDb.csv", "test": "test_IMDb.csv"}, "csv",
            text_columns=(("text",),), description="IMDb, *_IMDb.csv: text,label (0/1)",
        ),
        TaskSpec(
            "semeval", _SENTIMENT3, {"train": "train_SemEval.csv", "test": "test_SemEval.csv"}, "csv",
            text_columns=(("text",),), description="SemEval, *_SemEval.csv: text,label (0-2)",
        ),
        TaskSpec(
            "yelp2", _SENTIMENT2, {"train": "train_Yelp2.csv", "test": "test_Yelp2.csv"}, "csv",
            text_columns=(("text",),), label_offset=1, description="Yelp polarity, *_Yelp2.csv: text,label (1-2)",
        ),
        TaskSpec(
            "yelp5", tuple(f"{n} star{'s' if n > 1 else ''}" for n in range(1, 6)),
            {"train": "train_Yelp5.csv", "test": "test_Yelp5.csv"}, "csv",
            text_columns=(("text",),), label_offset=1, description="Yelp full, *_Yelp5.csv: text,label (1-5)",
        ),
        TaskSpec(
            "qnli", ("entailment", "not_entailment"),
            {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, "glue-tsv",
            text_columns=(("sentence1", "question"), ("sentence2", "sentence")), unlabeled_splits=("test",),
            description="QNLI, GLUE TSV: sentence1<TAB>sentence2<TAB>label",
        ),
        TaskSpec(
            "mrpc", ("not_equivalent", "equivalent"),
            {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, "glue-tsv",
            text_columns=(("sentence1", "#1 String"), ("sentence2", "#2 String")),
            label_column=("label", "Quality"), unlabeled_splits=("test",),
            description="MRPC, GLUE TSV: sentence1<TAB>sentence2<TAB>label",
        ),
    )
}


def _find_column(path: Path, header: list[str], names: tuple[str, ...], required: bool) -> str | None:
    for name in names:
        if name in header:
            return name
    if required:
        wanted = " or ".join(repr(n) for n in names)
        raise InputError(f"{path}:1: no column {wanted} in the header (columns: {', '.join(header) or 'none'})")
    return None


def _to_dataset(spec: TaskSpec, path: Path, header: list[str], rows: list[Row], split: str):
    import datasets

    text_cols = [_find_column(path, header, names, True) for names in spec.text_columns]
    label_col = _find_column(path, header, spec.label_column, split not in spec.unlabeled_splits)
    texts: list[list[str]] = [[] for _ in text_cols]
    labels: list[int] = []
    for line, fields in rows:
        for column, out in zip(text_cols, texts):
            value = fields.get(column)
            if value is None or not value.strip():
                raise InputError(f"{path}:{line}: empty text in column {column!r}")
            out.append(value.strip())
        if label_col is not None:
            raw = fields.get(label_col)
            index = spec.label_index(raw) if raw is not None else None
            if index is None:
                raise InputError(
                    f"{path}:{line}: label {raw!r} is not in the label set of task {spec.name} "
                    f"({spec.allowed_labels()} or {', '.join(spec.label_names)})"
                )
            labels.append(index)
    columns: dict[str, list] = {"text": texts[0]}
    features = {"text": datasets.Value("string")}
    if spec.is_pair:
        columns["text_pair"] = texts[1]
        features["text_pair"] = datasets.Value("string")
    if label_col is not None:
        columns["label"] = labels
        features["label"] = datasets.ClassLabel(names=list(spec.label_names))
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def get_task(task: str | TaskSpec) -> TaskSpec:
    """The spec of a named task (or ``task`` itself when it already is one)."""
    if isinstance(task, TaskSpec):
        return task
    if task not in TASKS:
        raise InputError(
            f"unknown task {task!r}; known tasks: {', '.join(TASKS)}, 'generic' (with --text-column and "
            f"--label-column) or 'hub:NAME[:CONFIG]' for a Hugging Face hub dataset"
        )
    return TASKS[task]


def split_path(spec: TaskSpec, data_dir: str | Path | None, split: str) -> Path:
    """The file that holds ``split`` of ``spec`` (not checked for existence)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if split not in spec.files:
        raise InputError(f"task {spec.name} has no {split} split (its splits: {', '.join(spec.splits)})")
    name = Path(spec.files[split])
    if name.is_absolute() or data_dir is None:
        return name
    return Path(data_dir) / name


def has_labels(spec: TaskSpec, data_dir: str | Path | None, split: str) -> bool:
    """Whether ``split`` exists and its file carries labels (GLUE test files do not)."""
    if split not in spec.files:
        return False
    path = split_path(spec, data_dir, split)
    if not path.is_file():
        return False
    if split not in spec.unlabeled_splits:
        return True
    header, _ = read_table(path, spec.fmt)
    return _find_column(path, header, spec.label_column, False) is not None


def load_task(task: str | TaskSpec, data_dir: str | Path | None, split: str, **generic):
    """One split of a task as a ``datasets.Dataset`` with ``text``, (``text_pair``), ``label``.

    ``task`` is a name from :data:`TASKS`, a :class:`TaskSpec` (e.g. from :func:`generic_task`),
    ``"generic"`` (then ``generic`` holds the keyword arguments of :func:`generic_task`), or
    ``"hub:NAME[:CONFIG]"`` for a Hugging Face hub dataset (see :func:`load_hub_task`).
    """
    if isinstance(task, str) and task.startswith("hub:"):
        return load_hub_task(task, split, **generic)
    if task == "generic":
        task = generic_task(data_dir, **generic)
    elif generic:
        raise InputError(f"options {', '.join(sorted(generic))} only apply to the generic and hub: tasks")
    spec = get_task(task)
    path = split_path(spec, data_dir, split)
    header, rows = read_table(path, spec.fmt if spec.fmt != "auto" else format_of(path))
    return _to_dataset(spec, path, header, rows, split)


def _generic_files(data_dir: str | Path | None, files: dict[str, str | Path] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    if files:
        found.update({split: str(Path(p)) for split, p in files.items() if p is not None})
    if data_dir is not None and "train" not in found:
        base = Path(data_dir)
        if not base.is_dir():
            raise InputError(f"{base}: data directory not found")
        for split, stems in (("train", ("train",)), ("dev", ("dev", "validation", "valid")), ("test", ("test",))):
            if split in found:
                continue
            for stem in stems:
                for ext in (".csv", ".tsv", ".jsonl", ".json"):
                    if (base / f"{stem}{ext}").is_file():
                        found.setdefault(split, str((base / f"{stem}{ext}").resolve()))
    if "train" not in found:
        where = f" in {data_dir}" if data_dir is not None else ""
        raise InputError(f"generic task: no train file{where} (expected train.csv, train.tsv or train.jsonl)")
    return found


def generic_task(
    data_dir: str | Path | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    text_pair_column: str | None = None,
    label_names: list[str] | tuple[str, ...] | None = None,
    files: dict[str, str | Path] | None = None,
) -> TaskSpec:
    """A task over any CSV/TSV/JSONL files with named columns.

    Files are ``files`` (split -> path) or ``train|dev|validation|test`` ``.csv/.tsv/.jsonl`` in
    ``data_dir``. Without ``label_names`` the label set is read from the training file: the distinct
    values, numerically sorted when they are all integers (then they must be 0..K-1), else sorted as
    strings.
    """
    if not text_column or not label_column:
        raise InputError("the generic task needs --text-column and --label-column")
    paths = _generic_files(data_dir, files)
    if label_names is None:
        train = Path(paths["train"])
        header, rows = read_table(train, format_of(train))
        _find_column(train, header, (label_column,), True)
        values = sorted({fields[label_column].strip() for _, fields in rows})
        if all(v.lstrip("-").isdigit() for v in values):
            numbers = sorted(int(v) for v in values)
            if numbers != list(range(len(numbers))):
                raise InputError(
                    f"{train}: integer labels must be 0..K-1, found {', '.join(map(str, numbers))}; "
                    "pass the label names to map them"
                )
            label_names = [str(n) for n in numbers]
        else:
            label_names = values
    if len(label_names) < 2:
        raise InputError(f"generic task: need at least two labels, found {list(label_names)}")
    text_columns: tuple[tuple[str, ...], ...] = ((text_column,),)
    if text_pair_column:
        text_columns += ((text_pair_column,),)
    return TaskSpec(
        "generic", tuple(label_names), paths, "auto", text_columns=text_columns, label_column=(label_column,),
        description=f"generic files: {', '.join(f'{k}={v}' for k, v in paths.items())}",
    )


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set to a true value."""
    return any(os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def bundled_sst2_dir() -> Path:
    """The SST-2 files that ship inside the package (GLUE layout): the full dev set and the 3,000
    train sentences ``lrp-kernels demo`` fine-tunes on (their README says which)."""
    return Path(__file__).resolve().parent / "sst2"


def load_hub_task(
    task: str,
    split: str,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    text_pair_column: str | None = None,
    label_names=None,
    files=None,
):
    """``hub:NAME[:CONFIG]`` through ``datasets.load_dataset`` (a hub name needs the network or the
    local cache; NAME may also be a local directory of data files, which ``datasets`` reads offline).

    The split ``dev`` is the hub's ``validation``; the label column must be a ``ClassLabel``, or
    integers 0..K-1, unless ``label_names`` is given. Labels of the training split define the set:
    pass the same ``label_names`` for every split of a dataset without a ``ClassLabel``.
    """
    import datasets

    if files:
        raise InputError("hub tasks take no files")
    name, _, config = task[len("hub:"):].partition(":")
    if not name:
        raise InputError("hub task needs a dataset name: hub:NAME[:CONFIG]")
    hub_split = {"dev": "validation"}.get(split, split)
    try:
        ds = datasets.load_dataset(name, config or None, split=hub_split)
    except (ConnectionError, FileNotFoundError) as exc:  # no network, or no such dataset
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"hub dataset {name}{f' ({config})' if config else ''}: {reason}"
                         + ("; the hub is offline here (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and the "
                            "dataset is not in the datasets cache" if hub_offline() else "")) from None
    text_column = text_column or next((c for c in ("sentence", "text", "sentence1") if c in ds.column_names), None)
    label_column = label_column or "label"
    for column in (text_column, text_pair_column, label_column):
        if column is not None and column not in ds.column_names:
            raise InputError(f"hub dataset {name}: no column {column!r} (columns: {', '.join(ds.column_names)})")
    if text_column is None:
        raise InputError(f"hub dataset {name}: pass --text-column (columns: {', '.join(ds.column_names)})")
    feature = ds.features[label_column]
    names = list(label_names) if label_names else getattr(feature, "names", None)
    if not names and getattr(feature, "dtype", "").startswith("int"):
        values = sorted(set(ds[label_column]))
        if values and values == list(range(values[-1] + 1)) and len(values) >= 2:
            names = [str(v) for v in values]  # integer labels 0..K-1 without names
    if not names:
        raise InputError(
            f"hub dataset {name}: label column {label_column!r} is neither a ClassLabel nor integers 0..K-1"
        )
    keep = {text_column: "text", label_column: "label"}
    if text_pair_column:
        keep[text_pair_column] = "text_pair"
    ds = ds.select_columns(list(keep)).rename_columns(keep)
    return ds.cast_column("label", datasets.ClassLabel(names=names))
