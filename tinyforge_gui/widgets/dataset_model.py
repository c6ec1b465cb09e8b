"""A lazy table model over a JSONL file: head rows at once, then random access via LineIndex.

Rows are parsed only when the view asks for them and kept in a small LRU cache, so a 1 GB file
scrolls anywhere without being loaded. The vertical header shows each row's file line number.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import OrderedDict
from typing import Any, Protocol

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

logger = logging.getLogger(__name__)

COLUMNS = ("input", "output", "metadata", "phrasings")
PHRASINGS_COLUMN = 3  # how many more ways the question is asked (after variants are written)
_ELIDE = 160
_TOOLTIP_MAX = 4000
_CACHE_ROWS = 4096

_Index = QModelIndex | QPersistentModelIndex


class LineSource(Protocol):
    """What the model needs from ``core.training.dataset.LineIndex``."""

    def __len__(self) -> int: ...
    def line_number(self, row: int) -> int: ...
    def read_raw(self, row: int) -> str: ...


class _LineNumbers:
    """A read-only sequence view of ``source.line_number`` for bisect."""

    def __init__(self, source: LineSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, row: int) -> int:
        return self.source.line_number(row)


class ParsedRow:
    """One parsed data line: cells for the columns, or an error message."""

    __slots__ = ("cells", "error", "line", "raw")

    def __init__(self, line: int, raw: str) -> None:
        self.line = line
        self.raw = raw
        self.error = ""
        self.cells: tuple[str, str, str] = ("", "", "")
        try:
            record = json.loads(raw)
        except ValueError as exc:
            self.error = f"invalid JSON: {exc}"
            return
        if not isinstance(record, dict):
            self.error = f"not a JSON object ({type(record).__name__})"
            return
        meta = record.get("metadata")
        self.cells = (
            _as_text(record.get("input")),
            _as_text(record.get("output")),
            "" if meta is None else json.dumps(meta, ensure_ascii=False),
        )

    def pretty(self) -> str:
        try:
            return json.dumps(json.loads(self.raw), indent=2, ensure_ascii=False)
        except ValueError:
            return self.raw


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _elide(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _ELIDE else flat[: _ELIDE - 1] + "…"


class DatasetTableModel(QAbstractTableModel):
    """Columns input / output / metadata; rows come from a head list or a LineIndex."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._head: list[tuple[int, str]] = []
        self._index: LineSource | None = None
        self._cache: OrderedDict[int, ParsedRow] = OrderedDict()
        self._problem_lines: dict[int, str] = {}
        self._phrasing_counts: dict[str, int] = {}
        self._error_brush = QBrush(QColor(224, 49, 49, 40))

    # --- feeding ---
    def clear(self) -> None:
        self.beginResetModel()
        self._head, self._index = [], None
        self._cache.clear()
        self._problem_lines = {}
        self.endResetModel()

    def set_head(self, rows: list[tuple[int, str]]) -> None:
        self.beginResetModel()
        self._head = list(rows)
        self._index = None
        self._cache.clear()
        self.endResetModel()

    def set_index(self, index: LineSource) -> None:
        """Switch from the head rows to the full index (keeps the view's rows stable)."""
        self.beginResetModel()
        self._index = index
        self._cache.clear()
        self.endResetModel()

    def set_phrasing_counts(self, counts: dict[str, int]) -> None:
        """The number of phrasings of each question (question text -> count); empty clears them."""
        self._phrasing_counts = dict(counts)
        if self.rowCount():
            self.dataChanged.emit(self.index(0, PHRASINGS_COLUMN), self.index(self.rowCount() - 1, PHRASINGS_COLUMN))

    def set_problems(self, problems: dict[int, str]) -> None:
        """Highlight rows whose file line has a problem (line -> message)."""
        self._problem_lines = dict(problems)
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, len(COLUMNS) - 1))

    @property
    def has_index(self) -> bool:
        return self._index is not None

    # --- lookup ---
    def row_for_line(self, line: int) -> int:
        """The row showing file line ``line`` (or the next row after it); -1 when none."""
        if self._index is not None:
            row = bisect.bisect_left(_LineNumbers(self._index), line)
            return row if row < len(self._index) else len(self._index) - 1
        numbers = [n for n, _ in self._head]
        row = bisect.bisect_left(numbers, line)
        if row < len(numbers):
            return row
        return -1

    def row_at(self, row: int) -> ParsedRow | None:
        if row < 0 or row >= self.rowCount():
            return None
        cached = self._cache.get(row)
        if cached is not None:
            self._cache.move_to_end(row)
            return cached
        try:
            if self._index is not None:
                parsed = ParsedRow(self._index.line_number(row), self._index.read_raw(row))
            else:
                line, raw = self._head[row]
                parsed = ParsedRow(line, raw)
        except (OSError, ValueError, IndexError) as exc:
            logger.warning("could not read row %d: %s", row, exc)
            parsed = ParsedRow(0, "")
            parsed.error = f"could not read: {exc}"
        self._cache[row] = parsed
        if len(self._cache) > _CACHE_ROWS:
            self._cache.popitem(last=False)
        return parsed

    # --- Qt model API ---
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        if parent.isValid():
            return 0
        return len(self._index) if self._index is not None else len(self._head)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section] if 0 <= section < len(COLUMNS) else None
        parsed = self.row_at(section)
        return str(parsed.line) if parsed else None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        parsed = self.row_at(index.row())
        if parsed is None:
            return None
        col = index.column()
        if col == PHRASINGS_COLUMN:
            count = self._phrasing_counts.get(parsed.cells[0]) if not parsed.error else None
            if role == Qt.ItemDataRole.DisplayRole:
                return "" if count is None else str(count)
            if role == Qt.ItemDataRole.ToolTipRole and count is not None:
                return f"asked {count} more ways in training (select the row to see them)"
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            if parsed.error:
                return f"⚠ {parsed.error}" if col == 0 else ""
            return _elide(parsed.cells[col])
        if role == Qt.ItemDataRole.ToolTipRole:
            text = parsed.raw if parsed.error else parsed.cells[col]
            problem = self._problem_lines.get(parsed.line)
            if problem:
                text = f"Line {parsed.line}: {problem}\n\n{text}"
            return text[:_TOOLTIP_MAX] + ("…" if len(text) > _TOOLTIP_MAX else "")
        if role == Qt.ItemDataRole.BackgroundRole:
            if parsed.error or parsed.line in self._problem_lines:
                return self._error_brush
        return None
