"""JSON display helpers: a syntax highlighter for pretty-printed JSON and a collapsible tree."""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import QRegularExpression
from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextDocument
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem, QWidget

_MAX_TREE_ITEMS = 5000


def _fmt(colour: str, bold: bool = False) -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setForeground(QColor(colour))
    if bold:
        fmt.setFontWeight(QFont.Weight.Bold)
    return fmt


class JsonHighlighter(QSyntaxHighlighter):
    """Keys, strings, numbers and literals in colours readable on light and dark palettes."""

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self._rules = [
            (QRegularExpression(r"-?\b\d+(\.\d+)?([eE][+-]?\d+)?\b"), _fmt("#d9480f")),
            (QRegularExpression(r"\b(true|false|null)\b"), _fmt("#7048e8", bold=True)),
            (QRegularExpression(r'"(?:[^"\\]|\\.)*"'), _fmt("#2b8a3e")),
            (QRegularExpression(r'"(?:[^"\\]|\\.)*"(?=\s*:)'), _fmt("#1971c2", bold=True)),
        ]

    def highlightBlock(self, text: str) -> None:
        for pattern, fmt in self._rules:
            it = pattern.globalMatch(text)
            while it.hasNext():
                match = it.next()
                self.setFormat(match.capturedStart(), match.capturedLength(), fmt)


def _summary(value: Any) -> str:
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if isinstance(value, str):
        flat = re.sub(r"\s+", " ", value)
        return f'"{flat[:200]}"' + ("…" if len(flat) > 200 else "")
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


class JsonTree(QTreeWidget):
    """A collapsible key / value tree of a parsed JSON document."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jsonTree")
        self.setAccessibleName("JSON tree")
        self.setHeaderLabels(["key", "value"])
        self.setColumnWidth(0, 220)
        self.setAlternatingRowColors(True)
        self._count = 0

    def set_data(self, data: Any) -> None:
        self.clear()
        self._count = 0
        self._add(self.invisibleRootItem(), data)
        self.expandToDepth(1)

    def _add(self, parent: QTreeWidgetItem, value: Any) -> None:
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        for key, child in items:
            self._count += 1
            if self._count > _MAX_TREE_ITEMS:
                QTreeWidgetItem(parent, ["…", "(truncated)"])
                return
            item = QTreeWidgetItem(parent, [str(key), _summary(child)])
            item.setToolTip(1, _summary(child))
            if isinstance(child, (dict, list)):
                self._add(item, child)
