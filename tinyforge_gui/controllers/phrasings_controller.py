"""Question variants in the Dataset tab: write them, drop bad ones, export them.

The variants are the ones the next real run of the loaded dataset trains on: the same options
(base model, variants, seed), the same cache, and the dropped phrasings are remembered beside
that cache, so a run leaves them out too (:mod:`core.training.variants`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Slot

from tinyforge_gui.state import StudioState, Task
from tinyforge_gui.workers.runner import TaskRunner

if TYPE_CHECKING:
    from tinyforge_gui.panels.dataset_panel import DatasetPanel
    from tinyforge_gui.panels.options_panel import OptionsPanel
    from tinyforge_gui.widgets.common import Notifier

logger = logging.getLogger(__name__)


class PhrasingsController(QObject):
    """Starts the variants worker for the loaded dataset and keeps its result for the panel."""

    def __init__(self, tasks: TaskRunner, state: StudioState, notifier: Notifier, dataset: DatasetPanel,
                 options: OptionsPanel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("phrasingsController")
        self._tasks, self._state, self._notify = tasks, state, notifier
        self._dataset, self._options = dataset, options
        self.variant_set: Any = None
        box = dataset.phrasings
        box.write_requested.connect(self.write)
        box.cancel_requested.connect(self.cancel)
        box.export_requested.connect(self.export_dialog)
        box.dropped_changed.connect(self._save_dropped)

    @Slot()
    def write(self) -> None:
        """Write (or read from the cache) the variants of the loaded dataset, in the background."""
        report = self._state.dataset_report
        if not self._state.dataset_path or report is None or not report.valid:
            self._notify.show_message("warning", "Open a valid dataset first: its questions get the variants.")
            return
        if self._tasks.is_busy(Task.VARIANTS):
            return
        from tinyforge_gui.workers.tasks import VariantsWorker

        train = {**self._options.to_dict()["train"], "data_path": self._state.dataset_path, "output_dir": "-",
                 "columns": self._state.dataset_columns, "dry_run": False}
        if train.get("variants") == 0:
            self._notify.show_message("info", "Question variants are off in the options (Variants: off).")
            return
        worker = VariantsWorker(train)
        worker.progress.connect(self._dataset.phrasings.on_progress)
        worker.succeeded.connect(self._on_written)
        worker.failed.connect(self._on_failed)
        worker.done.connect(self._on_done)
        self._dataset.phrasings.set_busy(True)
        self._notify.status("Writing question variants…")
        self._tasks.start(worker)

    @Slot()
    def cancel(self) -> None:
        self._tasks.cancel(Task.VARIANTS)

    @Slot(object)
    def _on_written(self, variant_set: Any) -> None:
        from core.training.variants import read_dropped, variant_rows

        self.variant_set = variant_set
        self._dataset.show_phrasings(variant_rows(variant_set), read_dropped(variant_set.cache_file),
                                     variant_set.summary())
        self._notify.status(variant_set.summary(), 10000)

    @Slot(str, str)
    def _on_failed(self, message: str, details: str) -> None:
        self._notify.show_message("error", f"Could not write the variants: {message}", details)

    @Slot()
    def _on_done(self) -> None:
        self._dataset.phrasings.set_busy(False)

    @Slot(str, bool)
    def _save_dropped(self, *_: object) -> None:
        if self.variant_set is None:
            return
        from core.training.variants import save_dropped

        try:
            save_dropped(self.variant_set.cache_file, self._dataset.phrasings.dropped)
        except (OSError, ValueError) as exc:
            self._notify.show_message("error", f"Could not remember the dropped phrasing: {exc}")

    @Slot()
    def export_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog  # not at import: start-up never opens it

        start = Path(self._state.dataset_path or Path.home())
        suggested = str(start.with_name(f"{start.stem}.phrasings.jsonl")) if self._state.dataset_path else ""
        path, _ = QFileDialog.getSaveFileName(self._dataset.window(), "Export the phrasings", suggested,
                                              "JSON Lines (*.jsonl)")
        if path:
            self.export(path)

    def export(self, path: str) -> bool:
        """Every kept phrasing with its answer as ``{"input", "output"}`` lines in ``path``."""
        from core.training.variants import write_training_jsonl

        rows = self._dataset.phrasings.kept_rows()
        try:
            write_training_jsonl(path, rows)
        except OSError as exc:
            self._notify.show_message("error", f"Could not export the phrasings to {path}: {exc.strerror or exc}")
            return False
        self._notify.status(f"Exported {len(rows)} phrasings to {path}", 10000)
        return True
