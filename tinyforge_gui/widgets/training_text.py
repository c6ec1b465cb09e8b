"""A row's training text as the model sees it: the trained (loss) span highlighted, the prompt in
grey, special tokens such as ``<|im_start|>`` written literally and set apart."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from PySide6.QtGui import QColor, QFont, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QLabel, QTextEdit, QVBoxLayout, QWidget

from tinyforge_gui.widgets.theme import style_label

logger = logging.getLogger(__name__)

TRAINED_BACKGROUND = "#ffe08a"  # the loss span (dark text on it, in light and dark palettes alike)
TRAINED_TEXT = "#1f1f1f"
SPECIAL_TEXT = "#9c36b5"  # special tokens: purple, bold
SPECIAL_TEXT_ON_TRAINED = "#7b2a8f"
LEGEND = "highlighted: trained (loss); grey: prompt"


class TrainingTextView(QWidget):
    """A legend above a read-only text view; :meth:`show_segments` renders one row."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.legend = QLabel(
            f'<span style="background:{TRAINED_BACKGROUND}; color:{TRAINED_TEXT}">highlighted</span>: trained (loss); '
            f'<span style="color:grey">grey</span>: prompt; <b style="color:{SPECIAL_TEXT}">bold</b>: special tokens'
        )
        self.legend.setObjectName("trainingTextLegend")
        self.legend.setToolTip(f"{LEGEND}; special tokens are written as the tokenizer spells them")
        self.legend.setWordWrap(True)
        small = QFont(self.legend.font())
        small.setPointSizeF(max(6.0, small.pointSizeF() - 1))
        self.legend.setFont(small)
        self.text = QTextEdit()
        self.text.setObjectName("trainingText")
        self.text.setReadOnly(True)
        self.text.setAccessibleName("Training text of the selected row")
        self.text.setPlaceholderText("Select a row to see its training text as the model sees it")
        self.note = QLabel("")
        self.note.setObjectName("trainingTextNote")
        self.note.setWordWrap(True)
        style_label(self.note, "dim")
        self.note.hide()
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.text.setFont(mono)
        layout.addWidget(self.legend)
        layout.addWidget(self.note)
        layout.addWidget(self.text, 1)

    def set_note(self, note: str) -> None:
        """One line under the legend (why there is no preview, or what it is waiting for)."""
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def clear(self) -> None:
        self.text.clear()

    def show_message(self, message: str) -> None:
        """Plain text in place of a training text (a row that is not a conversation)."""
        self.text.setPlainText(message)

    def show_segments(self, segments: Iterable[Any], special_tokens: Sequence[str] = ()) -> None:
        """Render ``core.models.prompting.Segment`` pieces: ``text``, ``trained``, ``eos``."""
        self.text.clear()
        cursor = QTextCursor(self.text.document())
        grey = self.palette().color(QPalette.ColorGroup.Active, QPalette.ColorRole.PlaceholderText)
        split = _splitter(special_tokens)
        for segment in segments:
            pieces = [(segment.text, True)] if segment.eos else _special_pieces(segment.text, split)
            for text, special in pieces:
                if text:
                    cursor.insertText(text, _char_format(bool(segment.trained), special, grey))
        self.text.moveCursor(QTextCursor.MoveOperation.Start)

    # --- what the document shows (for tests and accessibility) ---
    def trained_spans(self) -> list[str]:
        """The texts shown highlighted, one per run of adjacent highlighted characters."""
        highlight = QColor(TRAINED_BACKGROUND)
        pieces: list[tuple[str, bool | None]] = []  # None: a line break, highlighted when both sides are
        block = self.text.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.isValid():
                    pieces.append((fragment.text(), fragment.charFormat().background().color() == highlight))
                it += 1
            block = block.next()
            if block.isValid():
                pieces.append(("\n", None))
        spans: list[str] = []
        current = ""
        for n, (text, trained) in enumerate(pieces):
            if trained is None:
                before = pieces[n - 1][1] if n else False
                after = pieces[n + 1][1] if n + 1 < len(pieces) else False
                trained = bool(before and after)
            if trained:
                current += text
            elif current:
                spans.append(current)
                current = ""
        if current:
            spans.append(current)
        return spans


def _splitter(special_tokens: Sequence[str]) -> re.Pattern[str] | None:
    tokens = sorted({t for t in special_tokens if t}, key=len, reverse=True)
    return re.compile("(" + "|".join(map(re.escape, tokens)) + ")") if tokens else None


def _special_pieces(text: str, split: re.Pattern[str] | None) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is a special token)."""
    if split is None:
        return [(text, False)]
    return [(piece, n % 2 == 1) for n, piece in enumerate(split.split(text))]


def _char_format(trained: bool, special: bool, grey: QColor) -> QTextCharFormat:
    fmt = QTextCharFormat()
    if trained:
        fmt.setBackground(QColor(TRAINED_BACKGROUND))
        fmt.setForeground(QColor(SPECIAL_TEXT_ON_TRAINED if special else TRAINED_TEXT))
    else:
        fmt.setForeground(QColor(SPECIAL_TEXT) if special else grey)
    if special:
        fmt.setFontWeight(QFont.Weight.Bold)
    return fmt
