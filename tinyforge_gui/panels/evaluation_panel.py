"""The Evaluation tab: did the model learn? The verdict on top, then reference, base and
fine-tuned answers side by side with their ROUGE-L and fact recall (``model/evaluation.json`` of
a run). Questions asked in other words (held-out phrasings, the user's own file) come first:
they are what a customer sees."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.widgets.theme import style_label

if TYPE_CHECKING:
    from core.run_layout import Evaluation, SplitMeans

logger = logging.getLogger(__name__)

COLUMNS = ("asked", "question", "reference", "base answer", "fine-tuned answer", "base ROUGE-L",
           "fine-tuned ROUGE-L", "fine-tuned facts")
SPLIT_LABELS = {"unseen": "in other words", "data": "your file", "eval": "held-out record", "train": "as trained"}
_ORDER = {"unseen": 0, "data": 1, "eval": 2, "train": 3}
_GOOD, _BAD = QColor(46, 160, 67, 60), QColor(218, 54, 51, 50)


def split_summary(name: str, means: SplitMeans) -> str:
    """One line per split: questions, answered with the right facts, mean ROUGE-L of both models, loss."""
    label = {"train": "as trained", "unseen": "asked in other words", "eval": "held-out records",
             "data": "your evaluation file"}.get(name, name)
    loss = means.loss
    loss_text = f", loss {loss:.3f} (perplexity {means.perplexity:.2f})" if isinstance(loss, float) else ""
    recall = means.tuned_fact_recall
    facts = f", fact recall {recall:.2f}" if isinstance(recall, float) else ""
    return (f"{label}: {means.answered} of {means.n} answered with the right facts (base {means.base_answered}){facts}, "
            f"ROUGE-L fine-tuned {means.tuned_rouge_l or 0:.2f} vs base {means.base_rouge_l or 0:.2f}, "
            f"{means.reproduced} reproduced{loss_text}")


class EvaluationPanel(QWidget):
    """Shows one run's evaluation; empty with a hint when the run has none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("evaluationTab")
        self.run_dir = ""
        self.evaluation: Evaluation | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.verdict = QLabel("Train a real model to see whether it learned your data.")
        self.verdict.setObjectName("evaluationVerdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel("")
        self.summary.setObjectName("evaluationSummary")
        self.summary.setWordWrap(True)
        style_label(self.summary, "dim")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("evaluationTable")
        self.table.setAccessibleName("Evaluation: reference, base and fine-tuned answers")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        for column in (0, 5, 6, 7):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        for column in (1, 2, 3, 4):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.verdict)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        """Rows fit their wrapped text at the widths the columns have once the tab is shown."""
        super().showEvent(event)
        self.table.resizeRowsToContents()

    def show_run(self, run_dir: str) -> bool:
        """Show ``run_dir``'s evaluation; True when it has one."""
        from core.run_layout import RunFileError, evaluation_path, read_evaluation

        self.run_dir = run_dir
        path = evaluation_path(run_dir) if run_dir else None
        if path is None:
            self.evaluation = None
            self.table.setRowCount(0)
            self.summary.setText("")
            self.verdict.setText(f"<b>{Path(run_dir).name}</b> has no evaluation (dry runs and cancelled runs "
                                 "have none; `foremforge evaluate --model RUN/model` computes one)."
                                 if run_dir else "Train a real model to see whether it learned your data.")
            return False
        try:
            evaluation = read_evaluation(path)
        except RunFileError as exc:
            self.verdict.setText(f"Cannot read {path}: {exc.reason}")
            return False
        self.set_evaluation(evaluation)
        return True

    def set_evaluation(self, evaluation: Evaluation) -> None:
        self.evaluation = evaluation
        verdict = evaluation.verdict or "no verdict"
        self.verdict.setText(f"<b>{verdict[:1].upper()}{verdict[1:]}</b>")
        self.summary.setText("\n".join(split_summary(name, means) for name, means in evaluation.splits.items()))
        rows = sorted(evaluation.rows, key=lambda r: _ORDER.get(r.split, len(_ORDER)))
        threshold = evaluation.reproduced_rouge_l or 0.8
        self.table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            recall = row.tuned_fact_recall
            cells = (SPLIT_LABELS.get(row.split, row.split), row.input, row.reference, row.base_answer,
                     row.tuned_answer, f"{row.base_rouge_l:.2f}", f"{row.tuned_rouge_l:.2f}",
                     "-" if recall is None else f"{recall:.0%}")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if column == 6:
                    item.setBackground(QBrush(_GOOD if row.tuned_rouge_l >= threshold else _BAD))
                if column == 7 and "tuned_answered" in row.model_fields_set:  # older files have no facts
                    item.setBackground(QBrush(_GOOD if row.tuned_answered else _BAD))
                    item.setToolTip("the share of the reference's numbers, times, prices, addresses and names "
                                    "that the fine-tuned answer states")
                self.table.setItem(index, column, item)
        self.table.resizeRowsToContents()
