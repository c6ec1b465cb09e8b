"""Random access to the rows of a JSONL file: a line-offset index and a fast head reader.

:class:`LineIndex` finds every newline with numpy over large blocks (newline-scan speed) and
keeps one int64 offset per data row, so row N of a huge file is read without parsing the rest;
:func:`read_head` returns the first rows by reading only the beginning of the file. Rows are the
non-blank lines, with the same rules as ``stream_jsonl`` (BOM, CRLF, blank lines, last line
without a newline). numpy is imported inside the functions, keeping start-up cheap.
"""

from __future__ import annotations

import codecs
import logging
import os
from typing import IO, Any

from core.events import Cancelled, CancelToken, EventCallback
from core.training.dataset_scan import (
    BLANK,
    BOM,
    DatasetError,
    LineProblem,
    ProgressThrottle,
    check_dataset_path,
    open_dataset,
    parse_line,
)
from core.training.formats import FormatProblem, as_record, normalize_row

log = logging.getLogger(__name__)

__all__ = ["LineIndex", "read_head"]

_INDEX_BLOCK = 8 << 20
_READ_PIECE = 1 << 16
_HEAD_MAX_BYTES = 8 << 20

# First bytes a blank line can start with: ASCII whitespace (as str.isspace), the lead bytes of
# the multi-byte Unicode spaces, and "\n" itself (an empty line). Such lines are checked exactly.
_BLANK_LEADS = bytes((9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 0xC2, 0xE1, 0xE2, 0xE3))


def _is_blank_bytes(raw: bytes) -> bool:
    """True when the line decodes as UTF-8 to only whitespace (invalid UTF-8 is never blank)."""
    if raw and raw[0] not in _BLANK_LEADS:
        return False
    try:
        return not raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


def _is_blank_at(f: IO[bytes], start: int, end: int) -> bool:
    """Blank test for ``f[start:end]`` reading in pieces and stopping at the first non-space."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    f.seek(start)
    pos = start
    while pos < end:
        piece = f.read(min(_READ_PIECE, end - pos))
        if not piece:
            break
        pos += len(piece)
        try:
            text = decoder.decode(piece, final=pos >= end)
        except UnicodeDecodeError:
            return False
        if text.strip():
            return False
    return True


def _read_line(f: IO[bytes], start: int, max_bytes: int | None = None) -> bytes:
    """The bytes of the line starting at ``start`` (no newline, no trailing CR)."""
    f.seek(start)
    parts: list[bytes] = []
    got = 0
    while True:
        want = _READ_PIECE if max_bytes is None else min(_READ_PIECE, max_bytes - got)
        if want <= 0:
            break
        piece = f.read(want)
        if not piece:
            break
        i = piece.find(b"\n")
        if i >= 0:
            parts.append(piece[:i])
            break
        parts.append(piece)
        got += len(piece)
    raw = b"".join(parts)
    return raw[:-1] if raw.endswith(b"\r") else raw


def _text(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "replace")


class LineIndex:
    """Byte offsets of the data rows (non-blank lines) of a JSONL file.

    ``len(index)`` rows; ``line_number(row)`` is the 1-based file line; ``read_raw(row)`` the
    text; ``read_record(row)`` the parsed record (``DatasetError`` naming the line otherwise).
    Reads open the file each time, so an index can be used from any thread.
    """

    def __init__(self, path: str, starts: Any, lines: Any | None, file_size: int, n_lines: int) -> None:
        self.path = path
        self._starts = starts  # int64 offset of each row
        self._lines = lines  # int64 1-based line of each row, or None when no line is blank
        self.file_size = file_size
        self.n_lines = n_lines  # all lines of the file, blank ones included

    @classmethod
    def build(cls, path: str | os.PathLike[str], on_event: EventCallback | None = None,
              cancel: CancelToken | None = None) -> LineIndex:
        """Index ``path``: one pass finding newlines in 8 MiB blocks; ``Progress("index", ...)``."""
        import numpy as np

        path_s = os.fspath(path)
        size = check_dataset_path(path_s).st_size
        throttle = ProgressThrottle(on_event, "index", size)
        throttle(0, force=True)
        leads = np.zeros(256, dtype=bool)
        leads[list(_BLANK_LEADS)] = True
        nl_parts: list[Any] = []
        cand_parts: list[Any] = []
        bom = 0
        with open_dataset(path_s) as f:
            buf = bytearray(min(_INDEX_BLOCK, max(size, 1)))
            off = 0
            line_starts_here = True  # a line starts at the first byte of the next block
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                a = np.frombuffer(buf, dtype=np.uint8, count=n)
                if off == 0 and bytes(buf[:3]) == BOM:
                    bom = 3
                nl = np.flatnonzero(a == 10)
                local = nl + 1
                if line_starts_here:
                    local = np.concatenate(([bom if off == 0 else 0], local))
                local = local[local < n]
                cand = local[leads[a[local]]]
                nl_parts.append(nl + off)
                cand_parts.append(cand + off)
                line_starts_here = bool(a[n - 1] == 10)
                off += n
                throttle(off)
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled by the user")
            nl_all = np.concatenate(nl_parts) if nl_parts else np.zeros(0, dtype=np.int64)
            nl_all = nl_all.astype(np.int64, copy=False)
            starts = np.empty(nl_all.shape[0] + 1, dtype=np.int64)
            starts[0] = bom
            starts[1:] = nl_all + 1
            size = off
            n_lines = nl_all.shape[0] + (1 if starts[-1] < size else 0)
            starts = starts[:n_lines]
            cands = np.concatenate(cand_parts) if cand_parts else np.zeros(0, dtype=np.int64)
            blank = np.zeros(n_lines, dtype=bool)
            if cands.size:
                line_ids = np.searchsorted(starts, cands)
                for i in line_ids.tolist():
                    end = int(nl_all[i]) if i < nl_all.shape[0] else size
                    start = int(starts[i])
                    if end == start or _is_blank_at(f, start, end):
                        blank[i] = True
                    if cancel is not None and cancel.cancelled:
                        raise Cancelled("cancelled by the user")
        del nl_all
        if blank.any():
            keep = np.flatnonzero(~blank)
            row_starts = starts[keep]
            row_lines = keep + 1
        else:
            row_starts = starts
            row_lines = None
        throttle(size, force=True)
        log.debug("indexed %s: %d rows, %d lines", path_s, row_starts.shape[0], n_lines)
        return cls(path_s, row_starts, row_lines, size, n_lines)

    def __len__(self) -> int:
        return int(self._starts.shape[0])

    def _row(self, row: int) -> int:
        n = len(self)
        if row < 0:
            row += n
        if not 0 <= row < n:
            raise IndexError(f"row {row} out of range (0..{n - 1})")
        return row

    def line_number(self, row: int) -> int:
        """1-based file line of data row ``row`` (blank lines are not rows)."""
        row = self._row(row)
        return row + 1 if self._lines is None else int(self._lines[row])

    def offset(self, row: int) -> int:
        """Byte offset where data row ``row`` starts."""
        return int(self._starts[self._row(row)])

    @property
    def nbytes(self) -> int:
        """Memory held by the index arrays."""
        return int(self._starts.nbytes + (0 if self._lines is None else self._lines.nbytes))

    def _read_bytes(self, row: int, max_bytes: int | None = None) -> bytes:
        with open_dataset(self.path) as f:
            return _read_line(f, int(self._starts[row]), max_bytes)

    def read_raw(self, row: int, max_bytes: int | None = None) -> str:
        """Text of data row ``row`` (invalid UTF-8 replaced); ``max_bytes`` truncates long rows."""
        return _text(self._read_bytes(self._row(row), max_bytes))

    def read_rows(self, start: int, stop: int, max_bytes: int | None = None) -> list[str]:
        """Texts of rows ``start..stop-1`` (clipped to the index), one file open for all."""
        start = max(0, start)
        stop = min(len(self), stop)
        out: list[str] = []
        with open_dataset(self.path) as f:
            for row in range(start, stop):
                out.append(_text(_read_line(f, int(self._starts[row]), max_bytes)))
        return out

    def read_record(self, row: int) -> dict[str, Any]:
        """Parse data row ``row`` as a record of any format (``input``/``output`` are its last question
        and answer; ``system`` and ``history`` what came before); ``DatasetError`` (with its
        file line) when it is not one."""
        row = self._row(row)
        raw = self._read_bytes(row)
        line = self.line_number(row)
        try:
            value = parse_line(raw)
            if value is BLANK:
                raise LineProblem("blank", "the line is blank (the file changed since it was indexed?)")
            rule, conversation = normalize_row(value)
        except (LineProblem, FormatProblem) as p:
            raise DatasetError(self.path, line, p.kind, p.message) from None
        return as_record(rule, conversation, value)


def read_head(path: str | os.PathLike[str], n: int = 50,
              max_bytes: int = _HEAD_MAX_BYTES) -> list[tuple[int, str]]:
    """The first ``n`` non-blank ``(line_number, text)`` pairs, reading only the file's beginning.

    Reads at most ``max_bytes``; a row cut by that limit is returned truncated.
    """
    path_s = os.fspath(path)
    out: list[tuple[int, str]] = []
    if n <= 0:
        return out
    lineno = 0
    got = 0
    carry = b""
    piece_size = _READ_PIECE
    with open_dataset(path_s) as f:
        first = True
        while len(out) < n:
            piece = f.read(min(piece_size, max_bytes - got))
            got += len(piece)
            if first:
                first = False
                while len(piece) < 3 and BOM.startswith(piece) and piece:
                    more = f.read(1)
                    if not more:
                        break
                    piece += more
                    got += 1
                if piece.startswith(BOM):
                    piece = piece[3:]
            data = carry + piece if carry else piece
            lines = data.split(b"\n")
            carry = lines.pop()
            for raw in lines:
                lineno += 1
                if not _is_blank_bytes(raw):
                    out.append((lineno, _text(raw)))
                    if len(out) >= n:
                        return out
            if not piece or got >= max_bytes:
                if carry and not _is_blank_bytes(carry):
                    out.append((lineno + 1, _text(carry)))
                break
            piece_size = min(piece_size * 2, 1 << 20)
    return out
