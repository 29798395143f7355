"""The texts ``explain`` reads: TEXT arguments, or a ``.txt``, ``.jsonl`` or ``.csv``/``.tsv`` file.

Files are parsed by :mod:`lrp_kernels.data.readers`; this module turns their rows into records
``{"id", "text", "text_pair"}``. ``.txt``: one text per line, the id is the line number. ``.jsonl``:
objects with the text field, an optional pair field and ``id`` (else the line number).
``.csv``/``.tsv``: the columns named by ``--text-column`` / ``--text-pair-column`` /
``--id-column``, the id defaulting to the row number. Ids keep the JSON type they are written
with (``3`` and ``"3"`` differ), so that a resumed run finds its rows again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lrp_kernels.data.readers import read_json_objects, read_lines, read_table
from lrp_kernels.errors import InputError

SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv")


def id_key(value: Any) -> str:
    """Ids compare by their JSON form (so 3 and "3" stay different, as written)."""
    return json.dumps(value, ensure_ascii=False)


def records_from_texts(texts: list[str]) -> list[dict[str, Any]]:
    """Records for TEXT arguments; the ids are 0, 1, …"""
    records = [{"id": i, "text": t, "text_pair": None} for i, t in enumerate(texts)]
    for r in records:
        if not r["text"].strip():
            raise InputError(f"text {r['id']} is empty")
    return records


def read_inputs(path: str | Path, text_column: str = "text", text_pair_column: str | None = None,
                id_column: str | None = None) -> list[dict[str, Any]]:
    """``[{"id", "text", "text_pair"}]`` from a .txt, .jsonl or .csv/.tsv file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{p}: unsupported input type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    if suffix == ".txt":
        records = [{"id": number, "text": line, "text_pair": None} for number, line in read_lines(p)]
    elif suffix == ".jsonl":
        records = _from_jsonl(p, text_column, text_pair_column, id_column)
    else:
        records = _from_table(p, suffix[1:], text_column, text_pair_column, id_column)
    if not records:
        raise InputError(f"{p}: no texts in the file")
    _check(p, records)
    return records


def _from_jsonl(path: Path, text_column: str, text_pair_column: str | None, id_column: str | None) -> list[dict]:
    records = []
    for number, obj in read_json_objects(path):
        if text_column not in obj:
            raise InputError(f"{path}:{number}: no {text_column!r} field (fields: {', '.join(obj)})")
        if text_pair_column and text_pair_column not in obj:
            raise InputError(f"{path}:{number}: no {text_pair_column!r} field")
        records.append({"id": obj.get(id_column or "id", number), "text": obj[text_column],
                        "text_pair": obj.get(text_pair_column or "text_pair")})
    return records


def _from_table(path: Path, fmt: str, text_column: str, text_pair_column: str | None,
                id_column: str | None) -> list[dict]:
    header, rows = read_table(path, fmt)
    for name in (text_column, text_pair_column, id_column):
        if name and name not in header:
            raise InputError(f"{path}: no column {name!r} (columns: {', '.join(header)}); see --text-column")
    return [{"id": fields[id_column] if id_column else number, "text": fields[text_column],
             "text_pair": fields[text_pair_column] if text_pair_column else None}
            for number, (_, fields) in enumerate(rows, start=1)]


def _check(path: Path, records: list[dict]) -> None:
    """All records have a pair or none; no empty text; no id twice."""
    pairs = [r["text_pair"] is not None for r in records]
    if any(pairs) and not all(pairs):
        raise InputError(f"{path}: some records have a text_pair and some do not")
    seen = set()
    for r in records:
        if not isinstance(r["text"], str) or not r["text"].strip():
            raise InputError(f"{path}: the text of id {r['id']} is empty")
        if r["text_pair"] is not None and (not isinstance(r["text_pair"], str) or not r["text_pair"].strip()):
            raise InputError(f"{path}: the text_pair of id {r['id']} is empty")
        key = id_key(r["id"])
        if key in seen:
            raise InputError(f"{path}: id {r['id']} appears twice")
        seen.add(key)
