"""Where ``explain`` puts its explanations: a resumable JSON-lines file, or memory (printed at the end).

:class:`JsonlSink` appends each batch as it is computed; a re-run reads what the file already holds
and skips the records already there — a record is one text explained by one method, known by its
id and method (:func:`record_key`); a half-written last line is dropped. Every line records what it
was computed from (``computed_from``: the model's fingerprint, its method and that method's
settings, every method of the run, the target, contrast, maximum length, stride, …); a re-run whose
settings, or whose text for an id, differ refuses to mix (one line naming the field;
``--overwrite`` starts over). Fields added to ``computed_from`` later (:data:`ADDED_FIELDS`) are
read from older lines as the value those were computed with. Under ``torchrun`` rank r writes
``<output>.part-rank<r>`` and rank 0 merges the parts into the output (:func:`merge_outputs`), in
input order, so that the merged file equals a single-process one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lrp_kernels.cli._inputs import id_key
from lrp_kernels.errors import InputError

PART_SUFFIX = ".part-rank"
# Files of a checkpoint directory that do not change what it computes
_NOT_MODEL = ("metrics.json", "README.md")
# computed_from fields that lines of earlier versions lack, and what those lines were computed with
ADDED_FIELDS = {"contrast": None, "stride": None, "layers": False}
# (field, saved value) -> the flag that computes it again, where the CLI's default changed
RESUMING_FLAGS = {("merge_subwords", False): "--no-merge-subwords"}


def record_key(ident: Any, method: str) -> str:
    """A record's key: its id (as written: 3 and "3" differ) and its method."""
    return json.dumps([ident, method], ensure_ascii=False)


def row_key(row: dict[str, Any]) -> str:
    return record_key(row["id"], row.get("method"))


def _saved(saved: dict[str, Any], field: str) -> Any:
    """A ``computed_from`` field of a line, or what a line of an earlier version without it means."""
    if field in saved:
        return saved[field]
    if field == "methods":  # one method per run
        return [saved.get("method")]
    return ADDED_FIELDS.get(field)


def model_fingerprint(directory: Path) -> str:
    """``sha256:<16 hex>`` of the names and bytes of a checkpoint's files (config, weights, tokenizer)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).iterdir() if p.is_file() and p.name not in _NOT_MODEL):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


@dataclasses.dataclass
class RowCheck:
    """What every row of an output must match: the run's ``computed_from`` for the row's method and
    the input's text per id."""

    computed_from: dict[str, dict[str, Any]]  # method -> its computed_from
    texts: dict[str, tuple[str, str | None]]  # id key -> (text, text_pair)

    def mismatch(self, row: dict[str, Any]) -> str | None:
        """What differs between ``row`` and this run, in words (None when the row belongs to it)."""
        saved = row.get("computed_from")
        if not isinstance(saved, dict):
            return "does not record what it was computed from (an output of an older version)"
        expected = self.computed_from.get(saved.get("method"))
        if expected is None:
            return (f"was computed with method {json.dumps(saved.get('method'))}, this run uses "
                    f"{json.dumps(','.join(self.computed_from))}")
        for field, value in expected.items():
            was = _saved(saved, field)
            if was != value:
                flag = next((f for (name, v), f in RESUMING_FLAGS.items() if name == field and v == was), None)
                return (f"was computed with {field} {json.dumps(was)}, this run uses {json.dumps(value)}"
                        + (f" ({flag} resumes it)" if flag else ""))
        text = self.texts.get(id_key(row["id"]))
        if text is None:
            return "is not in this input"
        if (row.get("text"), row.get("text_pair")) != text:
            return "was computed from a different text (field text)"
        return None

    def check(self, path: Path, number: int, row: dict[str, Any]) -> None:
        problem = self.mismatch(row)
        if problem is not None:
            raise InputError(f"{path}:{number}: id {json.dumps(row['id'])} {problem}; use another --output, "
                             "or --overwrite to replace it")


def read_done(path: Path, check: RowCheck, repair: bool) -> list[dict[str, Any]]:
    """Records already in a JSONL output file, each checked against this run.

    Lines are written whole with their newline, so only a last line without a newline can be cut
    short by an interruption: it is ignored (and cut off the file when ``repair``). Any other bad
    line is an error.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    complete_end = data.rfind(b"\n") + 1  # everything after the last newline is an unfinished write
    records = []
    for number, raw in enumerate(data[:complete_end].split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{path}:{number}: not a JSON line; use another --output, or --overwrite to "
                             "replace it") from None
        if not isinstance(obj, dict) or "id" not in obj:
            raise InputError(f"{path}:{number}: not an explain output line (no id); use another --output, "
                             "or --overwrite to replace it")
        check.check(path, number, obj)
        records.append(obj)
    if repair and complete_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(complete_end)
    return records


def part_files(output: Path) -> list[Path]:
    return sorted(output.parent.glob(output.name + PART_SUFFIX + "*"))


def remove_outputs(output: Path) -> None:
    """``--overwrite``: the output and any rank parts of it are removed."""
    for path in [output] + part_files(output):
        path.unlink(missing_ok=True)


def merge_outputs(output: Path, order: list[str], check: RowCheck) -> list[dict[str, Any]]:
    """Rewrite ``output`` (plus any rank parts) in ``order`` (record keys), atomically; remove the parts."""
    records: dict[str, dict[str, Any]] = {}
    for path in [output] + part_files(output):
        for r in read_done(path, check, repair=False):
            records.setdefault(row_key(r), r)
    rank = {key: i for i, key in enumerate(order)}
    ordered = sorted(records.values(), key=lambda r: rank.get(row_key(r), len(rank)))
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in ordered:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, output)
    for path in part_files(output):
        path.unlink()
    return ordered


class JsonlSink:
    """Explanations appended to ``output`` (or this rank's part of it) batch by batch; resumable.

    ``done`` holds the record keys already written by earlier runs (of any rank); they are not written again.
    """

    def __init__(self, output: Path, check: RowCheck, rank: int = 0, world: int = 1):
        self.output, self.check = output, check
        self.path = output if world == 1 else output.with_name(f"{output.name}{PART_SUFFIX}{rank}")
        output.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = set()
        for path in [output] + part_files(output):
            self.done |= {row_key(r) for r in read_done(path, check, repair=(path == self.path))}
        self._file = None

    def __enter__(self) -> "JsonlSink":
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def add(self, record: dict[str, Any]) -> None:
        if row_key(record) not in self.done:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def merge(self, order: list[str]) -> list[dict[str, Any]]:
        """The whole output in ``order`` (record keys; see :func:`merge_outputs`)."""
        return merge_outputs(self.output, order, self.check)


class MemorySink:
    """Explanations kept in memory; :meth:`in_order` gives them in output order."""

    done: frozenset[str] = frozenset()

    def __init__(self):
        self._records: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> "MemorySink":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def add(self, record: dict[str, Any]) -> None:
        self._records[row_key(record)] = record

    def flush(self) -> None:
        pass

    def in_order(self, order: list[str]) -> list[dict[str, Any]]:
        """The records held, in ``order`` (record keys)."""
        return [self._records[key] for key in order if key in self._records]
