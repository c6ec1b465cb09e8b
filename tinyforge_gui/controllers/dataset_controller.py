"""Opening a dataset: check the file, preview its head at once, then index and validate it.

:class:`DatasetController` keeps the current dataset (its path and scan report) in the shared
:class:`~tinyforge_gui.state.StudioState`. Indexing and validation run on
:mod:`tinyforge_gui.workers.tasks` workers, one after the other; their plain-data signals arrive at this
object's slots in the GUI thread. It knows its panels, the task runner and the notifier, not
the window.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog

from tinyforge_gui.resources import example_path
from tinyforge_gui.state import StudioState, Task
from tinyforge_gui.workers.runner import TaskRunner, Worker

if TYPE_CHECKING:
    from tinyforge_gui.panels.dataset_panel import DatasetPanel
    from tinyforge_gui.panels.options_panel import OptionsPanel
    from tinyforge_gui.panels.studio_tabs import StudioTabs
    from tinyforge_gui.settings import AppSettings
    from tinyforge_gui.widgets.common import Notifier

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = {".jsonl", ".ndjson", ".jsonlines"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg", ".tif", ".tiff", ".ico"}
HEAD_ROWS = 200


def dataset_problem(path: Path) -> str:
    """Why ``path`` cannot be opened as a dataset, or "" when it looks like a JSONL file.

    The file checks are core's (the same reasons as ``foremforge validate``): a folder, a FIFO,
    a device, a link loop or an unreadable file is refused here, before anything opens it, so
    the window never blocks on a pipe or reads ``/dev/zero``.
    """
    from core.training.dataset_scan import DatasetFileError, DatasetNotFoundError, check_dataset_path

    try:
        check_dataset_path(path)
    except DatasetNotFoundError:
        return f"{path} does not exist."
    except DatasetFileError as exc:
        return f"“{path.name}” {exc.reason}."
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        return f"“{path.name}” is an image. TinyForge trains on .jsonl text files with input/output pairs."
    if suffix not in JSONL_SUFFIXES:
        kind = f"a {suffix} file" if suffix else "a file without an extension"
        return f"“{path.name}” is {kind}. TinyForge reads .jsonl files: one JSON object per line with input and output."
    return ""


class DatasetController(QObject):
    """Loads datasets into the Dataset tab and keeps their scan report in the state."""

    recent_changed = Signal()  # the recent-datasets list in the settings changed

    def __init__(self, tasks: TaskRunner, state: StudioState, notifier: Notifier, dataset: DatasetPanel,
                 options: OptionsPanel, tabs: StudioTabs, settings: AppSettings,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("datasetController")
        self._tasks, self._state, self._notify = tasks, state, notifier
        self._dataset, self._options, self._tabs, self._settings = dataset, options, tabs, settings

    @property
    def path(self) -> str:
        return self._state.dataset_path

    # ------------------------------------------------------------------ entry points
    @Slot()
    def open_dialog(self) -> None:
        start = str(Path(self.path).parent) if self.path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self._dataset.window(), "Open a dataset", start, "JSON Lines (*.jsonl *.ndjson *.jsonlines);;All files (*)"
        )
        if path:
            self.load(path)

    @Slot()
    def open_example(self) -> None:
        path = example_path("sample_qna.jsonl")
        if path is None:
            self._notify.show_message("error", "The bundled example dataset is missing from this installation.")
            return
        self.load(str(path))

    def load(self, path: str) -> bool:
        """Preview ``path`` at once, then index and validate it in the background."""
        p = Path(path).expanduser()
        problem = dataset_problem(p)
        if problem:
            self._notify.show_message("warning", problem)
            self._notify.status("Not a dataset: " + p.name, 8000)
            return False
        # line_index is light; core.training.dataset (pydantic models) loads in the workers.
        from core.training.line_index import read_head

        try:
            head = read_head(str(p), HEAD_ROWS)
        except (OSError, ValueError) as exc:
            self._notify.show_message("error", f"Cannot read “{p.name}”: {exc}")
            return False
        self._tasks.cancel(Task.INDEX)
        self._tasks.cancel(Task.VALIDATE)
        self._notify.hide_message()
        resolved = str(p.resolve())
        self._dataset.begin(resolved, head)
        self._tabs.setCurrentWidget(self._dataset)
        self._settings.add_recent_dataset(resolved)
        self.recent_changed.emit()
        self._state.update(dataset_path=resolved, dataset_report=None)
        self._start_scan(resolved)
        self._notify.status(f"Scanning {p.name}…")
        return True

    # ------------------------------------------------------------------ scan
    def _start_scan(self, path: str) -> None:
        """Index first (the table scrolls anywhere within a second), then validate the whole file.

        One after the other rather than side by side: two busy threads plus the GUI thread
        compete for the GIL and the window would stutter.
        """
        from tinyforge_gui.workers.tasks import IndexWorker

        index_worker = IndexWorker(path)
        index_worker.succeeded.connect(self._on_index_ready)
        index_worker.failed.connect(self._on_index_failed)
        index_worker.done.connect(self._start_validation)
        self._tasks.start(index_worker)

    @Slot()
    def _start_validation(self) -> None:
        if not self._is_current_scan() or self.sender().cancel_token.cancelled:  # type: ignore[union-attr]
            return
        from tinyforge_gui.workers.tasks import ValidateWorker

        validate = ValidateWorker(self.path)
        validate.progress.connect(self._dataset.on_scan_progress)
        validate.succeeded.connect(self._on_report)
        validate.failed.connect(self._on_scan_failed)
        self._tasks.start(validate)

    def _is_current_scan(self) -> bool:
        worker = self.sender()
        return isinstance(worker, Worker) and getattr(worker, "path", None) == self.path

    @Slot(object)
    def _on_index_ready(self, index: Any) -> None:
        if self._is_current_scan():
            self._dataset.set_index(index)

    @Slot(str, str)
    def _on_index_failed(self, message: str, details: str) -> None:
        logger.warning("index failed: %s", message)

    @Slot(object)
    def _on_report(self, report: dict[str, Any]) -> None:
        if not self._is_current_scan():
            return
        self._dataset.set_report(report)
        self._options.set_dataset_size(int(report.get("n_records") or 0) if report.get("valid") else None)
        name = Path(self.path).name
        if report.get("valid"):
            self._notify.status(f"{name}: {report.get('n_records', 0):,} records, ready to train.", 10000)
        else:
            n = report.get("n_problems", 0)
            self._notify.status(f"{name}: {n:,} problem(s) found.", 10000)
            self._notify.show_message("warning",
                                      f"“{name}” has {n:,} problem(s); fix them to train. Choose one to see its line.")
        self._state.update(dataset_report=report)

    @Slot(str, str)
    def _on_scan_failed(self, message: str, details: str) -> None:
        if not self._is_current_scan():
            return
        self._dataset.scan_failed(message)
        self._notify.show_message("error", f"Could not scan the dataset: {message}", details)
        self._state.update(dataset_report={"valid": False, "error": message})
