"""The live log: levels in colour, lines batched and flushed about ten times a second."""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QTimer, Slot
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QWidget

logger = logging.getLogger(__name__)

MAX_BLOCKS = 5000
FLUSH_MS = 100
_LEVEL_COLOURS = {"debug": "#868e96", "warning": "#e8590c", "error": "#e03131", "success": "#2f9e44"}


class LogView(QPlainTextEdit):
    """Read-only log with a block limit; :meth:`append` only queues, a timer writes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("logView")
        self.setAccessibleName("Log")
        self.setToolTip("What the current run is doing; right-click to copy or save")
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_BLOCKS)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(font)
        self._pending: list[tuple[str, str]] = []
        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self.flush)
        self._formats: dict[str, QTextCharFormat] = {}

    def _format(self, level: str) -> QTextCharFormat:
        fmt = self._formats.get(level)
        if fmt is None:
            fmt = QTextCharFormat()
            colour = _LEVEL_COLOURS.get(level)
            if colour:
                fmt.setForeground(QColor(colour))
            else:
                fmt.setForeground(self.palette().color(QPalette.ColorRole.Text))
            if level == "error":
                fmt.setFontWeight(QFont.Weight.Bold)
            self._formats[level] = fmt
        return fmt

    @Slot(str, str)
    def append(self, level: str, message: str) -> None:
        """Queue a line (cheap; safe to call thousands of times a second)."""
        stamp = time.strftime("%H:%M:%S")
        for line in str(message).splitlines() or [""]:
            self._pending.append((level, f"{stamp}  {level.upper():<7} {line}"))
        if len(self._pending) > MAX_BLOCKS:
            del self._pending[: len(self._pending) - MAX_BLOCKS]
        if not self._timer.isActive():
            self._timer.start()

    @Slot()
    def flush(self) -> None:
        """Write the queued lines in one edit block and keep the view at the bottom."""
        if not self._pending:
            self._timer.stop()
            return
        pending, self._pending = self._pending, []
        bar = self.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        first = self.document().isEmpty()
        for level, text in pending:
            if not first:
                cursor.insertBlock()
            first = False
            cursor.insertText(text, self._format(level))
        cursor.endEditBlock()
        if at_bottom:
            bar.setValue(bar.maximum())

    def changeEvent(self, event) -> None:  # noqa: ANN001 - Qt override
        super().changeEvent(event)
        if hasattr(self, "_formats"):
            self._formats.clear()  # palette changed (light/dark): rebuild the default colour

    @Slot()
    def copy_all(self) -> None:
        self.flush()
        QGuiApplication.clipboard().setText(self.toPlainText())

    @Slot()
    def save_as(self) -> None:
        self.flush()
        from PySide6.QtWidgets import QFileDialog  # not at import: start-up never opens it

        path, _ = QFileDialog.getSaveFileName(self, "Save the log", "tinyforge-log.txt", "Text files (*.txt)")
        if path:
            self.save_to(path)

    def save_to(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.toPlainText() + "\n")

    def contextMenuEvent(self, event) -> None:  # noqa: ANN001 - Qt override
        menu = self.createStandardContextMenu()
        menu.addSeparator()
        menu.addAction("Copy all", self.copy_all)
        menu.addAction("Save as…", self.save_as)
        menu.addAction("Clear", self.clear)
        menu.exec(event.globalPos())
        menu.deleteLater()
