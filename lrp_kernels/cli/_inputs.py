"""The texts ``explain`` reads: TEXT arguments, or a ``.txt``, ``.jsonl`` or ``.csv``/``.tsv`` file
(``-``: standard input, read as ``.txt`` unless ``--input-format`` says otherwise).

Files are parsed by :mod:`lrp_kernels.data.readers`; this module turns their rows into records
``{"id", "text", "text_pair"}``. Ids start at 1 everywhere: TEXT arguments are numbered 1, 2, …;
``.txt``: the id is the line number; ``.jsonl``: the ``id`` field (or ``--id-column``), else the
line number; ``.csv``/``.tsv``: the ``--id-column`` cell, else the row number (the header is row 0).
Ids keep the JSON type they are written with (``3`` and ``"3"`` differ), so that a resumed run
finds its rows again; an id must be an integer or a non-empty string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lrp_kernels.data.readers import STDIN, read_json_objects, read_lines, read_table, source_name
from lrp_kernels.errors import InputError

FORMATS = ("txt", "jsonl", "csv", "tsv")
FIRST_ID = 1


def id_key(value: Any) -> str:
    """Ids compare by their JSON form (so 3 and "3" stay different, as written)."""
    return json.dumps(value, ensure_ascii=False)


def records_from_texts(texts: list[str]) -> list[dict[str, Any]]:
    """Records for TEXT arguments; the ids are 1, 2, …"""
    records = [{"id": i, "text": t, "text_pair": None} for i, t in enumerate(texts, start=FIRST_ID)]
    for r in records:
        if not r["text"].strip():
            raise InputError(f"text {r['id']} is empty")
    return records


def input_format(path: str | Path, fmt: str | None = None) -> str:
    """``fmt``, else the file's suffix (``-``: txt)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"unknown input format {fmt!r}; use {', '.join(FORMATS)}")
        return fmt
    if str(path) == STDIN:
        return "txt"
    suffix = Path(path).suffix.lower()[1:]
    if suffix not in FORMATS:
        raise InputError(f"{path}: unsupported input type {'.' + suffix if suffix else '(none)'}; use "
                         f"{', '.join('.' + f for f in FORMATS)} (or --input-format)")
    return suffix


def read_inputs(path: str | Path, text_column: str = "text", text_pair_column: str | None = None,
                id_column: str | None = None, fmt: str | None = None) -> list[dict[str, Any]]:
    """``[{"id", "text", "text_pair"}]`` from a .txt, .jsonl or .csv/.tsv file (``-``: stdin)."""
    fmt = input_format(path, fmt)
    if fmt == "txt":
        records = [{"id": number, "text": line, "text_pair": None} for number, line in read_lines(path)]
    elif fmt == "jsonl":
        records = _from_jsonl(path, text_column, text_pair_column, id_column)
    else:
        records = _from_table(path, fmt, text_column, text_pair_column, id_column)
    name = source_name(path)
    if not records:
        raise InputError(f"{name}: no texts in the file")
    _check(name, records)
    return records


def _checked_id(value: Any, where: str) -> Any:
    """An id as written, if it is an integer or a non-empty string."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"{where}: the id must be an integer or a string, not {json.dumps(value)}")
    if isinstance(value, str) and not value.strip():
        raise InputError(f"{where}: empty id")
    return value


def _from_jsonl(path, text_column: str, text_pair_column: str | None, id_column: str | None) -> list[dict]:
    records = []
    name = source_name(path)
    for number, obj in read_json_objects(path):
        where = f"{name}:{number}"
        for field in (text_column, text_pair_column, id_column):
            if field and field not in obj:
                raise InputError(f"{where}: no {field!r} field (fields: {', '.join(obj)})")
        key = id_column or "id"
        records.append({"id": _checked_id(obj[key], where) if key in obj else number, "text": obj[text_column],
                        "text_pair": obj.get(text_pair_column or "text_pair")})
    return records


def _from_table(path, fmt: str, text_column: str, text_pair_column: str | None, id_column: str | None) -> list[dict]:
    header, rows = read_table(path, fmt)
    name = source_name(path)
    for column in (text_column, text_pair_column, id_column):
        if column and column not in header:
            raise InputError(f"{name}: no column {column!r} (columns: {', '.join(header)}); see --text-column")
    return [{"id": _checked_id(fields[id_column], f"{name}:{line} (column {id_column!r})") if id_column else number,
             "text": fields[text_column], "text_pair": fields[text_pair_column] if text_pair_column else None}
            for number, (line, fields) in enumerate(rows, start=FIRST_ID)]


def _check(name: str, records: list[dict]) -> None:
    """All records have a pair or none; no empty text; no id twice."""
    pairs = [r["text_pair"] is not None for r in records]
    if any(pairs) and not all(pairs):
        raise InputError(f"{name}: some records have a text_pair and some do not")
    seen = set()
    for r in records:
        if not isinstance(r["text"], str) or not r["text"].strip():
            raise InputError(f"{name}: the text of id {r['id']} is empty")
        if r["text_pair"] is not None and (not isinstance(r["text_pair"], str) or not r["text_pair"].strip()):
            raise InputError(f"{name}: the text_pair of id {r['id']} is empty")
        key = id_key(r["id"])
        if key in seen:
            raise InputError(f"{name}: id {r['id']} appears twice")
        seen.add(key)
