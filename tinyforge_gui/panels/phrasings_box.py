"""The Dataset tab's phrasings: each question's variants, for the selected record.

After "Write phrasings" the list shows every way the selected question will be asked in
training (the user's own wordings, surface variants, model-written rephrasings). Unticking one
drops it from every later run of this dataset; "Export JSONL…" saves them as a dataset.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.widgets.theme import style_label

if TYPE_CHECKING:
    from core.run_layout import PhrasingRow

_SOURCE_LABELS = {"original": "yours", "surface": "surface", "generated": "model-written"}


class PhrasingsBox(QWidget):
    """Title, the selected question's phrasings (tick to keep), write / cancel / export buttons."""

    write_requested = Signal()
    cancel_requested = Signal()
    export_requested = Signal()
    dropped_changed = Signal(str, bool)  # phrasing, dropped

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("phrasingsBox")
        self._by_question: dict[str, list[PhrasingRow]] = {}
        self._dropped: set[str] = set()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Phrasings")
        title.setObjectName("sectionTitle")
        style_label(title, "section")
        self.status = QLabel("Write phrasings to see how each question will be asked in training.")
        self.status.setObjectName("phrasingsStatus")
        self.status.setWordWrap(True)
        style_label(self.status, "dim")
        self.list = QListWidget()
        self.list.setObjectName("phrasingsList")
        self.list.setAccessibleName("Phrasings of the selected question")
        self.list.setToolTip("Untick a phrasing to drop it from training (it stays dropped for this dataset)")
        self.list.itemChanged.connect(self._on_item_changed)
        self.progress = QProgressBar()
        self.progress.setObjectName("phrasingsProgress")
        self.progress.setFormat("Writing phrasings… %p%")
        self.progress.setVisible(False)
        self.write_button = QPushButton("Write phrasings")
        self.write_button.setObjectName("writePhrasingsButton")
        self.write_button.setShortcut(QKeySequence("Ctrl+Shift+P"))
        self.write_button.setToolTip("Write each question's variants now, as the next real run will "
                                     "(Ctrl+Shift+P); a re-run reads them from the cache")
        self.write_button.clicked.connect(self._on_write_clicked)
        self.export_button = QPushButton("Export JSONL…")
        self.export_button.setObjectName("exportPhrasingsButton")
        self.export_button.setToolTip("Save every kept phrasing with its answer as a dataset (JSONL)")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self.export_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.write_button)
        buttons.addWidget(self.export_button)
        buttons.addStretch(1)
        layout.addWidget(title)
        layout.addWidget(self.status)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)
        self._busy = False

    # --- feeding ---
    def clear(self) -> None:
        self._by_question, self._dropped = {}, set()
        self.list.clear()
        self.export_button.setEnabled(False)
        self.status.setText("Write phrasings to see how each question will be asked in training.")

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.progress.setVisible(busy)
        self.progress.setValue(0)
        self.write_button.setText("Cancel" if busy else "Write phrasings")

    @Slot(str, int, int, str)
    def on_progress(self, _stage: str, step: int, total: int, _message: str) -> None:
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(step)

    def set_rows(self, rows: list[PhrasingRow], dropped: set[str], summary: str) -> None:
        """Every phrasing (``input``, ``output``, ``fact``, ``source``) and the dropped ones."""
        by_fact: dict[int, list[PhrasingRow]] = defaultdict(list)
        for row in rows:
            by_fact[row.fact].append(row)
        self._by_question = {}
        for fact_rows in by_fact.values():
            for row in fact_rows:
                if row.source == "original":
                    self._by_question[row.input] = fact_rows
        self._dropped = set(dropped)
        self.export_button.setEnabled(bool(rows))
        self.status.setText(summary + (f"; {len(self._dropped)} dropped" if self._dropped else ""))

    def counts(self) -> dict[str, int]:
        """Question -> the number of its other phrasings that train (for the table's column)."""
        return {question: sum(1 for r in rows if r.input != question and r.input not in self._dropped)
                for question, rows in self._by_question.items()}

    def kept_rows(self) -> list[PhrasingRow]:
        seen: set[int] = set()
        kept = []
        for rows in self._by_question.values():
            if id(rows) in seen:
                continue
            seen.add(id(rows))
            kept.extend(r for r in rows if r.input not in self._dropped)
        return kept

    def show_question(self, question: str) -> None:
        """List the phrasings of ``question``'s fact; the user's own cannot be unticked."""
        self.list.blockSignals(True)
        self.list.clear()
        for row in self._by_question.get(question, []):
            label = _SOURCE_LABELS.get(row.source, row.source)
            item = QListWidgetItem(f"{row.input}    ({label})")
            item.setData(Qt.ItemDataRole.UserRole, row.input)
            if row.source == "original":  # the user's own question is the record itself
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsUserCheckable)
            else:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                dropped = row.input in self._dropped
                item.setCheckState(Qt.CheckState.Unchecked if dropped else Qt.CheckState.Checked)
            self.list.addItem(item)
        self.list.blockSignals(False)

    # --- user actions ---
    @Slot()
    def _on_write_clicked(self) -> None:
        (self.cancel_requested if self._busy else self.write_requested).emit()

    @Slot(QListWidgetItem)
    def _on_item_changed(self, item: QListWidgetItem) -> None:
        text = str(item.data(Qt.ItemDataRole.UserRole))
        dropped = item.checkState() == Qt.CheckState.Unchecked
        (self._dropped.add if dropped else self._dropped.discard)(text)
        self.dropped_changed.emit(text, dropped)

    @property
    def dropped(self) -> set[str]:
        return set(self._dropped)
