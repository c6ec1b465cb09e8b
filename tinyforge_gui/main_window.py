"""The main window: composes the panels and drives core on worker threads.

Layout: options on the left; on the right the Dataset and Artifacts tabs above the run panel
(actions, progress, log, loss chart). Work happens in :mod:`tinyforge_gui.tasks` workers on
QThreads; this class only reacts to their plain-data signals.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui import APPLICATION
from tinyforge_gui.artifacts_panel import ArtifactsPanel
from tinyforge_gui.dataset_panel import DatasetPanel
from tinyforge_gui.export_panel import ExportPanel
from tinyforge_gui.options_panel import OptionsPanel
from tinyforge_gui.playground_panel import PlaygroundPanel
from tinyforge_gui.resources import app_icon_path, example_path
from tinyforge_gui.run_panel import RunPanel
from tinyforge_gui.settings import AppSettings
from tinyforge_gui.studio_tasks import ServiceHandle
from tinyforge_gui.widgets import MessageBar, make_icon
from tinyforge_gui.workers import TaskRunner, Worker

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = {".jsonl", ".ndjson", ".jsonlines"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg", ".tif", ".tiff", ".ico"}
HEAD_ROWS = 200


def dataset_problem(path: Path) -> str:
    """Why ``path`` cannot be opened as a dataset, or "" when it looks like a JSONL file."""
    if not path.exists():
        return f"{path} does not exist."
    if path.is_dir():
        return f"“{path.name}” is a folder. Drop a .jsonl file (one JSON object per line) instead."
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        return f"“{path.name}” is an image. TinyForge trains on .jsonl text files with input/output pairs."
    if suffix not in JSONL_SUFFIXES:
        kind = f"a {suffix} file" if suffix else "a file without an extension"
        return f"“{path.name}” is {kind}. TinyForge reads .jsonl files: one JSON object per line with input and output."
    return ""


class MainWindow(QMainWindow):
    """TinyForge Studio's main window (constructible with no arguments)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle(APPLICATION)
        self.setWindowIcon(QIcon(app_icon_path()))
        self.setAcceptDrops(True)
        self.settings = AppSettings()
        self.tasks = TaskRunner(self)
        self.dataset_path: str = ""
        self.dataset_report: dict[str, Any] | None = None
        self.current_run: str = ""
        self.last_run: str = ""
        self.run_status: str = ""
        self._run_actions: list[str] = []
        self._last_artifact: str = ""
        self._closing = False
        self.service = ServiceHandle()
        self.service_state = "stopped"
        self.estimate: dict[str, Any] | None = None
        self._playground_request = 0
        self._help_dialog: QWidget | None = None
        self._build_ui()
        self._build_menus()
        self._restore_settings()
        self._update_actions()
        self.statusBar().showMessage("Drop a .jsonl dataset or open the example to start.")

    # ------------------------------------------------------------------ construction
    def _build_ui(self) -> None:
        self.options = OptionsPanel()
        self.options.changed.connect(self._on_options_changed)
        self.options.lora_targets_wanted.connect(self._start_lora_targets)
        self.dataset = DatasetPanel()
        self.dataset.open_requested.connect(self.open_dialog)
        self.dataset.example_requested.connect(self.open_example)
        self.artifacts = ArtifactsPanel()
        self.artifacts.load_options_requested.connect(self.load_run_options)
        self.artifacts.run_selected.connect(self._on_run_selected)
        self.run_panel = RunPanel()
        self.run_panel.train_clicked.connect(self.start_train)
        self.run_panel.export_clicked.connect(self.start_export)
        self.run_panel.train_export_clicked.connect(self.start_train_export)
        self.run_panel.cancel_clicked.connect(self.cancel_run)
        self.run_panel.resume_clicked.connect(self.start_resume)
        self.run_panel.estimate_clicked.connect(self.start_estimate)
        self.export_panel = ExportPanel()
        self.export_panel.open_json_requested.connect(self._open_report_json)
        self.export_panel.service_toggled.connect(self.toggle_service)
        self.playground = PlaygroundPanel()
        self.playground.ask_requested.connect(self._ask_playground)
        QShortcut(QKeySequence("Ctrl+Enter"), self, self.start_train_export)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("mainTabs")
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.dataset, make_icon("dataset"), "Dataset")
        self.tabs.addTab(self.artifacts, make_icon("folder"), "Artifacts")
        self.tabs.addTab(self.export_panel, make_icon("export"), "Export")
        self.tabs.addTab(self.playground, make_icon("train"), "Playground")

        self.right_split = QSplitter(Qt.Orientation.Vertical)
        self.right_split.setObjectName("rightSplitter")
        self.right_split.addWidget(self.tabs)
        self.right_split.addWidget(self.run_panel)
        self.right_split.setStretchFactor(0, 3)
        self.right_split.setStretchFactor(1, 1)
        self.right_split.setSizes([520, 240])

        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.setObjectName("mainSplitter")
        self.main_split.addWidget(self.options)
        self.main_split.addWidget(self.right_split)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setSizes([330, 950])

        self.message = MessageBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.setSpacing(6)
        layout.addWidget(self.message)
        layout.addWidget(self.main_split, 1)
        self.setCentralWidget(central)
        self.status_right = QLabel()
        self.status_right.setObjectName("statusRight")
        self.statusBar().addPermanentWidget(self.status_right)
        self.resize(1280, 820)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_action = QAction(make_icon("open"), "&Open dataset…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_action.triggered.connect(self.open_dialog)
        file_menu.addAction(self.open_action)
        self.recent_menu = QMenu("Open &recent", self)
        self.recent_menu.setObjectName("recentMenu")
        file_menu.addMenu(self.recent_menu)
        example = QAction(make_icon("example"), "Open the &example dataset", self)
        example.triggered.connect(self.open_example)
        file_menu.addAction(example)
        file_menu.addSeparator()
        out = QAction(make_icon("folder"), "Open the output &folder", self)
        out.triggered.connect(self._open_output_folder)
        file_menu.addAction(out)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        run_menu = self.menuBar().addMenu("&Run")
        for icon, text, slot in (
            ("train", "&Train", self.start_train),
            ("export", "&Export", self.start_export),
            ("train-export", "Train → E&xport\tCtrl+Enter", self.start_train_export),
            ("cancel", "&Cancel\tEsc", self.cancel_run),
        ):
            action = QAction(make_icon(icon), text, self)
            action.triggered.connect(slot)
            run_menu.addAction(action)

        help_menu = self.menuBar().addMenu("&Help")
        self.guide_action = QAction("&User guide", self)
        self.guide_action.setObjectName("userGuideAction")
        self.guide_action.setShortcut(QKeySequence.StandardKey.HelpContents)
        if self.guide_action.shortcut().isEmpty():
            self.guide_action.setShortcut(QKeySequence("F1"))
        self.guide_action.triggered.connect(self.show_user_guide)
        help_menu.addAction(self.guide_action)
        self.about_action = QAction("&About TinyForge Studio", self)
        self.about_action.setObjectName("aboutAction")
        self.about_action.triggered.connect(self._about)
        help_menu.addAction(self.about_action)
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_datasets()
        for path in recent:
            action = QAction(Path(path).name, self.recent_menu)
            action.setToolTip(path)
            action.setData(path)
            action.triggered.connect(self._open_recent)
            self.recent_menu.addAction(action)
        if recent:
            self.recent_menu.addSeparator()
            clear = QAction("Clear the list", self.recent_menu)
            clear.triggered.connect(self._clear_recent)
            self.recent_menu.addAction(clear)
        self.recent_menu.setEnabled(bool(recent))

    # ------------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        for key, splitter in self._splitters().items():
            value = s.value(f"splitters/{key}")
            if isinstance(value, QByteArray) and not value.isEmpty():
                splitter.restoreState(value)
        options = s.options()
        if options:
            self.options.load_dict(options)

    def _splitters(self) -> dict[str, QSplitter]:
        return {
            "main": self.main_split,
            "right": self.right_split,
            "dataset": self.dataset.split,
            "artifacts": self.artifacts.split,
        }

    def save_settings(self) -> None:
        s = self.settings
        s.set_value("window/geometry", self.saveGeometry())
        s.set_value("window/state", self.saveState())
        for key, splitter in self._splitters().items():
            s.set_value(f"splitters/{key}", splitter.saveState())
        s.set_options(self.options.to_dict())
        s.sync()

    @Slot()
    def _on_options_changed(self) -> None:
        self._update_actions()

    # ------------------------------------------------------------------ dataset
    @Slot()
    def open_dialog(self) -> None:
        start = str(Path(self.dataset_path).parent) if self.dataset_path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a dataset", start, "JSON Lines (*.jsonl *.ndjson *.jsonlines);;All files (*)"
        )
        if path:
            self.load_dataset(path)

    @Slot()
    def open_example(self) -> None:
        path = example_path("sample_qna.jsonl")
        if path is None:
            self.show_message("error", "The bundled example dataset is missing from this installation.")
            return
        self.load_dataset(str(path))

    @Slot()
    def _open_recent(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.load_dataset(str(action.data()))

    @Slot()
    def _clear_recent(self) -> None:
        self.settings.clear_recent()
        self._rebuild_recent_menu()

    def load_dataset(self, path: str) -> bool:
        """Preview ``path`` at once, then index and validate it in the background."""
        p = Path(path).expanduser()
        problem = dataset_problem(p)
        if problem:
            self.show_message("warning", problem)
            self.statusBar().showMessage("Not a dataset: " + p.name, 8000)
            return False
        try:
            # line_index is light; core.training.dataset (pydantic models) loads in the workers.
            from core.training.line_index import read_head
        except ImportError:
            try:
                from core.training.dataset import read_head
            except ImportError as exc:
                self.show_message("error", "Dataset support is not available in this build yet.", repr(exc))
                return False
        try:
            head = read_head(str(p), HEAD_ROWS)
        except (OSError, ValueError) as exc:
            self.show_message("error", f"Cannot read “{p.name}”: {exc}")
            return False
        self.tasks.cancel("index")
        self.tasks.cancel("validate")
        self.message.hide()
        self.dataset_path = str(p.resolve())
        self.dataset_report = None
        self.dataset.begin(self.dataset_path, head)
        self.tabs.setCurrentWidget(self.dataset)
        self.settings.add_recent_dataset(self.dataset_path)
        self._rebuild_recent_menu()
        self._start_scan(self.dataset_path)
        self.statusBar().showMessage(f"Scanning {p.name}…")
        self._update_actions()
        return True

    def _start_scan(self, path: str) -> None:
        """Index first (the table scrolls anywhere within a second), then validate the whole file.

        One after the other rather than side by side: two busy threads plus the GUI thread
        compete for the GIL and the window would stutter.
        """
        from tinyforge_gui.tasks import IndexWorker

        index_worker = IndexWorker(path)
        index_worker.succeeded.connect(self._on_index_ready)
        index_worker.failed.connect(self._on_index_failed)
        index_worker.done.connect(self._start_validation)
        self.tasks.start(index_worker)

    @Slot()
    def _start_validation(self) -> None:
        if not self._is_current_scan() or self.sender().cancel_token.cancelled:  # type: ignore[union-attr]
            return
        from tinyforge_gui.tasks import ValidateWorker

        validate = ValidateWorker(self.dataset_path)
        validate.progress.connect(self.dataset.on_scan_progress)
        validate.succeeded.connect(self._on_report)
        validate.failed.connect(self._on_scan_failed)
        self.tasks.start(validate)

    def _is_current_scan(self) -> bool:
        worker = self.sender()
        return isinstance(worker, Worker) and getattr(worker, "path", None) == self.dataset_path

    @Slot(object)
    def _on_index_ready(self, index: Any) -> None:
        if self._is_current_scan():
            self.dataset.set_index(index)

    @Slot(str, str)
    def _on_index_failed(self, message: str, details: str) -> None:
        logger.warning("index failed: %s", message)

    @Slot(object)
    def _on_report(self, report: dict[str, Any]) -> None:
        if not self._is_current_scan():
            return
        self.dataset_report = report
        self.dataset.set_report(report)
        name = Path(self.dataset_path).name
        if report.get("valid"):
            self.statusBar().showMessage(f"{name}: {report.get('n_records', 0):,} records, ready to train.", 10000)
        else:
            n = report.get("n_problems", 0)
            self.statusBar().showMessage(f"{name}: {n:,} problem(s) found.", 10000)
            self.show_message("warning", f"“{name}” has {n:,} problem(s); fix them to train. Choose one to see its line.")
        self._update_actions()

    @Slot(str, str)
    def _on_scan_failed(self, message: str, details: str) -> None:
        if not self._is_current_scan():
            return
        self.dataset.scan_failed(message)
        self.dataset_report = {"valid": False, "error": message}
        self.show_message("error", f"Could not scan the dataset: {message}", details)
        self._update_actions()

    # ------------------------------------------------------------------ action state
    def _train_block_reason(self) -> str:
        if self.tasks.is_busy("run"):
            return "A run is in progress."
        if not self.dataset_path:
            return "Open a dataset first (drop a .jsonl file or use File → Open)."
        if self.dataset_report is None:
            return "Waiting for the dataset scan to finish."
        if not self.dataset_report.get("valid"):
            if self.dataset_report.get("error"):
                return f"The dataset could not be scanned: {self.dataset_report['error']}"
            n = self.dataset_report.get("n_problems", 0)
            return f"The dataset has {n:,} problem(s); fix them first (see the Problems list)."
        return ""

    def export_source(self) -> str:
        """The run whose model Export uses: the selected run, else the last run, if it has a model."""
        for candidate in (self.artifacts.selected_run(), self.last_run):
            if candidate and (Path(candidate) / "model").is_dir():
                return candidate
        return ""

    def _export_block_reason(self) -> str:
        if self.tasks.is_busy("run"):
            return "A run is in progress."
        if not self.export_source():
            return "Train first, or select a finished run in the Artifacts tab."
        return ""

    def _update_actions(self) -> None:
        busy = self.tasks.is_busy("run")
        train_reason = self._train_block_reason()
        rp = self.run_panel
        rp.train.setEnabled(not train_reason)
        rp.train_export.setEnabled(not train_reason)
        rp.train.setToolTip(train_reason or "Train a model on the dataset (dry run or real)")
        rp.train_export.setToolTip(train_reason or "Train, then export, in one run (Ctrl+Enter)")
        export_reason = self._export_block_reason()
        rp.export.setEnabled(not export_reason)
        source = self.export_source()
        rp.export.setToolTip(export_reason or f"Export the model of {Path(source).name} to a service")
        estimating = self.tasks.is_busy("estimate")
        real = not self.options.to_dict()["train"]["dry_run"]
        estimate_reason = train_reason or ("" if real else "Estimate is for real training: untick Dry run.")
        if estimating:
            estimate_reason = "Estimating…"
        rp.estimate.setEnabled(not estimate_reason)
        rp.estimate.setToolTip(estimate_reason or "Train a few real steps and project the whole run's duration "
                               "and peak memory")
        from tinyforge_gui.tasks import resumable

        selected = self.artifacts.selected_run()
        can_resume = not busy and resumable(selected)
        rp.resume.setEnabled(can_resume)
        rp.resume.setToolTip(f"Continue {Path(selected).name} from its checkpoint" if can_resume else
                             "Select a cancelled real run (it keeps a checkpoint) to continue it")
        rp.set_busy(busy or estimating)
        self.options.setEnabled(not busy and not estimating)
        self._update_service_button()
        self.status_right.setText(self.options.output_root())

    # ------------------------------------------------------------------ runs
    @Slot()
    def start_train(self) -> None:
        self._start_run(["train"])

    @Slot()
    def start_train_export(self) -> None:
        self._start_run(["train", "export"])

    @Slot()
    def start_resume(self) -> None:
        """Continue the selected cancelled real run from its checkpoint (same options, same folder)."""
        from tinyforge_gui.tasks import resumable

        run_dir = self.artifacts.selected_run()
        if not resumable(run_dir) or self.tasks.is_busy("run"):
            self.show_message("info", "Select a cancelled real run that kept a checkpoint to resume it.")
            return
        try:
            import json

            with open(Path(run_dir) / "run.json", encoding="utf-8") as handle:
                actions = list((json.load(handle).get("options") or {}).get("actions") or ["train"])
        except (OSError, ValueError) as exc:
            self.show_message("error", f"Cannot read the run's options: {exc}")
            return
        self._start_run(actions, existing_run=run_dir, resume=True)

    @Slot()
    def start_export(self) -> None:
        reason = self._export_block_reason()
        if reason:
            self.show_message("info", reason)
            return
        self._start_run(["export"], existing_run=self.export_source())

    def build_run_options(self, actions: list[str]) -> dict[str, Any]:
        """The ``RunOptions`` dict for ``actions`` from the form and the current dataset."""
        form = self.options.to_dict()
        train = dict(form["train"])
        train.update({"data_path": self.dataset_path, "output_dir": ""})
        return {"actions": actions, "train": train, "export": form["export"]}

    def _start_run(self, actions: list[str], existing_run: str | None = None, resume: bool = False) -> bool:
        if "train" in actions and not resume:
            reason = self._train_block_reason()
            if reason:
                self.show_message("info", reason)
                return False
        if self.tasks.is_busy("run"):
            return False
        from tinyforge_gui.tasks import RunWorker

        options = self.build_run_options(actions)
        if existing_run:
            try:
                import json

                with open(Path(existing_run) / "run.json", encoding="utf-8") as handle:
                    past = json.load(handle).get("options") or {}
                options["train"] = past.get("train", options["train"])
            except (OSError, ValueError):
                pass
        root = self.options.output_root()
        try:
            self.artifacts.set_root(root)
        except OSError as exc:
            self.show_message("error", f"Cannot use the output folder {root}: {exc}")
            return False
        sha = (self.dataset_report or {}).get("sha256")
        worker = RunWorker(options, root, dataset_sha256=sha, existing_run=existing_run, resume=resume)
        worker.run_created.connect(self._on_run_created)
        worker.stage.connect(self.run_panel.on_stage)
        worker.stage.connect(self._on_stage_log)
        worker.progress.connect(self.run_panel.on_progress)
        worker.log.connect(self.run_panel.log.append)
        worker.metric.connect(self.run_panel.chart.add_metric)
        worker.metric.connect(self.run_panel.on_metric)
        worker.stage.connect(self.export_panel.on_stage)
        worker.progress.connect(self.export_panel.on_progress)
        worker.metric.connect(self._on_metric)
        worker.artifact.connect(self._on_artifact)
        worker.failed.connect(self._on_run_failed)
        worker.cancelled.connect(self._on_run_cancelled)
        worker.succeeded.connect(self._on_run_result)
        worker.done.connect(self._on_run_done)
        self._run_actions = list(actions)
        self.run_status = "running"
        self._last_artifact = ""
        self.message.hide()
        title = ("Resume " if resume else "") + " → ".join(a.capitalize() for a in actions)
        mode = "dry run" if options["train"].get("dry_run") else str(options["train"].get("base_model"))
        self.run_panel.start(actions, title)
        self.run_panel.log.append("info", f"{title} started ({mode}) on {Path(self.dataset_path).name or '-'}")
        if any(a == "train" for a in actions) and not options["train"].get("dry_run"):
            self.run_panel.tabs.setCurrentWidget(self.run_panel.chart)
        self.tasks.start(worker)
        self.settings.set_options(self.options.to_dict())
        self.statusBar().showMessage(f"{title} running…")
        self._update_actions()
        return True

    @Slot(str)
    def _on_run_created(self, run_dir: str) -> None:
        self.current_run = run_dir
        if "export" in self._run_actions:
            self.export_panel.begin(run_dir)
        self.run_panel.log.append("info", f"run folder: {run_dir}")
        self.artifacts.refresh_runs()
        self.artifacts.select_run(run_dir)

    @Slot(str, str)
    def _on_stage_log(self, stage: str, message: str) -> None:
        self.run_panel.log.append("info", f"▶ {stage}: {message}" if message else f"▶ {stage}")

    @Slot(int, dict)
    def _on_metric(self, step: int, values: dict[str, float]) -> None:
        text = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        self.run_panel.log.append("debug", f"step {step}: {text}")

    @Slot(str)
    def _on_artifact(self, path: str) -> None:
        self.run_panel.log.append("success", f"wrote {path}")
        if path.endswith(".json"):
            self._last_artifact = path

    @Slot(str, str)
    def _on_run_failed(self, message: str, details: str) -> None:
        self.run_status = "failed"
        self.run_panel.log.append("error", message)
        self.show_message("error", f"The run failed: {message}", details)

    @Slot()
    def _on_run_cancelled(self) -> None:
        self.run_status = "cancelled"

    @Slot(object)
    def _on_run_result(self, result: dict[str, Any]) -> None:
        self.run_status = str(result.get("status", "completed"))
        self.current_run = str(result.get("run_dir") or self.current_run)

    @Slot()
    def _on_run_done(self) -> None:
        status = self.run_status if self.run_status != "running" else "failed"
        self.run_status = status
        self.last_run = self.current_run or self.last_run
        self.run_panel.finish(status)
        level = {"completed": "success", "cancelled": "warning"}.get(status, "error")
        self.run_panel.log.append(level, f"run {status}")
        self.run_panel.log.flush()
        if "export" in self._run_actions:
            self.export_panel.finish(status)
        from tinyforge_gui.tasks import resumable

        if status == "cancelled" and resumable(self.current_run):
            self.show_message("warning", "The run was cancelled; its checkpoint was kept. Select the run and "
                              "press Resume to continue it.")
        elif status == "cancelled":
            self.show_message("warning", "The run was cancelled; its partial output was removed.")
        elif status == "completed":
            self.statusBar().showMessage(f"Run completed: {self.last_run}", 15000)
        self.artifacts.refresh_runs()
        if self.last_run:
            self.artifacts.select_run(self.last_run)
        # _update_actions runs once the thread is gone (is_busy is then False).
        QTimer.singleShot(0, self._after_run)

    @Slot()
    def _after_run(self) -> None:
        if self.tasks.is_busy("run"):
            QTimer.singleShot(20, self._after_run)
            return
        self._update_actions()
        if self.run_status == "completed":
            target = self._best_artifact()
            if target:
                self.artifacts.show_path(target)
            self._on_run_selected(self.last_run)
            real_export = "export" in self._run_actions and (self.export_panel.report or {}).get("model_stub") is False
            self.tabs.setCurrentWidget(self.export_panel if real_export else self.artifacts)

    def _best_artifact(self) -> str:
        run = Path(self.last_run) if self.last_run else None
        if run is None:
            return ""
        for candidate in (
            run / "service" / "export_report.json",
            run / "service" / "model_metadata.json",
            run / "model" / "model_stub.json",
            run / "model" / "model_manifest.json",
        ):
            if candidate.is_file() and ("export" in self._run_actions or candidate.parent.name == "model"):
                return str(candidate)
        return self._last_artifact

    @Slot()
    def cancel_run(self) -> None:
        if self.tasks.is_busy("estimate"):
            self.tasks.cancel("estimate")
            self.run_panel.show_estimate("Stopping the estimate…")
        if self.tasks.is_busy("run"):
            self.tasks.cancel("run")
            self.run_panel.log.append("warning", "cancelling at the next step…")
            self.run_panel.progress.setFormat("Cancelling…")
            self.statusBar().showMessage("Cancelling…")

    @Slot(str)
    def _on_run_selected(self, run_dir: str) -> None:
        if not self.tasks.is_busy("run"):
            self.export_panel.show_run(run_dir)
        self.playground.set_run(run_dir)
        self._update_actions()

    # ------------------------------------------------------------------ LoRA targets, estimate
    @Slot(str)
    def _start_lora_targets(self, base_model: str) -> None:
        from tinyforge_gui.studio_tasks import LoraTargetsWorker

        self.tasks.cancel("lora-targets")
        worker = LoraTargetsWorker(base_model)
        worker.succeeded.connect(self._on_lora_targets)
        worker.failed.connect(self._on_lora_targets_failed)
        self.tasks.start(worker)

    @Slot(object)
    def _on_lora_targets(self, result: dict[str, Any]) -> None:
        self.options.set_lora_suggestions(result)

    @Slot(str, str)
    def _on_lora_targets_failed(self, message: str, details: str) -> None:
        worker = self.sender()
        self.options.lora_targets_failed(str(getattr(worker, "base_model", "")), message)

    @Slot()
    def start_estimate(self) -> None:
        """Train a few real steps in a temp folder and show the projected run (never blocks)."""
        reason = self._train_block_reason()
        if reason or self.tasks.is_busy("estimate"):
            if reason:
                self.show_message("info", reason)
            return
        from tinyforge_gui.studio_tasks import EstimateWorker

        train = self.build_run_options(["train"])["train"]
        train["dry_run"] = False
        worker = EstimateWorker(train)
        worker.progress.connect(self._on_estimate_progress)
        worker.succeeded.connect(self._on_estimate)
        worker.failed.connect(self._on_estimate_failed)
        worker.cancelled.connect(self._on_estimate_cancelled)
        worker.done.connect(self._after_estimate)
        self.estimate = None
        self.run_panel.show_estimate(f"Estimating: training a few steps of {train['base_model']}…")
        self.tasks.start(worker)
        self._update_actions()

    @Slot(str, int, int, str)
    def _on_estimate_progress(self, stage: str, step: int, total: int, message: str) -> None:
        if stage == "train" and step > 0:
            self.run_panel.show_estimate(f"Estimating: probe step {step} of {total}…")

    @Slot(object)
    def _on_estimate(self, result: dict[str, Any]) -> None:
        from tinyforge_gui.dataset_panel import human_size
        from tinyforge_gui.run_panel import format_eta

        self.estimate = result
        memory = human_size(int(result.get("peak_rss_bytes") or 0)) if result.get("peak_rss_bytes") else "?"
        text = (
            f"Estimate: ≈ {format_eta(result['projected_total_seconds'])} for {result['total_steps']:,} steps "
            f"({result['steps_per_epoch']:,}/epoch × {result['epochs']:g} epochs"
            f"{'' if result.get('max_steps', -1) <= 0 else ', max_steps'}) at "
            f"{result['seconds_per_step']:.3g} s/step on {result.get('device')} ({result.get('precision')}); "
            f"peak memory ≈ {memory}"
        )
        tip = (f"Measured on {result['probe_steps']} real steps ({result['probe_seconds']:.1f} s including "
               f"loading). Training ≈ {format_eta(result['projected_train_seconds'])} + load/save ≈ "
               f"{format_eta(result['overhead_seconds'])}. Memory: {result.get('memory_source')} of the "
               "training process (CPU RAM; GPU memory is not included).")
        self.run_panel.show_estimate(text, tip)
        self.statusBar().showMessage("Estimate ready.", 8000)

    @Slot(str, str)
    def _on_estimate_failed(self, message: str, details: str) -> None:
        self.run_panel.show_estimate("Estimate failed.")
        self.show_message("error", f"The estimate failed: {message}", details)

    @Slot()
    def _on_estimate_cancelled(self) -> None:
        self.run_panel.show_estimate("Estimate cancelled.")

    @Slot()
    def _after_estimate(self) -> None:
        QTimer.singleShot(0, self._refresh_after_worker)

    @Slot()
    def _refresh_after_worker(self) -> None:
        if self.tasks.is_busy("estimate"):
            QTimer.singleShot(20, self._refresh_after_worker)
            return
        self._update_actions()

    # ------------------------------------------------------------------ playground
    @Slot(str, int)
    def _ask_playground(self, text: str, max_new_tokens: int) -> None:
        from tinyforge_gui.studio_tasks import PlaygroundWorker

        self.tasks.cancel("playground")  # a newer question wins; late answers are ignored
        worker = PlaygroundWorker(self.playground.request, text, dict(self.playground.sources), max_new_tokens)
        worker.answer.connect(self.playground.on_answer)
        worker.failed.connect(self._on_playground_failed)
        self.tasks.start(worker)

    @Slot(str, str)
    def _on_playground_failed(self, message: str, details: str) -> None:
        self.playground.status.setText(f"Failed: {message}")

    # ------------------------------------------------------------------ export report, service
    @Slot(str)
    def _open_report_json(self, path: str) -> None:
        self.tabs.setCurrentWidget(self.artifacts)
        if not self.artifacts.show_path(path):
            self.artifacts.viewer.show_file(path)

    def service_dir(self) -> str:
        """The selected run's service folder when it holds a real ONNX export, else ""."""
        run = self.artifacts.selected_run() or self.last_run
        folder = Path(run) / "service" if run else None
        if folder is not None and (folder / "app.py").is_file() and (folder / "onnx" / "model.onnx.meta.json").is_file():
            return str(folder)
        return ""

    def _update_service_button(self) -> None:
        if self.service_state == "running" and not self.service.running():
            self.service_state = "stopped"  # it exited on its own
        self.export_panel.set_service_state(self.service_state, self.service.url, bool(self.service_dir()))

    @Slot()
    def toggle_service(self) -> None:
        from tinyforge_gui.studio_tasks import ServiceStartWorker, ServiceStopWorker

        if self.tasks.is_busy("service"):
            return
        if self.service_state == "running":
            self.service_state = "stopping"
            worker: Worker = ServiceStopWorker(self.service)
            worker.succeeded.connect(self._on_service_stopped)
        else:
            folder = self.service_dir()
            if not folder:
                self.show_message("info", "Select a run exported with ONNX to serve it.")
                return
            self.service_state = "starting"
            worker = ServiceStartWorker(self.service, folder)
            worker.succeeded.connect(self._on_service_started)
        worker.failed.connect(self._on_service_failed)
        self.tasks.start(worker)
        self._update_service_button()

    @Slot(object)
    def _on_service_started(self, result: dict[str, Any]) -> None:
        self.service_state = "running" if result.get("url") else "stopped"
        self._update_service_button()
        if result.get("url"):
            self.statusBar().showMessage(f"Service running at {result['url']}", 10000)
            self.run_panel.log.append("success", f"service started at {result['url']} ({result.get('service_dir')})")

    @Slot(object)
    def _on_service_stopped(self, _result: object) -> None:
        self.service_state = "stopped"
        self._update_service_button()
        self.run_panel.log.append("info", "service stopped")

    @Slot(str, str)
    def _on_service_failed(self, message: str, details: str) -> None:
        self.service_state = "stopped"
        self._update_service_button()
        self.show_message("error", f"The service could not start: {message}", details)

    @Slot(dict)
    def load_run_options(self, options: dict[str, Any]) -> None:
        """Load a past run's options (run.json) back into the form."""
        self.options.load_dict(options)
        data = (options.get("train") or {}).get("data_path")
        if data and Path(data).is_file() and str(Path(data).resolve()) != self.dataset_path:
            self.load_dataset(data)
        self.statusBar().showMessage("Loaded the run's options.", 6000)

    # ------------------------------------------------------------------ messages, misc
    def show_message(self, level: str, message: str, details: str = "") -> None:
        """A readable message in the window (details on demand); also logged."""
        self.message.show_message(level, message, details)
        log_level = {"error": logging.ERROR, "warning": logging.WARNING}.get(level, logging.INFO)
        logger.log(log_level, "%s", message)

    @Slot()
    def _open_output_folder(self) -> None:
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        root = Path(self.options.output_root())
        root.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(root)))

    @Slot()
    def _about(self) -> None:
        from tinyforge_gui.help import show_about

        show_about(self)

    @Slot()
    def show_user_guide(self) -> None:
        from tinyforge_gui.help import show_user_guide

        if self._help_dialog is not None and self._help_dialog.isVisible():
            self._help_dialog.raise_()
            self._help_dialog.activateWindow()
            return
        self._help_dialog = show_user_guide(self)

    def showEvent(self, event) -> None:  # noqa: ANN001 - Qt override
        super().showEvent(event)
        if not self.artifacts.root:
            QTimer.singleShot(150, self._deferred_start)  # after the first paint

    @Slot()
    def _deferred_start(self) -> None:
        """Work that may touch the disk but is not needed for the first paint."""
        if self._closing:
            return
        from tinyforge_gui.tasks import WarmupWorker

        self.tasks.start(WarmupWorker())
        self.options.refresh_models()
        self.options.request_targets()
        root = self.options.output_root()
        if Path(root).is_dir():
            try:
                self.artifacts.set_root(root)
            except OSError as exc:
                logger.warning("cannot list runs in %s: %s", root, exc)

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
            self.statusBar().showMessage("Drop to open the dataset", 3000)
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: ANN001 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        local = [u.toLocalFile() for u in urls if u.isLocalFile()]
        if not local:
            self.show_message("warning", "Only files on this computer can be opened; drop a local .jsonl file.")
            event.ignore()
            return
        event.acceptProposedAction()
        if len(local) > 1:
            self.statusBar().showMessage(f"{len(local)} files dropped; opening the first.", 6000)
        self.load_dataset(local[0])

    # ------------------------------------------------------------------ shutdown
    def confirm_close(self) -> bool:
        """Ask before closing during a run (tests replace this)."""
        answer = QMessageBox.question(
            self,
            "A run is in progress",
            "A run is still in progress. Cancel it and quit?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        busy = self.tasks.is_busy("run") or self.tasks.is_busy("estimate")
        if busy and not self.confirm_close():
            event.ignore()
            return
        self._closing = True
        self.statusBar().showMessage("Stopping…")
        self.tasks.cancel()
        if not self.tasks.wait_all(60000):
            logger.error("a worker did not stop within 60 s")
        self.service.stop()
        self.run_panel.log.flush()
        self.save_settings()
        super().closeEvent(event)
