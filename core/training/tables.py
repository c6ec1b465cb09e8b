"""Spreadsheet-shaped datasets: CSV, TSV and ``.json`` arrays of objects, row by row.

Each row comes out as ``(line, object)``, the line being where the row starts in the file
(a quoted cell may span lines) or, for a JSON array, the item's number. The rules of
:mod:`core.training.formats` then apply to the header names (or the objects' keys), exactly as
to a JSONL object. A UTF-8 BOM is skipped; UTF-16 with a BOM (what spreadsheets call "Unicode
text") is decoded; anything else that is not UTF-8 is refused with the byte where it breaks.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator
from typing import Any

from core.training.dataset_scan import (
    EMPTY_FILE,
    INVALID_JSON,
    INVALID_UTF8,
    DatasetError,
    RangeResult,
    open_dataset,
)

__all__ = ["TABLE_SUFFIXES", "is_table", "iter_table_rows", "table_kind"]

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json"}
BAD_TABLE = "bad_table"


def table_kind(path: str | os.PathLike[str]) -> str | None:
    """``csv``, ``tsv`` or ``json`` by the file's suffix; None for JSONL (and anything else)."""
    return TABLE_SUFFIXES.get(os.path.splitext(os.fspath(path))[1].lower())


def is_table(path: str | os.PathLike[str]) -> bool:
    return table_kind(path) is not None


def _text(path: str) -> str:
    """The whole file as text (tables are read whole; they are spreadsheet-sized)."""
    with open_dataset(path) as f:
        raw = f.read()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DatasetError(path, line, INVALID_UTF8, f"invalid UTF-8 at byte {exc.start + 1} of the file; "
                                                     "save it as UTF-8") from None


def iter_table_rows(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of a CSV/TSV file (header first) or a JSON array, as ``(line, object)``.

    Raises ``DatasetError`` for what spoils the whole file: no header, a header with an empty
    or repeated name, a JSON file that is not an array of objects, bad UTF-8. A CSV row with
    more cells than the header is a problem of that row (``DatasetError`` with its line).
    """
    path_s = os.fspath(path)
    kind = table_kind(path_s)
    text = _text(path_s)
    if kind == "json":
        yield from _json_rows(path_s, text)
        return
    yield from _csv_rows(path_s, text, "\t" if kind == "tsv" else ",")


def _json_rows(path: str, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(path, exc.lineno, INVALID_JSON, f"invalid JSON at column {exc.colno}: {exc.msg}") from None
    if isinstance(value, dict):  # {"data": [...]} (a Hugging Face export) holds one list
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            value = lists[0]
    if not isinstance(value, list):
        raise DatasetError(path, None, BAD_TABLE, "a .json dataset must be an array of objects "
                                                  "(one per record); for one object per line, name it .jsonl")
    if not value:
        raise DatasetError(path, None, EMPTY_FILE, "the file holds no records (an empty array)")
    yield from enumerate(value, 1)


def _csv_rows(path: str, text: str, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DatasetError(path, 1, BAD_TABLE, f"the header row cannot be read: {exc}") from None
    if header is None or not any(h.strip() for h in header):
        raise DatasetError(path, None, EMPTY_FILE, "the file holds no header row (column names come first)")
    names = [h.strip() for h in header]
    folded = [n.casefold() for n in names]
    for i, name in enumerate(names):
        if not name:
            raise DatasetError(path, 1, BAD_TABLE, f"column {i + 1} of the header has no name")
        if folded.index(name.casefold()) != i:
            raise DatasetError(path, 1, BAD_TABLE, f"the header names the column {name!r} twice")
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DatasetError(path, line, BAD_TABLE, f"the row cannot be read: {exc}") from None
        start, line = line, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue  # a blank row
        if len(cells) > len(names):
            raise DatasetError(path, start, BAD_TABLE, f"the row has {len(cells)} cells, the header "
                                                       f"{len(names)} columns (a separator inside an unquoted cell?)")
        yield start, dict(zip(names, cells + [""] * (len(names) - len(cells)), strict=True))


def scan_table(path: str, columns: dict[str, str] | None) -> tuple[RangeResult, str]:
    """Scan a table like :func:`core.training.dataset_scan.scan_range` scans JSONL: its result
    (every row checked, problems and warnings kept) and the file's sha256."""
    import hashlib

    from core.training.dataset_scan import NUMBER_AS_TEXT, _check_block, _RangeScan, conversation_texts
    from core.training.formats import UNKNOWN_FORMAT, FormatProblem, normalize_row
    from core.training.tokens import count_tokens_pair

    with open_dataset(path) as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    kind = table_kind(path)
    scan = _RangeScan(0, columns)
    ins: list[str] = []
    outs: list[str] = []
    last_line = 0
    rows = iter_table_rows(path)
    while True:
        try:
            item = next(rows, None)
        except DatasetError as error:
            scan.problems.add(error.line, error.kind, error.reason)  # type: ignore[arg-type]
            break
        if item is None:
            break
        line, row = item
        last_line = line
        try:
            rule, conversation = normalize_row(row, columns, numbers_as_text=True)
        except FormatProblem as p:
            if p.kind == UNKNOWN_FORMAT and not columns and kind != "json":  # the header's fault, once
                names = ", ".join(repr(k) for k in row)
                scan.problems.add(1, p.kind, f"the columns {names} fit no rule: name the question and answer "
                                             "columns with --columns question=COLUMN,answer=COLUMN "
                                             "(in the window: Map columns…)")
                break
            scan.problems.add(line, p.kind, p.message)
            continue
        for note in conversation.notes:
            scan.warnings.add(line, NUMBER_AS_TEXT, note)
        question, answer = conversation_texts(conversation)
        ins.append(question)
        outs.append(answer)
        scan.rec_lines.append(line)
        scan._count(rule, 1, (line,))
    scan.lineno = last_line
    scan.n_records = len(ins)
    if ins:
        found: list[tuple[int, str, str]] = []
        _check_block(ins, outs, list(scan.rec_lines), found)
        for warning in found:
            scan.warnings.add(*warning)
        scan.in_digests.extend(map(hash, ins))
        scan.out_digests.extend(map(hash, outs))
        scan.in_tokens, scan.out_tokens = count_tokens_pair(ins, outs)
    return scan.result(), sha
