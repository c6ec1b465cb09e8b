"""Opening a dataset: check the file, preview its head at once, then index and validate it.

:class:`DatasetController` keeps the current dataset (its path, column mapping and scan report)
in the shared :class:`~tinyforge_gui.state.StudioState`. A JSONL file is indexed (read lazily);
a CSV/TSV/JSON table is read whole; then the file is validated. Each runs on a worker
(:mod:`tinyforge_gui.workers.tasks`, :mod:`tinyforge_gui.workers.preview_tasks`), one after the
other; their plain-data signals arrive at this object's slots in the GUI thread. Map columns…
names the question, answer and system columns and validates again. It knows its panels, the
task runner and the notifier, not the window.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot

from core.training.formats import UNKNOWN_FORMAT
from tinyforge_gui.resources import example_path
from tinyforge_gui.state import StudioState, Task, failed_scan_report
from tinyforge_gui.workers.runner import TaskRunner, Worker

if TYPE_CHECKING:
    from core.training.dataset_models import ValidationReport
    from tinyforge_gui.panels.columns_dialog import ColumnsDialog
    from tinyforge_gui.panels.dataset_panel import DatasetPanel
    from tinyforge_gui.panels.options_panel import OptionsPanel
    from tinyforge_gui.panels.studio_tabs import StudioTabs
    from tinyforge_gui.settings import AppSettings
    from tinyforge_gui.widgets.common import Notifier
    from tinyforge_gui.workers.preview_tasks import TableRows

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = {".jsonl", ".ndjson", ".jsonlines"}
FILE_FILTER = ("Datasets (*.jsonl *.ndjson *.jsonlines *.csv *.tsv *.tab *.json);;JSON Lines (*.jsonl *.ndjson "
               "*.jsonlines);;Tables (*.csv *.tsv *.tab);;JSON arrays (*.json);;All files (*)")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg", ".tif", ".tiff", ".ico"}
HEAD_ROWS = 200


def dataset_problem(path: Path) -> str:
    """Why ``path`` cannot be opened as a dataset, or "" when it looks like one (JSONL, CSV, TSV, JSON).

    The file checks are core's (the same reasons as ``foremforge validate``): a folder, a FIFO,
    a device, a link loop or an unreadable file is refused here, before anything opens it, so
    the window never blocks on a pipe or reads ``/dev/zero``.
    """
    from core.training.dataset_scan import DatasetFileError, DatasetNotFoundError, check_dataset_path
    from core.training.tables import TABLE_SUFFIXES  # CSV, TSV and JSON arrays

    try:
        check_dataset_path(path)
    except DatasetNotFoundError:
        return f"{path} does not exist."
    except DatasetFileError as exc:
        return f"“{path.name}” {exc.reason}."
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        return (f"“{path.name}” is an image. TinyForge trains on text datasets: .jsonl, .csv, .tsv or .json "
                "files of questions and answers.")
    if suffix not in JSONL_SUFFIXES and suffix not in TABLE_SUFFIXES:
        kind = f"a {suffix} file" if suffix else "a file without an extension"
        return (f"“{path.name}” is {kind}. TinyForge reads .jsonl (one JSON object per line), .csv, .tsv and "
                ".json (an array of objects) files of questions and answers.")
    return ""


# What "Try the example" loads: 40 support questions, enough for a first real run worth looking
# at (the three-record sample_qna.jsonl stays for TinyForgeAI's commands and tests, which use it).
EXAMPLE_DATASET = "customer_support.jsonl"


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
        self._column_names: list[str] = []  # the file's own columns (table header, first object's keys)
        self._first_row: dict[str, Any] = {}  # its first row, for the mapping dialog's examples
        self.columns_dialog: ColumnsDialog | None = None
        dataset.map_columns_requested.connect(self.map_columns)

    @property
    def path(self) -> str:
        return self._state.dataset_path

    # ------------------------------------------------------------------ entry points
    @Slot()
    def open_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog  # not at import: start-up never opens it

        start = str(Path(self.path).parent) if self.path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self._dataset.window(), "Open a dataset", start, FILE_FILTER
        )
        if path:
            self.load(path)

    @Slot()
    def open_example(self) -> None:
        path = example_path(EXAMPLE_DATASET)
        if path is None:
            self._notify.show_message("error", "The bundled example dataset is missing from this installation.")
            return
        self.load(str(path))

    def load(self, path: str, columns: dict[str, str] | None = None) -> bool:
        """Preview ``path`` at once, then index (or read) and validate it in the background;
        ``columns`` is a column mapping to read it with (a past run's)."""
        p = Path(path).expanduser()
        problem = dataset_problem(p)
        if problem:
            self._notify.show_message("warning", problem)
            self._notify.status("Not a dataset: " + p.name, 8000)
            return False
        # line_index and tables are light; core.training.dataset (pydantic models) loads in the workers.
        from core.training.line_index import read_head
        from core.training.tables import is_table

        table = is_table(p)
        try:
            head = [] if table else read_head(str(p), HEAD_ROWS)
        except (OSError, ValueError) as exc:
            self._notify.show_message("error", f"Cannot read “{p.name}”: {exc}")
            return False
        for task in (Task.INDEX, Task.TABLE, Task.VALIDATE, Task.TOKEN_STATS):
            self._tasks.cancel(task)
        self._notify.hide_message()
        resolved = str(p.resolve())
        columns = dict(columns) if columns else None
        self._column_names, self._first_row = ([], {}) if table else _head_keys(head)
        self._dataset.begin(resolved, head, columns)
        self._tabs.setCurrentWidget(self._dataset)
        self._settings.add_recent_dataset(resolved)
        self.recent_changed.emit()
        self._state.update(dataset_path=resolved, dataset_report=None, dataset_columns=columns)
        self._update_map_button()
        self._start_scan(resolved, table)
        self._notify.status(f"Scanning {p.name}…")
        return True

    # ------------------------------------------------------------------ scan
    def _start_scan(self, path: str, table: bool) -> None:
        """Index a JSONL file (the table scrolls anywhere within a second) or read a table's rows,
        then validate the whole file.

        One after the other rather than side by side: two busy threads plus the GUI thread
        compete for the GIL and the window would stutter.
        """
        from tinyforge_gui.workers.preview_tasks import TableWorker
        from tinyforge_gui.workers.tasks import IndexWorker

        worker: Worker
        if table:
            worker = TableWorker(path)
            worker.succeeded.connect(self._on_table_ready)
        else:
            worker = IndexWorker(path)
            worker.succeeded.connect(self._on_index_ready)
        worker.failed.connect(self._on_index_failed)
        worker.done.connect(self._after_rows)
        self._tasks.start(worker)

    @Slot()
    def _after_rows(self) -> None:
        if not self._is_current_scan() or self.sender().cancel_token.cancelled:  # type: ignore[union-attr]
            return
        self._start_validation()

    def _start_validation(self) -> None:
        from tinyforge_gui.workers.tasks import ValidateWorker

        validate = ValidateWorker(self.path, self._state.dataset_columns)
        validate.progress.connect(self._dataset.on_scan_progress)
        validate.succeeded.connect(self._on_report)
        validate.failed.connect(self._on_scan_failed)
        self._tasks.start(validate)

    def _is_current_scan(self) -> bool:
        """The signal comes from a worker of the dataset shown (and, for a validation, of the
        column mapping in use)."""
        worker = self.sender()
        if not isinstance(worker, Worker) or getattr(worker, "path", None) != self.path:
            return False
        return not hasattr(worker, "columns") or worker.columns == self._state.dataset_columns

    @Slot(object)
    def _on_index_ready(self, index: Any) -> None:
        if self._is_current_scan():
            self._dataset.set_index(index)

    @Slot(object)
    def _on_table_ready(self, table: TableRows) -> None:
        if not self._is_current_scan():
            return
        self._column_names = list(table.names)
        self._first_row = next((dict(v) for _, v in table.rows if isinstance(v, dict)), {})
        self._dataset.set_table(table.rows)
        self._update_map_button()

    @Slot(str, str)
    def _on_index_failed(self, message: str, details: str) -> None:
        logger.warning("index failed: %s", message)

    @Slot(object)
    def _on_report(self, report: ValidationReport) -> None:
        if not self._is_current_scan():
            return
        from core.training.dataset_preview import format_lines

        self._dataset.set_report(report)
        self._dataset.set_format_lines(format_lines(report, self._state.dataset_columns))
        self._options.set_dataset_size(report.n_records if report.valid else None)
        name = Path(self.path).name
        if report.valid:
            self._notify.status(f"{name}: {report.n_records:,} records, ready to train.", 10000)
        else:
            n = report.n_problems
            self._notify.status(f"{name}: {n:,} problem(s) found.", 10000)
            if report.problem_counts.get(UNKNOWN_FORMAT) and self._column_names:
                self._notify.show_message("warning", f"No data format fits the columns of “{name}”: choose Map "
                                                     "columns… to name the question and answer columns.")
            else:
                self._notify.show_message("warning", f"“{name}” has {n:,} problem(s); fix them to train. Choose one "
                                                     "to see its line.")
        self._state.update(dataset_report=report)
        self._update_map_button()

    # ------------------------------------------------------------------ Map columns…
    def needs_columns(self) -> bool:
        """The scan found rows whose keys fit no format: only a column mapping reads them."""
        report = self._state.dataset_report
        return report is not None and bool(report.problem_counts.get(UNKNOWN_FORMAT))

    def _update_map_button(self) -> None:
        from core.training.tables import is_table

        table = bool(self.path) and is_table(self.path)
        mapped = self._state.dataset_columns
        wanted = self.needs_columns()
        enabled = bool(self._column_names) and (table or wanted or bool(mapped))
        if not self._column_names:
            tip = "Map columns needs the file's column names (its header, or its first object's keys)"
        elif mapped:
            from core.training.formats import describe_columns

            tip = f"Read as: {describe_columns(mapped)}. Choose other columns, or the file's own keys"
        elif wanted:
            tip = "No format fits the file's columns: name the question and answer columns"
        elif table:
            tip = "Choose which columns hold the question, the answer and the system message"
        else:
            tip = "The rows fit a format by their own keys; nothing to map"
        self._dataset.set_map_columns(enabled, tip, wanted and not mapped)

    @Slot()
    def map_columns(self) -> None:
        """Open the Map columns dialog (window-modal; :meth:`_on_columns_chosen` takes the answer)."""
        if not self._column_names:
            self._notify.show_message("info", "The file's column names are not known yet; wait for the scan.")
            return
        from tinyforge_gui.panels.columns_dialog import ColumnsDialog

        dialog = ColumnsDialog(self._column_names, self._state.dataset_columns, self._first_row,
                               self._dataset.window())
        dialog.finished.connect(self._on_columns_chosen)
        self.columns_dialog = dialog
        dialog.open()

    @Slot(int)
    def _on_columns_chosen(self, result: int) -> None:
        dialog, self.columns_dialog = self.columns_dialog, None
        if dialog is None:
            return
        dialog.deleteLater()
        from PySide6.QtWidgets import QDialog

        if result == QDialog.DialogCode.Accepted:
            self.apply_columns(dialog.mapping() or None)

    def apply_columns(self, columns: dict[str, str] | None) -> None:
        """Read the current dataset with ``columns`` (None: its own keys) and validate it again."""
        if not self.path:
            return
        columns = dict(columns) if columns else None
        if columns == self._state.dataset_columns and self._state.dataset_report is not None:
            return
        self._tasks.cancel(Task.VALIDATE)
        self._tasks.cancel(Task.TOKEN_STATS)
        self._notify.hide_message()
        self._state.update(dataset_columns=columns, dataset_report=None)
        self._dataset.begin_scan()
        self._dataset.set_columns(columns)
        self._update_map_button()
        if self._tasks.is_working(Task.INDEX) or self._tasks.is_working(Task.TABLE):
            return  # the rows are still being read; the validation follows them with these columns
        self._start_validation()
        self._notify.status(f"Checking {Path(self.path).name} with the chosen columns…")

    @Slot(str, str)
    def _on_scan_failed(self, message: str, details: str) -> None:
        if not self._is_current_scan():
            return
        self._dataset.scan_failed(message)
        self._update_map_button()
        self._notify.show_message("error", f"Could not scan the dataset: {message}", details)
        self._state.update(dataset_report=failed_scan_report(self.path, message))


def _head_keys(head: list[tuple[int, str]]) -> tuple[list[str], dict[str, Any]]:
    """A JSONL file's column names: the keys of its first JSON object (and that object)."""
    import json

    for _, raw in head[:20]:
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            return [str(k) for k in value], value
    return [], {}
