"""The main window: composes the panels, the menus and the window's own state.

Layout: options on the left; on the right the Dataset and Artifacts tabs above the run panel
(actions, progress, log, loss chart). The work is driven by three controllers living in the GUI
thread: :mod:`tinyforge_gui.dataset_controller` (open and scan a dataset),
:mod:`tinyforge_gui.run_controller` (train/export runs, cancel, resume, estimate) and
:mod:`tinyforge_gui.studio_controller` (LoRA targets, playground, local service). They start
:mod:`tinyforge_gui.tasks` workers on QThreads and react to their plain-data signals. This class
keeps the public surface (``load_dataset``, ``start_train``, ``run_status``, …) by delegation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (
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
from tinyforge_gui.dataset_controller import HEAD_ROWS, JSONL_SUFFIXES, DatasetController, dataset_problem
from tinyforge_gui.dataset_panel import DatasetPanel
from tinyforge_gui.options_panel import OptionsPanel
from tinyforge_gui.resources import app_icon_path
from tinyforge_gui.run_controller import RunController
from tinyforge_gui.run_panel import RunPanel
from tinyforge_gui.settings import AppSettings
from tinyforge_gui.studio_controller import StudioController
from tinyforge_gui.studio_tasks import ServiceHandle
from tinyforge_gui.widgets import MessageBar, make_icon
from tinyforge_gui.workers import TaskRunner

if TYPE_CHECKING:
    from tinyforge_gui.artifacts_panel import ArtifactsPanel
    from tinyforge_gui.evaluation_panel import EvaluationPanel
    from tinyforge_gui.export_panel import ExportPanel
    from tinyforge_gui.playground_panel import PlaygroundPanel

logger = logging.getLogger(__name__)

__all__ = ["HEAD_ROWS", "JSONL_SUFFIXES", "MainWindow", "dataset_problem"]


class MainWindow(QMainWindow):
    """TinyForge Studio's main window (constructible with no arguments)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from PySide6.QtWidgets import QApplication

        from tinyforge_gui.gc_guard import install as install_gc_guard

        install_gc_guard(QApplication.instance())  # worker threads must not run Qt's garbage
        self.setObjectName("mainWindow")
        self.setWindowTitle(APPLICATION)
        self.setWindowIcon(QIcon(app_icon_path()))
        self.setAcceptDrops(True)
        self.settings = AppSettings()
        self.tasks = TaskRunner(self)
        self.dataset_controller = DatasetController(self)
        self.run_controller = RunController(self)
        self.studio_controller = StudioController(self)
        self._closing = False
        self._help_dialog: QWidget | None = None
        self._artifacts: ArtifactsPanel | None = None
        self._export_panel: ExportPanel | None = None
        self._playground: PlaygroundPanel | None = None
        self._evaluation: EvaluationPanel | None = None
        self._build_ui()
        self._build_menus()
        self._restore_settings()
        self.update_actions()
        self.statusBar().showMessage("Drop a .jsonl dataset or open the example to start.")

    # ------------------------------------------------------------------ construction
    def _build_ui(self) -> None:
        datasets, runs, studio = self.dataset_controller, self.run_controller, self.studio_controller
        self.options = OptionsPanel()
        self.options.changed.connect(self._on_options_changed)
        self.options.lora_targets_wanted.connect(studio.start_lora_targets)
        self.dataset = DatasetPanel()
        self.dataset.open_requested.connect(datasets.open_dialog)
        self.dataset.example_requested.connect(datasets.open_example)
        self.run_panel = RunPanel()
        self.run_panel.train_clicked.connect(runs.start_train)
        self.run_panel.export_clicked.connect(runs.start_export)
        self.run_panel.train_export_clicked.connect(runs.start_train_export)
        self.run_panel.cancel_clicked.connect(runs.cancel_run)
        self.run_panel.resume_clicked.connect(runs.start_resume)
        self.run_panel.estimate_clicked.connect(runs.start_estimate)
        QShortcut(QKeySequence("Ctrl+Enter"), self, runs.start_train_export)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("mainTabs")
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.dataset, make_icon("dataset"), "Dataset")
        # The other tabs are hidden at start: empty pages until _build_hidden_tabs (after the
        # first paint, or as soon as anything asks for one of them) puts the panels in.
        for icon, label in self._HIDDEN_TABS:
            self.tabs.addTab(QWidget(), make_icon(icon), label)
        self.tabs.currentChanged.connect(self._on_tab_changed)

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

    _HIDDEN_TABS = (("folder", "Artifacts"), ("ok", "Evaluation"), ("export", "Export"), ("train", "Playground"))

    def _build_hidden_tabs(self) -> None:
        """Build the Artifacts, Evaluation, Export and Playground panels and put them in their tabs (once).

        Not needed for the first paint, so start-up does not import or build them (about a
        sixth of the window's start-up time); the properties below build them on first use.
        """
        if self._artifacts is not None:
            return
        from tinyforge_gui.artifacts_panel import ArtifactsPanel
        from tinyforge_gui.evaluation_panel import EvaluationPanel
        from tinyforge_gui.export_panel import ExportPanel
        from tinyforge_gui.playground_panel import PlaygroundPanel

        runs, studio = self.run_controller, self.studio_controller
        self._artifacts = ArtifactsPanel()
        self._artifacts.load_options_requested.connect(self.load_run_options)
        self._artifacts.run_selected.connect(runs.on_run_selected)
        self._export_panel = ExportPanel()
        self._export_panel.open_json_requested.connect(studio.open_report_json)
        self._export_panel.service_toggled.connect(studio.toggle_service)
        self._playground = PlaygroundPanel()
        self._playground.ask_requested.connect(studio.ask_playground)
        self._evaluation = EvaluationPanel()
        current = self.tabs.currentIndex()
        self.tabs.blockSignals(True)  # swapping pages is not the user changing tabs
        panels = (self._artifacts, self._evaluation, self._export_panel, self._playground)
        for index, panel in enumerate(panels, start=1):
            placeholder = self.tabs.widget(index)
            icon, label = self._HIDDEN_TABS[index - 1]
            self.tabs.removeTab(index)
            self.tabs.insertTab(index, panel, make_icon(icon), label)
            placeholder.deleteLater()
        self.tabs.setCurrentIndex(current)
        self.tabs.blockSignals(False)
        state = self.settings.value("splitters/artifacts")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self._artifacts.split.restoreState(state)
        self.update_actions()

    @Slot(int)
    def _on_tab_changed(self, index: int) -> None:
        if index > 0 and self._artifacts is None:
            QTimer.singleShot(0, self._build_hidden_tabs)  # not inside the tab bar's own signal

    @property
    def hidden_tabs_built(self) -> bool:
        return self._artifacts is not None

    @property
    def artifacts(self) -> ArtifactsPanel:
        self._build_hidden_tabs()
        assert self._artifacts is not None
        return self._artifacts

    @property
    def export_panel(self) -> ExportPanel:
        self._build_hidden_tabs()
        assert self._export_panel is not None
        return self._export_panel

    @property
    def playground(self) -> PlaygroundPanel:
        self._build_hidden_tabs()
        assert self._playground is not None
        return self._playground

    @property
    def evaluation(self) -> EvaluationPanel:
        self._build_hidden_tabs()
        assert self._evaluation is not None
        return self._evaluation

    def selected_run(self) -> str:
        """The run selected in the Artifacts tab ("" before that tab exists: nothing is selected)."""
        return self._artifacts.selected_run() if self._artifacts is not None else ""

    def _build_menus(self) -> None:
        runs = self.run_controller
        file_menu = self.menuBar().addMenu("&File")
        self.open_action = QAction(make_icon("open"), "&Open dataset…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_action.triggered.connect(self.dataset_controller.open_dialog)
        file_menu.addAction(self.open_action)
        self.recent_menu = QMenu("Open &recent", self)
        self.recent_menu.setObjectName("recentMenu")
        file_menu.addMenu(self.recent_menu)
        example = QAction(make_icon("example"), "Open the &example dataset", self)
        example.triggered.connect(self.dataset_controller.open_example)
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
            ("train", "&Train", runs.start_train),
            ("export", "&Export", runs.start_export),
            ("train-export", "Train → E&xport\tCtrl+Enter", runs.start_train_export),
            ("cancel", "&Cancel\tEsc", runs.cancel_run),
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
        self.rebuild_recent_menu()

    def rebuild_recent_menu(self) -> None:
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

    @Slot()
    def _open_recent(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.load_dataset(str(action.data()))

    @Slot()
    def _clear_recent(self) -> None:
        self.settings.clear_recent()
        self.rebuild_recent_menu()

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
        else:
            self.options.apply_first_run_defaults()

    def _splitters(self) -> dict[str, QSplitter]:
        splitters = {"main": self.main_split, "right": self.right_split, "dataset": self.dataset.split}
        if self._artifacts is not None:  # else _build_hidden_tabs restores it; an unbuilt one keeps its value
            splitters["artifacts"] = self._artifacts.split
        return splitters

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
        self.update_actions()

    @Slot(dict)
    def load_run_options(self, options: dict[str, Any]) -> None:
        """Load a past run's options (run.json) back into the form."""
        self.options.load_dict(options)
        data = (options.get("train") or {}).get("data_path")
        if data and Path(data).is_file() and str(Path(data).resolve()) != self.dataset_path:
            self.load_dataset(data)
        self.statusBar().showMessage("Loaded the run's options.", 6000)

    def update_actions(self) -> None:
        """Refresh which actions are available: run buttons, the options form, the service button."""
        self.run_controller.update_actions()
        if self._export_panel is not None:  # the Service button lives in the Export tab
            self.studio_controller.update_service_button()
        self.status_right.setText(self.options.output_root())

    # ------------------------------------------------------------------ delegated state and actions
    # The controllers own this state; these keep the window's public surface (tests, selftest,
    # screenshots, benchmarks) unchanged.
    @property
    def dataset_path(self) -> str:
        return self.dataset_controller.path

    @dataset_path.setter
    def dataset_path(self, value: str) -> None:
        self.dataset_controller.path = value

    @property
    def dataset_report(self) -> dict[str, Any] | None:
        return self.dataset_controller.report

    @dataset_report.setter
    def dataset_report(self, value: dict[str, Any] | None) -> None:
        self.dataset_controller.report = value

    @property
    def current_run(self) -> str:
        return self.run_controller.current_run

    @current_run.setter
    def current_run(self, value: str) -> None:
        self.run_controller.current_run = value

    @property
    def last_run(self) -> str:
        return self.run_controller.last_run

    @last_run.setter
    def last_run(self, value: str) -> None:
        self.run_controller.last_run = value

    @property
    def run_status(self) -> str:
        return self.run_controller.run_status

    @run_status.setter
    def run_status(self, value: str) -> None:
        self.run_controller.run_status = value

    @property
    def estimate(self) -> dict[str, Any] | None:
        return self.run_controller.estimate

    @estimate.setter
    def estimate(self, value: dict[str, Any] | None) -> None:
        self.run_controller.estimate = value

    @property
    def service(self) -> ServiceHandle:
        return self.studio_controller.service

    @property
    def service_state(self) -> str:
        return self.studio_controller.service_state

    @service_state.setter
    def service_state(self, value: str) -> None:
        self.studio_controller.service_state = value

    @Slot()
    def open_dialog(self) -> None:
        self.dataset_controller.open_dialog()

    @Slot()
    def open_example(self) -> None:
        self.dataset_controller.open_example()

    def load_dataset(self, path: str) -> bool:
        """Preview ``path`` at once, then index and validate it in the background."""
        return self.dataset_controller.load(path)

    @Slot()
    def start_train(self) -> None:
        self.run_controller.start_train()

    @Slot()
    def start_train_export(self) -> None:
        self.run_controller.start_train_export()

    @Slot()
    def start_export(self) -> None:
        self.run_controller.start_export()

    @Slot()
    def start_resume(self) -> None:
        self.run_controller.start_resume()

    @Slot()
    def start_estimate(self) -> None:
        self.run_controller.start_estimate()

    @Slot()
    def cancel_run(self) -> None:
        self.run_controller.cancel_run()

    def build_run_options(self, actions: list[str]) -> dict[str, Any]:
        """The ``RunOptions`` dict for ``actions`` from the form and the current dataset."""
        return self.run_controller.build_run_options(actions)

    def export_source(self) -> str:
        """The run whose model Export uses: the selected run, else the last run, if it has a model."""
        return self.run_controller.export_source()

    def service_dir(self) -> str:
        """The selected run's service folder when it holds a real ONNX export, else ""."""
        return self.studio_controller.service_dir()

    @Slot()
    def toggle_service(self) -> None:
        self.studio_controller.toggle_service()

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
        if self._artifacts is None or not self._artifacts.root:
            QTimer.singleShot(150, self._deferred_start)  # after the first paint

    @Slot()
    def _deferred_start(self) -> None:
        """Work that may touch the disk but is not needed for the first paint."""
        if self._closing:
            return
        self._build_hidden_tabs()
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
