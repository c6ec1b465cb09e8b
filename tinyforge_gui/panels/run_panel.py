"""Action buttons, run progress with stage text and ETA, the live log and the loss chart."""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.widgets.chart import LossChart
from tinyforge_gui.widgets.common import make_icon
from tinyforge_gui.widgets.log_view import LogView
from tinyforge_gui.widgets.theme import accent_button, set_state_colour

logger = logging.getLogger(__name__)

SCALE = 1000  # progress bar units per stage


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _button(icon: str, text: str, name: str, tip: str, shortcut: str = "") -> QPushButton:
    button = QPushButton(make_icon(icon), text)
    button.setObjectName(name)
    button.setMinimumHeight(32)
    if shortcut:
        button.setShortcut(QKeySequence(shortcut))
        tip = f"{tip} ({QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText)})"
    button.setToolTip(tip)
    button.setAccessibleName(text.replace("&", ""))
    return button


class RunPanel(QWidget):
    """Train / Export / Train → Export / Cancel, progress, log and chart."""

    train_clicked = Signal()
    export_clicked = Signal()
    train_export_clicked = Signal()
    cancel_clicked = Signal()
    resume_clicked = Signal()
    estimate_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runPanel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        buttons = QHBoxLayout()
        self.train = _button("train", "Train", "trainButton", "Train a model on the dataset (dry run or real)")
        self.export = _button("export", "Export", "exportButton", "Export the selected or last run's model to a service")
        self.train_export = _button(
            "train-export", "Train → Export", "trainExportButton", "Train, then export, in one run", "Ctrl+Return"
        )
        accent_button(self.train_export)
        self.cancel = _button("cancel", "Cancel", "cancelButton", "Stop the run at the next step", "Esc")
        self.cancel.setEnabled(False)
        self.resume = _button("train", "Resume", "resumeButton",
                              "Continue the selected cancelled real run from its checkpoint")
        self.resume.setEnabled(False)
        self.estimate = _button("running", "Estimate", "estimateButton",
                                "Train a few real steps and project the whole run's duration and memory")
        self.resume.clicked.connect(self.resume_clicked)
        self.estimate.clicked.connect(self.estimate_clicked)
        self.train.clicked.connect(self.train_clicked)
        self.export.clicked.connect(self.export_clicked)
        self.train_export.clicked.connect(self.train_export_clicked)
        self.cancel.clicked.connect(self.cancel_clicked)
        for b in (self.train, self.export, self.train_export, self.cancel, self.resume, self.estimate):
            buttons.addWidget(b)
        buttons.addSpacing(12)
        self.progress = QProgressBar()
        self.progress.setObjectName("progressBar")
        self.progress.setAccessibleName("Run progress")
        self.progress.setToolTip("Progress of the current run")
        self.progress.setRange(0, SCALE)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("Idle")
        buttons.addWidget(self.progress, 1)
        self.eta = QLabel()
        self.eta.setObjectName("etaLabel")
        self.eta.setMinimumWidth(90)
        self.eta.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        buttons.addWidget(self.eta)
        layout.addLayout(buttons)
        info = QHBoxLayout()
        self.estimate_label = QLabel()
        self.estimate_label.setObjectName("estimateLabel")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.estimate_label.setToolTip("Projection from a few real training steps (Estimate)")
        self.speed = QLabel()
        self.speed.setObjectName("speedLabel")
        self.speed.setToolTip("Training throughput (real, non-padding tokens per second)")
        self.speed.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        info.addWidget(self.estimate_label, 1)
        info.addWidget(self.speed)
        layout.addLayout(info)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("runTabs")
        self.tabs.setDocumentMode(True)
        self.log = LogView()
        log_box = QWidget()
        lb = QVBoxLayout(log_box)
        lb.setContentsMargins(0, 0, 0, 0)
        lb.addWidget(self.log)
        self.tabs.addTab(log_box, "Log")
        self.chart = LossChart()
        self.tabs.addTab(self.chart, "Loss")
        corner = QWidget()
        cl = QHBoxLayout(corner)
        cl.setContentsMargins(0, 0, 0, 0)
        for icon, tip, slot in (
            ("copy", "Copy the whole log", self.log.copy_all),
            ("save", "Save the log to a file", self.log.save_as),
            ("clear", "Clear the log", self.log.clear),
        ):
            tb = QToolButton()
            tb.setIcon(make_icon(icon))
            tb.setAutoRaise(True)
            tb.setToolTip(tip)
            tb.setAccessibleName(tip)
            tb.clicked.connect(slot)
            cl.addWidget(tb)
        self.tabs.setCornerWidget(corner)
        layout.addWidget(self.tabs, 1)

        self._stages: list[str] = []
        self._stage_index = 0
        self._stage_started = 0.0
        self._run_started = 0.0

    # --- run lifecycle ---
    def start(self, stages: list[str], title: str) -> None:
        self._stages = list(stages)
        self._stage_index = 0
        self._run_started = self._stage_started = time.monotonic()
        self.progress.setRange(0, SCALE * max(1, len(self._stages)))
        self.progress.setValue(0)
        self.progress.setFormat(f"{title}: starting…")
        set_state_colour(self.progress, "running")
        self.eta.setText("")
        self.speed.setText("")
        self.chart.clear()
        self.set_busy(True)

    def set_busy(self, busy: bool) -> None:
        self.cancel.setEnabled(busy)

    @Slot(str, str)
    def on_stage(self, stage: str, message: str) -> None:
        if stage in self._stages:
            self._stage_index = self._stages.index(stage)
            self.progress.setValue(self._stage_index * SCALE)
        self._stage_started = time.monotonic()
        self.progress.setFormat(f"{stage}: {message or 'working'}")
        self.eta.setText("")

    @Slot(str, int, int, str)
    def on_progress(self, stage: str, step: int, total: int, message: str) -> None:
        if total <= 0:
            self.progress.setFormat(f"{stage}: {message or step}")
            return
        frac = min(1.0, step / total)
        self.progress.setValue(self._stage_index * SCALE + int(frac * SCALE))
        trainer_eta = message.startswith("ETA ")
        label = f"step {step}/{total}" if trainer_eta else (message or f"{step}/{total}")
        self.progress.setFormat(f"{stage}: {label}  %p%")
        elapsed = time.monotonic() - self._stage_started
        if trainer_eta and frac < 1.0:  # the trainer's own ETA (h:mm:ss)
            self.eta.setText(message)
        elif 0.02 < frac < 1.0 and elapsed > 1.0:
            self.eta.setText(f"ETA {format_eta(elapsed * (1 - frac) / frac)}")
        elif frac >= 1.0:
            self.eta.setText("")

    @Slot(int, dict)
    def on_metric(self, step: int, values: dict[str, float]) -> None:
        """Show the training throughput (tokens/s) next to the ETA."""
        tps = values.get("tokens_per_second")
        if tps is not None:
            self.speed.setText(f"{tps:,.0f} tokens/s · step {step}")

    def show_estimate(self, text: str, tooltip: str = "") -> None:
        self.estimate_label.setText(text)
        self.estimate_label.setToolTip(tooltip or text)

    def finish(self, status: str, message: str = "") -> None:
        """A run ended: the bar reaches its maximum and says how it ended."""
        self.progress.setValue(self.progress.maximum())
        took = format_eta(time.monotonic() - self._run_started)
        self.progress.setFormat(message or f"{status.capitalize()} in {took}")
        set_state_colour(self.progress, status)
        self.eta.setText("")
        self.set_busy(False)
