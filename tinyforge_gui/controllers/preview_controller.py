"""What the model will see, in the Dataset tab: the training text of the selected row and the
dataset's token lengths, for the base model, max length and "Train on" of the options form.

The base model's prompt format is read once per (base model, max length) by a
:class:`~tinyforge_gui.workers.preview_tasks.PreviewFormatWorker` and kept; the token lengths
are measured by a cancellable :class:`~tinyforge_gui.workers.preview_tasks.TokenStatsWorker`
after the scan found the dataset valid, and again when the base model, max length, "Train on"
or the column mapping change. Neither tokenizes in the GUI thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Slot

from tinyforge_gui.state import StudioState, Task
from tinyforge_gui.workers.runner import TaskRunner

if TYPE_CHECKING:
    from tinyforge_gui.panels.dataset_panel import DatasetPanel
    from tinyforge_gui.panels.options_panel import OptionsPanel
    from tinyforge_gui.workers.preview_tasks import PreparedFormat

logger = logging.getLogger(__name__)

NOT_PREPARED = ("Token counts and the training text appear once the base model is prepared "
                "(the starter model is converted on first training).")
_SETTLE_MS = 300  # typing a base model's name: look it up once the typing stops

FormatKey = tuple[str, int]


class PreviewController(QObject):
    """Keeps the Dataset tab's training text and token line in step with the options form."""

    def __init__(self, tasks: TaskRunner, state: StudioState, dataset: DatasetPanel, options: OptionsPanel,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("previewController")
        self._tasks, self._state, self._dataset, self._options = tasks, state, dataset, options
        self._formats: dict[FormatKey, PreparedFormat | str | None] = {}  # str: why it could not be read
        self._format_pending: FormatKey | None = None
        self._stats_key: tuple[Any, ...] | None = None  # the token lengths shown (or being measured)
        self._stopped = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(_SETTLE_MS)
        self._timer.timeout.connect(self.refresh)
        options.changed.connect(self._timer.start)
        state.subscribe(self._on_state_changed)

    # ------------------------------------------------------------------ inputs
    def _wanted(self) -> tuple[FormatKey, str]:
        train = self._options.to_dict()["train"]
        return (str(train["base_model"]), int(train["max_length"])), str(train.get("loss_on") or "all")

    def _on_state_changed(self, changed: set[str]) -> None:
        if changed & {"dataset_path", "dataset_report", "dataset_columns"}:
            self.refresh()

    def stop(self) -> None:
        """The window closes: start nothing more (what runs is cancelled and awaited by the window)."""
        self._stopped = True
        self._timer.stop()

    @Slot()
    def refresh(self) -> None:
        """Show what is known for the form's current values; start the work that is missing."""
        if self._stopped or not self._state.dataset_path:
            return
        key, loss_on = self._wanted()
        if key not in self._formats:
            if self._state.dataset_report is None:  # after the scan: a tokenizer read beside it makes the window stutter
                self._dataset.set_preview_format(None, loss_on, "The training text appears once the scan ends.")
                return
            self._dataset.set_preview_format(None, loss_on, f"Reading the prompt format of {key[0]}…")
            self._dataset.set_token_line("")
            self._stats_key = None
            self._tasks.cancel(Task.TOKEN_STATS)
            self._start_format(key)
            return
        prepared = self._formats[key]
        if prepared is None or isinstance(prepared, str):
            note = NOT_PREPARED if prepared is None else f"No training text: {prepared}"
            self._dataset.set_preview_format(None, loss_on, note)
            self._dataset.set_token_line("")
            self._stats_key = None
            self._tasks.cancel(Task.TOKEN_STATS)
            return
        self._dataset.set_preview_format(prepared, loss_on)
        self._start_stats(prepared, loss_on)

    # ------------------------------------------------------------------ the prompt format
    def _start_format(self, key: FormatKey) -> None:
        if self._format_pending is not None:
            return  # one at a time (it cannot be cancelled); refresh() runs again when it ends
        from tinyforge_gui.workers.preview_tasks import PreviewFormatWorker

        worker = PreviewFormatWorker(*key)
        worker.succeeded.connect(self._on_format)
        worker.failed.connect(self._on_format_failed)
        worker.done.connect(self._on_format_done)
        self._format_pending = key
        self._tasks.start(worker)

    @Slot(object)
    def _on_format(self, prepared: PreparedFormat | None) -> None:
        if self._format_pending is not None:
            self._formats[self._format_pending] = prepared

    @Slot(str, str)
    def _on_format_failed(self, message: str, details: str) -> None:
        logger.warning("cannot read the prompt format of %s: %s", self._format_pending, message)
        if self._format_pending is not None:
            self._formats[self._format_pending] = message

    @Slot()
    def _on_format_done(self) -> None:
        self._format_pending = None
        self.refresh()

    # ------------------------------------------------------------------ token lengths
    def _start_stats(self, prepared: PreparedFormat, loss_on: str) -> None:
        report = self._state.dataset_report
        if report is None or not report.valid:
            self._stats_key = None
            self._tasks.cancel(Task.TOKEN_STATS)
            self._dataset.set_token_line("")
            return
        columns = self._state.dataset_columns
        key = (self._state.dataset_path, report.sha256, tuple(sorted((columns or {}).items())),
               prepared.base_model, prepared.max_length, loss_on)
        if key == self._stats_key:
            return
        self._tasks.cancel(Task.TOKEN_STATS)
        from tinyforge_gui.workers.preview_tasks import TokenStatsWorker

        worker = TokenStatsWorker(self._state.dataset_path, columns, prepared, loss_on)
        worker.key = key
        worker.succeeded.connect(self._on_stats)
        worker.failed.connect(self._on_stats_failed)
        self._stats_key = key
        self._dataset.set_token_line(f"tokens: measuring the training texts with {prepared.base_model}…")
        self._tasks.start(worker)

    def _is_current_stats(self) -> bool:
        return getattr(self.sender(), "key", None) == self._stats_key

    @Slot(object)
    def _on_stats(self, line: str) -> None:
        if self._is_current_stats():
            self._dataset.set_token_line(line or "tokens: no row to measure")

    @Slot(str, str)
    def _on_stats_failed(self, message: str, details: str) -> None:
        if self._is_current_stats():
            self._dataset.set_token_line(f"tokens: cannot measure ({message})")
