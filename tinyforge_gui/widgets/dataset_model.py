"""A lazy table model over a dataset: a JSONL file's head rows at once, then random access via
LineIndex; or a CSV/TSV/JSON table's rows, read whole by a worker.

Rows are parsed (and read by the format rules, after the column mapping) only when the view asks
for them and kept in a small LRU cache, so a 1 GB file scrolls anywhere without being loaded.
The vertical header shows each row's file line number (a JSON array's item number).
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import OrderedDict
from typing import Any, Protocol

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from core.training.formats import (
    CONVERSATIONS,
    MESSAGES,
    PROMPT_COMPLETION,
    UNKNOWN_FORMAT,
    Conversation,
    FormatProblem,
    normalize_row,
)

logger = logging.getLogger(__name__)

COLUMNS = ("question", "answer", "turns", "metadata", "phrasings")
QUESTION_COLUMN = 0  # the last user turn (a record's input)
ANSWER_COLUMN = 1  # the last assistant turn (a record's output)
TURNS_COLUMN = 2  # user and assistant turns, for rows that are conversations
METADATA_COLUMN = 3
PHRASINGS_COLUMN = 4  # how many more ways the question is asked (after variants are written)
# Rules whose rows may hold several turns (their turn count is shown).
CONVERSATION_RULES = frozenset({MESSAGES, CONVERSATIONS, PROMPT_COMPLETION})
_UNREAD = object()
_COLUMN_TIPS = {
    QUESTION_COLUMN: "The question: the row's last user turn",
    ANSWER_COLUMN: "The answer: the row's last assistant turn",
    TURNS_COLUMN: "Turns of a conversation (user and assistant messages)",
    METADATA_COLUMN: "The row's metadata (kept, not trained on)",
    PHRASINGS_COLUMN: "Phrasings of the question in training (after variants are written)",
}
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
    """One data row read by the format rules: its cells, its conversation, or why it is none.

    ``raw`` is the row's JSON text (a JSONL line, or a table row written as JSON); ``conversation``
    is what training sees (:class:`core.training.formats.Conversation`), None when the row fits
    no rule; ``error`` is shown in place of the cells when there is nothing else to show.
    """

    __slots__ = ("cells", "conversation", "error", "line", "raw", "rule")

    def __init__(self, line: int, raw: str, value: Any = _UNREAD, columns: dict[str, str] | None = None,
                 numbers_as_text: bool = False) -> None:
        self.line = line
        self.raw = raw
        self.error = ""
        self.rule = ""
        self.conversation: Conversation | None = None
        self.cells: tuple[str, str, str, str] = ("", "", "", "")
        if value is _UNREAD:
            try:
                value = json.loads(raw)
            except ValueError as exc:
                self.error = f"invalid JSON: {exc}"
                return
        if not isinstance(value, dict):
            self.error = f"not a JSON object ({type(value).__name__})"
            return
        meta = value.get("metadata")
        meta_text = "" if meta is None else json.dumps(meta, ensure_ascii=False)
        try:
            self.rule, self.conversation = normalize_row(value, columns, numbers_as_text=numbers_as_text)
        except FormatProblem as problem:
            # Show what the row has where it has input/output; else the reason (the problems list has it too).
            question, answer = _as_text(value.get("input")), _as_text(value.get("output"))
            self.cells = (question, answer, "", meta_text)
            if not (question or answer):
                self.error = _problem_text(problem, value)
            return
        c = self.conversation
        turns = str(len(c.turns)) if self.rule in CONVERSATION_RULES else ""
        self.cells = (c.question, c.answer, turns, meta_text)

    @classmethod
    def of_value(cls, line: int, value: Any, columns: dict[str, str] | None = None) -> ParsedRow:
        """A table row (CSV/TSV cells or a JSON array's object): numbers count as their text."""
        try:
            raw = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            raw = str(value)
        return cls(line, raw, value, columns, numbers_as_text=True)

    def pretty(self) -> str:
        try:
            return json.dumps(json.loads(self.raw), indent=2, ensure_ascii=False)
        except ValueError:
            return self.raw


def _problem_text(problem: FormatProblem, value: dict[str, Any]) -> str:
    if problem.kind == UNKNOWN_FORMAT:  # the core's message names the CLI's --columns
        keys = ", ".join(repr(str(k)) for k in list(value)[:8])
        return f"no format fits the keys {keys}: choose Map columns…"
    return problem.message


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _elide(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _ELIDE else flat[: _ELIDE - 1] + "…"


class DatasetTableModel(QAbstractTableModel):
    """Columns question / answer / turns / metadata / phrasings; rows come from a JSONL head list,
    a LineIndex, or a table's rows."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._head: list[tuple[int, str]] = []
        self._index: LineSource | None = None
        self._table: list[tuple[int, Any]] | None = None
        self._columns: dict[str, str] | None = None
        self._cache: OrderedDict[int, ParsedRow] = OrderedDict()
        self._problem_lines: dict[int, str] = {}
        self._phrasing_counts: dict[str, int] = {}
        self._error_brush = QBrush(QColor(224, 49, 49, 40))

    # --- feeding ---
    def clear(self) -> None:
        self.beginResetModel()
        self._head, self._index, self._table = [], None, None
        self._cache.clear()
        self._problem_lines = {}
        self.endResetModel()

    def set_head(self, rows: list[tuple[int, str]], columns: dict[str, str] | None = None) -> None:
        """A new file: its first JSONL lines (none for a table, whose rows come with :meth:`set_table`)."""
        self.beginResetModel()
        self._head = list(rows)
        self._index = None
        self._table = None
        self._columns = dict(columns) if columns else None
        self._cache.clear()
        self.endResetModel()

    def set_index(self, index: LineSource) -> None:
        """Switch from the head rows to the full index (keeps the view's rows stable)."""
        self.beginResetModel()
        self._index = index
        self._cache.clear()
        self.endResetModel()

    def set_table(self, rows: list[tuple[int, Any]]) -> None:
        """A table's rows, ``(line, object)``, read whole by a worker."""
        self.beginResetModel()
        self._table = list(rows)
        self._index = None
        self._head = []
        self._cache.clear()
        self.endResetModel()

    def set_columns(self, columns: dict[str, str] | None) -> None:
        """Read the rows again with another column mapping (Map columns…)."""
        self._columns = dict(columns) if columns else None
        self._cache.clear()
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, len(COLUMNS) - 1))

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
        """Every row is there: a JSONL file's line index, or a table's rows."""
        return self._index is not None or self._table is not None

    # --- lookup ---
    def row_for_line(self, line: int) -> int:
        """The row showing file line ``line`` (or the next row after it); -1 when none."""
        if self._index is not None:
            row = bisect.bisect_left(_LineNumbers(self._index), line)
            return row if row < len(self._index) else len(self._index) - 1
        numbers = [n for n, _ in (self._table if self._table is not None else self._head)]
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
                parsed = ParsedRow(self._index.line_number(row), self._index.read_raw(row), columns=self._columns)
            elif self._table is not None:
                line, value = self._table[row]
                parsed = ParsedRow.of_value(line, value, self._columns)
            else:
                line, raw = self._head[row]
                parsed = ParsedRow(line, raw, columns=self._columns)
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
        if self._index is not None:
            return len(self._index)
        return len(self._table) if self._table is not None else len(self._head)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal:
            return _COLUMN_TIPS.get(section)
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
        if role == Qt.ItemDataRole.TextAlignmentRole and col == TURNS_COLUMN:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            text = parsed.raw if parsed.error else parsed.cells[col]
            if col == TURNS_COLUMN and parsed.conversation is not None and text:
                system = " after a system message" if parsed.conversation.system is not None else ""
                text = f"{text} turns, user and assistant alternating{system}"
            problem = self._problem_lines.get(parsed.line)
            if problem:
                text = f"Line {parsed.line}: {problem}\n\n{text}"
            return text[:_TOOLTIP_MAX] + ("…" if len(text) > _TOOLTIP_MAX else "")
        if role == Qt.ItemDataRole.BackgroundRole:
            if parsed.error or parsed.line in self._problem_lines:
                return self._error_brush
        return None
