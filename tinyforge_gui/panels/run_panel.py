"""Action buttons, run progress with stage text and ETA, the live log and the loss chart.

The bar shows the current stage's own fraction and names the stage ("Training · step 28 of 40");
the label beside it shows an ETA where the stage runs at a steady rate (training steps), else the
time spent in the stage (see :mod:`tinyforge_gui.widgets.run_progress`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.widgets.chart import LossChart
from tinyforge_gui.widgets.common import make_icon
from tinyforge_gui.widgets.log_view import LogView
from tinyforge_gui.widgets.run_progress import (
    STEADY_STAGES,
    FittedProgressBar,
    StepRate,
    progress_texts,
    stage_label,
)
from tinyforge_gui.widgets.theme import accent_button, set_state_colour

logger = logging.getLogger(__name__)

SCALE = 1000  # progress bar units for the current stage
ETA_TIP = "Time left in training, from the steady rate of its steps (the stages after it are not included)"
ELAPSED_TIP = "Time spent in this stage: its length cannot be projected from its step count"


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
        buttons.addStretch(1)
        layout.addLayout(buttons)
        # The bar gets a row of its own: beside six buttons it had ~180 px at 1280×820.
        bar_row = QHBoxLayout()
        self.progress = FittedProgressBar()
        self.progress.setObjectName("progressBar")
        self.progress.setAccessibleName("Run progress")
        self.progress.setToolTip("Progress of the current run")
        self.progress.setRange(0, SCALE)
        self.progress.setValue(0)
        self.progress.set_texts("Idle")
        bar_row.addWidget(self.progress, 1)
        self.speed = QLabel()
        self.speed.setObjectName("speedLabel")
        self.speed.setToolTip("Training throughput (real, non-padding tokens per second)")
        self.speed.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar_row.addWidget(self.speed)
        self.eta = QLabel()
        self.eta.setObjectName("etaLabel")
        self.eta.setMinimumWidth(110)
        self.eta.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar_row.addWidget(self.eta)
        layout.addLayout(bar_row)
        self.estimate_label = QLabel()
        self.estimate_label.setObjectName("estimateLabel")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.estimate_label.setToolTip("Projection from a few real training steps (Estimate)")
        self.estimate_label.hide()  # shown with an estimate
        layout.addWidget(self.estimate_label)

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

        self._clock: Callable[[], float] = time.monotonic  # tests pass a fake clock
        self._title = ""
        self._stages: list[str] = []
        self._run_started = 0.0
        self._action = ""  # the run's stage (one of ``_stages``) under way
        self._stage = ""  # the stage the bar names (the action or one of its parts)
        self._stage_message = ""  # its StageStarted message (the tooltip's detail)
        self._stage_started: dict[str, float] = {}
        self._rate = StepRate()
        self._last_progress: tuple[int, int] = (0, 0)  # step, total of the current stage
        self._cancelling = False
        self._ticker = QTimer(self)  # the elapsed time moves while a long stage reports nothing
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._update_eta)

    # --- run lifecycle ---
    def start(self, stages: list[str], title: str) -> None:
        self._title = title
        self._stages = list(stages)
        self._run_started = self._clock()
        self._action, self._stage, self._stage_message = "", "", ""
        self._stage_started = {}
        self._rate.reset()
        self._last_progress = (0, 0)
        self._cancelling = False
        self.progress.setRange(0, SCALE)
        self.progress.setValue(0)
        self.progress.set_texts([f"{title} · starting", "Starting"])
        self.progress.setToolTip(f"{title}: starting")
        set_state_colour(self.progress, "running")
        self.eta.setText("")
        self.speed.setText("")
        self.chart.clear()
        self.set_busy(True)
        self._ticker.start()

    def set_busy(self, busy: bool) -> None:
        self.cancel.setEnabled(busy)

    def _enter(self, stage: str, restart: bool) -> None:
        """Make ``stage`` the one the bar names (its clock restarts on its StageStarted)."""
        if restart or stage not in self._stage_started:
            self._stage_started[stage] = self._clock()
        if restart or stage != self._stage:
            self._rate.reset()
            self._last_progress = (0, 0)
        self._stage = stage

    @Slot(str, str)
    def on_stage(self, stage: str, message: str) -> None:
        self._enter(stage, restart=True)
        self._stage_message = message
        self.progress.setValue(0)
        if stage in self._stages:
            self._action = stage
            self.speed.setText("")  # the throughput belongs to the training it measured
        self._show(f"{stage_label(stage)} · starting" if stage in self._stages else stage_label(stage), message)
        self._update_eta()

    @Slot(str, int, int, str)
    def on_progress(self, stage: str, step: int, total: int, message: str) -> None:
        if stage != self._stage:
            self._enter(stage, restart=False)
        self._last_progress = (step, total)
        if total > 0:
            self.progress.setValue(int(min(1.0, step / total) * SCALE))
            if stage in STEADY_STAGES:
                self._rate.add(step, self._clock())
        detail = "" if stage in STEADY_STAGES else message
        self._show(progress_texts(stage, step, total, message), detail or self._stage_message)
        self._update_eta()

    def _show(self, texts: list[str] | str, detail: str) -> None:
        """The bar's short text, and the long story in its tooltip."""
        if self._cancelling:
            return
        self.progress.set_texts(texts)
        where = ""
        if self._action in self._stages and len(self._stages) > 1:
            where = f", stage {self._stages.index(self._action) + 1} of {len(self._stages)} ({self._action})"
        lines = [f"{self._title}{where}: {stage_label(self._stage).lower()}", detail,
                 "The bar shows this stage's own progress."]
        self.progress.setToolTip("\n".join(line for line in lines if line))

    @Slot()
    def _update_eta(self) -> None:
        """ETA for steady stages once measured; otherwise the time spent in the stage."""
        if not self._stage or self._cancelling:
            return
        total = self._last_progress[1]
        left = self._rate.remaining(total, self._clock()) if self._stage in STEADY_STAGES else None
        if left is not None:
            self.eta.setText(f"ETA {format_eta(left)}")
            self.eta.setToolTip(ETA_TIP)
        else:
            spent = self._clock() - self._stage_started.get(self._stage, self._run_started)
            self.eta.setText(f"{format_eta(spent)} elapsed" if spent >= 1.0 else "")
            self.eta.setToolTip(ELAPSED_TIP)

    @Slot(int, dict)
    def on_metric(self, step: int, values: dict[str, float]) -> None:
        """Show the training throughput (tokens/s) next to the ETA."""
        tps = values.get("tokens_per_second")
        if tps is not None:
            self.speed.setText(f"{tps:,.0f} tokens/s")

    def show_estimate(self, text: str, tooltip: str = "") -> None:
        self.estimate_label.setText(text)
        self.estimate_label.setToolTip(tooltip or text)
        self.estimate_label.setVisible(bool(text))

    def show_cancelling(self) -> None:
        """Cancel was pressed: the bar says so until the run ends (no ETA for a stop)."""
        self.progress.set_texts("Cancelling…")
        self._cancelling = True
        self.eta.setText("")

    def finish(self, status: str, message: str = "") -> None:
        """A run ended: the bar reaches its maximum and says how it ended."""
        self._ticker.stop()
        self._cancelling = False
        self.progress.setRange(0, SCALE)
        self.progress.setValue(self.progress.maximum())
        took = format_eta(self._clock() - self._run_started)
        summary = f"{status.capitalize()} in {took}"
        self.progress.set_texts([message, summary] if message else summary)
        self.progress.setToolTip(f"{self._title or 'The run'}: {status} in {took}" + (f"\n{message}" if message else ""))
        set_state_colour(self.progress, status)
        self.eta.setText("")
        self.set_busy(False)
