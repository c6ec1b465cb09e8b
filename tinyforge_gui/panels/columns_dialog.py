"""Map columns…: which of a file's own columns is the question, the answer and the system message.

Nothing is guessed: a role starts empty unless a column carries the role's own name (or the
mapping in use names it). OK is offered once the question and the answer name two columns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.widgets.theme import style_label

logger = logging.getLogger(__name__)

ROLE_LABELS = {"question": "Question (user)", "answer": "Answer (assistant)", "system": "System (optional)"}
_SAMPLE_CHARS = 60


class ColumnsDialog(QDialog):
    """Three combo boxes over the file's column names; :meth:`mapping` is the choice.

    ``reset`` is True when the user chose to read the file's own keys again (no mapping).
    """

    def __init__(self, names: Sequence[str], current: Mapping[str, str] | None = None,
                 sample: Mapping[str, Any] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("columnsDialog")
        self.setWindowTitle("Map columns")
        self.names = [str(n) for n in names]
        self.sample = dict(sample or {})
        self.reset = False
        layout = QVBoxLayout(self)
        intro = QLabel("Choose the columns that hold each question and its answer. The mapping is used to "
                       "check the file and to train on it.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.combos: dict[str, QComboBox] = {}
        self.samples: dict[str, QLabel] = {}
        for role, label in ROLE_LABELS.items():
            combo = QComboBox()
            combo.setObjectName(f"columns_{role}")
            combo.setAccessibleName(label)
            combo.addItem("(none)" if role == "system" else "choose a column…", "")
            for name in self.names:
                combo.addItem(name, name)
            chosen = _initial(role, self.names, current)
            if chosen:
                combo.setCurrentIndex(combo.findData(chosen))
            combo.currentIndexChanged.connect(self._update)
            sample_label = QLabel("")
            style_label(sample_label, "dim")
            sample_label.setMinimumWidth(160)
            row = QHBoxLayout()
            row.addWidget(combo, 1)
            row.addWidget(sample_label, 1)
            form.addRow(label, row)
            self.combos[role] = combo
            self.samples[role] = sample_label
        layout.addLayout(form)
        self.hint = QLabel("")
        self.hint.setObjectName("columnsHint")
        self.hint.setWordWrap(True)
        style_label(self.hint, "dim")
        layout.addWidget(self.hint)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        if current:
            reset = self.buttons.addButton("Use the file's own keys", QDialogButtonBox.ButtonRole.ResetRole)
            reset.setObjectName("columnsResetButton")
            reset.setToolTip("Forget the mapping: read the file by its own column names again")
            reset.clicked.connect(self._reset)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(480)
        self._update()

    @property
    def ok_button(self) -> Any:
        return self.buttons.button(QDialogButtonBox.StandardButton.Ok)

    def choose(self, role: str, column: str) -> None:
        """Select ``column`` for ``role`` ("" for none), as the user would."""
        self.combos[role].setCurrentIndex(max(0, self.combos[role].findData(column)))

    def mapping(self) -> dict[str, str]:
        """``{"question": col, "answer": col[, "system": col]}``; empty after a reset."""
        if self.reset:
            return {}
        return {role: str(combo.currentData()) for role, combo in self.combos.items() if combo.currentData()}

    @Slot()
    def _reset(self) -> None:
        self.reset = True
        self.accept()

    @Slot()
    def _update(self, *_: object) -> None:
        chosen = {role: str(combo.currentData() or "") for role, combo in self.combos.items()}
        for role, label in self.samples.items():
            column = chosen[role]
            value = self.sample.get(column) if column else None
            text = "" if value is None else " ".join(str(value).split())
            label.setText(f"e.g. “{text[:_SAMPLE_CHARS]}{'…' if len(text) > _SAMPLE_CHARS else ''}”" if text else "")
            label.setToolTip(str(value) if value is not None else "")
        used = [c for c in chosen.values() if c]
        problem = ""
        if not chosen["question"] or not chosen["answer"]:
            problem = "Choose the question and the answer columns."
        elif len(set(used)) < len(used):
            problem = "Each role needs a column of its own."
        self.hint.setText(problem)
        self.ok_button.setEnabled(not problem)


def _initial(role: str, names: Sequence[str], current: Mapping[str, str] | None) -> str:
    """The column a role starts with: the mapping in use, else a column named exactly after it."""
    if current and current.get(role) in names:
        return str(current[role])
    return next((n for n in names if n.strip().casefold() == role), "")


__all__ = ["ROLE_LABELS", "ColumnsDialog"]
