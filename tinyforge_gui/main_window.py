"""The main window: composes the panels, the menus, the shared state and the controllers.

Layout: options on the left; on the right the tabs (:mod:`tinyforge_gui.panels.studio_tabs`) above the
run panel (actions, progress, log, loss chart). The shared state is a plain
:class:`~tinyforge_gui.state.StudioState`; three controllers living in the GUI thread change it:
:mod:`tinyforge_gui.controllers.dataset_controller` (open and scan a dataset),
:mod:`tinyforge_gui.controllers.run_controller` (train/export runs, cancel, resume, estimate) and
:mod:`tinyforge_gui.controllers.studio_controller` (LoRA targets, playground, local service). Each gets
only what it needs (the task runner, the state, a notifier, its panels); the window renders
state changes (:meth:`MainWindow.update_actions`) and owns menus, settings, drops and shutdown.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMenu,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui import APPLICATION
from tinyforge_gui.controllers.dataset_controller import DatasetController
from tinyforge_gui.controllers.phrasings_controller import PhrasingsController
from tinyforge_gui.controllers.preview_controller import PreviewController
from tinyforge_gui.controllers.run_controller import RunController
from tinyforge_gui.controllers.studio_controller import StudioController
from tinyforge_gui.panels.dataset_panel import DatasetPanel
from tinyforge_gui.panels.options_panel import OptionsPanel
from tinyforge_gui.panels.run_panel import RunPanel
from tinyforge_gui.panels.studio_tabs import StudioTabs
from tinyforge_gui.resources import app_icon_path
from tinyforge_gui.settings import AppSettings
from tinyforge_gui.state import StudioState, Task
from tinyforge_gui.widgets.common import MessageBar, Notifier, make_icon
from tinyforge_gui.workers.runner import TaskRunner

logger = logging.getLogger(__name__)

__all__ = ["MainWindow"]


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
        self.state = StudioState()
        self._closing = False
        self._help_dialog: QWidget | None = None
        self._build_ui()
        self._build_controllers()
        self._build_menus()
        self._restore_settings()
        self.state.subscribe(self._on_state_changed)
        self.update_actions()
        self.statusBar().showMessage("Drop a dataset (.jsonl, .csv, .tsv, .json) or open the example to start.")

    # ------------------------------------------------------------------ construction
    def _build_ui(self) -> None:
        self.options = OptionsPanel()
        self.options.changed.connect(self.update_actions)
        self.dataset = DatasetPanel()
        self.run_panel = RunPanel()
        self.tabs = StudioTabs(self.dataset)
        self.tabs.result_tabs_built.connect(self._on_result_tabs_built)

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
        self.notifier = Notifier(self.message, self.statusBar())
        self.resize(1280, 820)

    def _build_controllers(self) -> None:
        common = (self.tasks, self.state, self.notifier)
        self.dataset_controller = DatasetController(*common, self.dataset, self.options, self.tabs, self.settings,
                                                    parent=self)
        self.run_controller = RunController(*common, self.options, self.run_panel, self.tabs, self.settings,
                                            parent=self)
        self.studio_controller = StudioController(*common, self.options, self.run_panel, self.tabs, parent=self)
        self.phrasings_controller = PhrasingsController(*common, self.dataset, self.options, parent=self)
        self.preview_controller = PreviewController(self.tasks, self.state, self.dataset, self.options, parent=self)
        datasets, runs, studio = self.dataset_controller, self.run_controller, self.studio_controller
        datasets.recent_changed.connect(self.rebuild_recent_menu)
        self.dataset.open_requested.connect(datasets.open_dialog)
        self.dataset.example_requested.connect(datasets.open_example)
        self.options.lora_targets_wanted.connect(studio.start_lora_targets)
        self.run_panel.train_clicked.connect(runs.start_train)
        self.run_panel.export_clicked.connect(runs.start_export)
        self.run_panel.train_export_clicked.connect(runs.start_train_export)
        self.run_panel.cancel_clicked.connect(runs.cancel_run)
        self.run_panel.resume_clicked.connect(runs.start_resume)
        self.run_panel.estimate_clicked.connect(runs.start_estimate)
        QShortcut(QKeySequence("Ctrl+Enter"), self, runs.start_train_export)

    @Slot()
    def _on_result_tabs_built(self) -> None:
        """The result panels exist now: wire them and restore their splitter."""
        tabs, runs, studio = self.tabs, self.run_controller, self.studio_controller
        tabs.artifacts.load_options_requested.connect(self.load_run_options)
        tabs.artifacts.run_selected.connect(runs.on_run_selected)
        tabs.export_panel.open_json_requested.connect(studio.open_report_json)
        tabs.export_panel.service_toggled.connect(studio.toggle_service)
        tabs.playground.ask_requested.connect(studio.ask_playground)
        state = self.settings.value("splitters/artifacts")
        if isinstance(state, QByteArray) and not state.isEmpty():
            tabs.artifacts.split.restoreState(state)
        self.update_actions()

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
            self.dataset_controller.load(str(action.data()))

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
        if self.tabs.built:  # else _on_result_tabs_built restores it; an unbuilt one keeps its value
            splitters["artifacts"] = self.tabs.artifacts.split
        return splitters

    def save_settings(self) -> None:
        s = self.settings
        s.set_value("window/geometry", self.saveGeometry())
        s.set_value("window/state", self.saveState())
        for key, splitter in self._splitters().items():
            s.set_value(f"splitters/{key}", splitter.saveState())
        s.set_options(self.options.to_dict())
        s.sync()

    @Slot(dict)
    def load_run_options(self, options: dict[str, Any]) -> None:
        """Load a past run's options (run.json) back into the form, and its dataset with its
        column mapping."""
        self.options.load_dict(options)
        train = options.get("train") or {}
        data, columns = train.get("data_path"), train.get("columns") or None
        if data and Path(data).is_file() and str(Path(data).resolve()) != self.state.dataset_path:
            self.dataset_controller.load(data, columns=columns)
        elif data and self.state.dataset_path and str(Path(data).resolve()) == self.state.dataset_path:
            self.dataset_controller.apply_columns(columns)
        self.statusBar().showMessage("Loaded the run's options.", 6000)

    def _on_state_changed(self, _changed: set[str]) -> None:
        self.update_actions()

    @Slot()
    def update_actions(self) -> None:
        """Render the state: run buttons, the options form, the service button, the output folder."""
        self.run_controller.update_actions()
        if self.tabs.built:  # the Service button lives in the Export tab
            self.studio_controller.update_service_button()
        self.status_right.setText(self.options.output_root())

    # ------------------------------------------------------------------ menus' actions
    @Slot()
    def _open_output_folder(self) -> None:
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        root = Path(self.options.output_root())
        root.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(root)))

    @Slot()
    def _about(self) -> None:
        from tinyforge_gui.panels.help import show_about

        show_about(self)

    @Slot()
    def show_user_guide(self) -> None:
        from tinyforge_gui.panels.help import show_user_guide

        if self._help_dialog is not None and self._help_dialog.isVisible():
            self._help_dialog.raise_()
            self._help_dialog.activateWindow()
            return
        self._help_dialog = show_user_guide(self)

    def showEvent(self, event) -> None:  # noqa: ANN001 - Qt override
        super().showEvent(event)
        if not self.tabs.built or not self.tabs.artifacts.root:
            QTimer.singleShot(150, self._deferred_start)  # after the first paint

    @Slot()
    def _deferred_start(self) -> None:
        """Work that may touch the disk but is not needed for the first paint."""
        if self._closing:
            return
        self.dataset.attach_dataset_page()
        self.tabs.build_result_tabs()
        from tinyforge_gui.workers.tasks import WarmupWorker

        warmup = WarmupWorker()
        # Listing runs reads them through pydantic models: after the warm-up imported those in
        # its thread, so the GUI thread never stalls on the import.
        warmup.done.connect(self._list_past_runs)
        self.tasks.start(warmup)
        self.options.refresh_models()
        self.options.request_targets()

    @Slot()
    def _list_past_runs(self) -> None:
        root = self.options.output_root()
        if self._closing or self.tabs.artifacts.root or not Path(root).is_dir():
            return
        try:
            self.tabs.artifacts.set_root(root)
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
            self.notifier.show_message("warning", "Only files on this computer can be opened; drop a local dataset "
                                                  "file (.jsonl, .csv, .tsv or .json).")
            event.ignore()
            return
        event.acceptProposedAction()
        if len(local) > 1:
            self.statusBar().showMessage(f"{len(local)} files dropped; opening the first.", 6000)
        self.dataset_controller.load(local[0])

    # ------------------------------------------------------------------ shutdown
    def confirm_close(self) -> bool:
        """Ask before closing during a run (tests replace this)."""
        from PySide6.QtWidgets import QMessageBox  # not at import: start-up never asks

        answer = QMessageBox.question(
            self,
            "A run is in progress",
            "A run is still in progress. Cancel it and quit?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        busy = self.tasks.is_busy(Task.RUN) or self.tasks.is_busy(Task.ESTIMATE)
        if busy and not getattr(self, "terminate_requested", False) and not self.confirm_close():
            event.ignore()
            return
        self._closing = True
        self.preview_controller.stop()
        self.statusBar().showMessage("Stopping…")
        self.tasks.cancel()
        if not self.tasks.wait_all(60000):
            logger.error("a worker did not stop within 60 s")
        self.studio_controller.service.stop()
        self.run_panel.log.flush()
        self.save_settings()
        super().closeEvent(event)
