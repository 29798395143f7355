r"""Readers for the local file layouts of the text-classification datasets.

Each reader returns ``(header, rows)`` where ``rows`` is a list of ``(line_number, fields)``; line
numbers are 1-based and point at the line where a record starts, so every error about a record can
name the file and the line. Bad input raises :class:`lrp_kernels.errors.InputError` with one line
``<file>:<line>: <what is wrong>``.

Lines end at ``\n`` (or ``\r\n``) and nowhere else: U+2028, form feeds and other characters that
:meth:`str.splitlines` would split at stay inside a line (JSON allows a raw U+2028 in a string).
TSV files never interpret quotes (a field may start with ``"``); CSV files use standard quoting.
The path ``-`` reads standard input (named ``<stdin>`` in messages).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from lrp_kernels.errors import InputError

Row = tuple[int, dict[str, str]]
STDIN = "-"


def source_name(path: str | Path) -> str:
    """How messages name ``path`` (``<stdin>`` for ``-``)."""
    return "<stdin>" if str(path) == STDIN else str(path)


def _read_bytes(path: str | Path) -> bytes:
    if str(path) == STDIN:
        return sys.stdin.buffer.read()
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    return path.read_bytes()


def read_text(path: str | Path) -> str:
    """The file's text (``-``: standard input), decoded as UTF-8 (a leading byte-order mark is dropped).

    Missing files, directories, empty files and non-UTF-8 bytes raise an :class:`InputError`
    naming the file (and the line of the first bad byte).
    """
    data = _read_bytes(path)
    path = source_name(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column})"
        ) from None
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    return text


def _check_header(path: Path, header: list[str]) -> list[str]:
    header = [h.strip() for h in header]
    seen = set()
    for name in header:
        if name and name in seen:
            raise InputError(f"{path}:1: duplicate column {name!r} in the header")
        seen.add(name)
    return header


def split_lines(text: str) -> list[str]:
    r"""The lines of ``text``, split at ``\n`` only (a ``\r`` before it is dropped; no empty last line)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_delimited(path: str | Path, delimiter: str, quoting: int = csv.QUOTE_MINIMAL) -> tuple[list[str], list[Row]]:
    """A CSV/TSV file with a header line.

    TSVs are read with ``quoting=csv.QUOTE_NONE`` (sentences contain bare quotes, e.g. GLUE's); CSV
    files use standard quoting, where a quoted field may span several lines.
    """
    text = read_text(path)
    path = source_name(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise InputError(f"{path}:1: malformed header ({exc})") from None
    header = _check_header(path, header)
    rows: list[Row] = []
    start = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(f"{path}:{start}: malformed record ({exc})") from None
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            start = reader.line_num + 1
            continue  # blank line
        if len(fields) != len(header):
            raise InputError(
                f"{path}:{start}: expected {len(header)} fields ({', '.join(header)}), found {len(fields)}"
            )
        rows.append((start, dict(zip(header, fields))))
        start = reader.line_num + 1
    if not rows:
        raise InputError(f"{path}: no examples after the header")
    return header, rows


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    r"""``(line number, stripped line)`` for every non-blank line (lines end at ``\n`` only)."""
    text = read_text(path)
    return [(number, line.strip()) for number, line in enumerate(split_lines(text), start=1) if line.strip()]


def read_label_first(path: str | Path) -> tuple[list[str], list[Row]]:
    """The ``stsa.*`` layout of SST-5: each line is ``LABEL SENTENCE`` split at the first space."""
    rows: list[Row] = []
    lines = read_lines(path)
    path = source_name(path)
    for number, line in lines:
        label, sep, sentence = line.partition(" ")
        if not sep or not sentence.strip():
            raise InputError(f"{path}:{number}: expected 'LABEL SENTENCE', found {line[:40]!r}")
        rows.append((number, {"label": label, "sentence": sentence}))
    return ["label", "sentence"], rows


def read_json_objects(path: str | Path) -> list[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line of a JSON-lines file; values keep their JSON types."""
    objects = []
    lines = read_lines(path)
    path = source_name(path)
    for number, line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, found {type(obj).__name__}")
        objects.append((number, obj))
    return objects


def read_jsonl(path: str | Path) -> tuple[list[str], list[Row]]:
    """One JSON object per line; the header is the union of the keys, in order of appearance.

    Values are strings: non-string JSON values are written back as JSON text.
    """
    rows: list[Row] = []
    header: dict[str, None] = {}
    for number, obj in read_json_objects(path):
        header.update(dict.fromkeys(obj))
        rows.append((number, {k: v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}))
    return list(header), rows


def read_table(path: str | Path, fmt: str) -> tuple[list[str], list[Row]]:
    """Dispatch on ``fmt``: ``glue-tsv``, ``tsv``, ``csv``, ``label-first`` or ``jsonl``."""
    if fmt in ("glue-tsv", "tsv"):  # the same reader: TSV never interprets quotes
        return read_delimited(path, "\t", csv.QUOTE_NONE)
    if fmt == "csv":
        return read_delimited(path, ",")
    if fmt == "label-first":
        return read_label_first(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    raise InputError(f"unknown file format {fmt!r}")


def format_of(path: str | Path) -> str:
    """The reader format for a generic file, from its extension."""
    suffix = Path(path).suffix.lower()
    formats = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
    if suffix not in formats:
        raise InputError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv or .jsonl")
    return formats[suffix]
