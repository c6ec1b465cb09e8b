"""The artifacts tab: runs list, a live file tree of the output folder, and a file viewer."""

from __future__ import annotations

import json
import logging
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QDir, QModelIndex, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QFont, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileSystemModel,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QToolButton,
    QTreeView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.panels.dataset_panel import human_size
from tinyforge_gui.widgets.common import make_icon
from tinyforge_gui.widgets.json_view import JsonHighlighter, JsonTree

if TYPE_CHECKING:
    from core.run_layout import RunRecord

logger = logging.getLogger(__name__)

_TEXT_LIMIT = 2 * 1024 * 1024
_TEXT_SUFFIXES = {".json", ".jsonl", ".txt", ".md", ".py", ".cfg", ".toml", ".yaml", ".yml", ".log", ".ini", ""}
_STATUS_ICONS = {"completed": "ok", "failed": "error", "cancelled": "cancelled", "running": "running", "created": "running"}


def _local_time(iso: str) -> str:
    """``2026-11-25T00:44:48+00:00`` as local ``2026-11-25 01:44`` (the input when unparsable)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso[:16].replace("T", " ")


def _tool(icon: str, text: str, tip: str) -> QToolButton:
    button = QToolButton()
    button.setIcon(make_icon(icon))
    button.setText(text)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setAutoRaise(True)
    button.setToolTip(tip)
    button.setAccessibleName(text)
    return button


class ArtifactViewer(QWidget):
    """Shows one file: JSON pretty-printed with highlighting plus a tree; text as text; else facts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("artifactViewer")
        self.setAccessibleName("Artifact viewer")
        self.current_path: str = ""
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel("Select a file to view it")
        self.title.setObjectName("viewerTitle")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.title)
        self.stack = QStackedWidget()
        self.text = QPlainTextEdit()
        self.text.setObjectName("artifactText")
        self.text.setReadOnly(True)
        self.text.setAccessibleName("File content")
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.text.setFont(mono)
        self.highlighter = JsonHighlighter(self.text.document())
        self.tree = JsonTree()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.text, "Text")
        self.tabs.addTab(self.tree, "Tree")
        self.info = QLabel()
        self.info.setObjectName("artifactInfo")
        self.info.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.info.setWordWrap(True)
        self.stack.addWidget(self.tabs)
        self.stack.addWidget(self.info)
        layout.addWidget(self.stack, 1)

    def show_file(self, path: str) -> None:
        p = Path(path)
        self.current_path = str(p)
        if p.is_dir():
            n = sum(1 for _ in p.iterdir())
            self._show_info(p, f"Folder with {n} item(s)")
            return
        try:
            size = p.stat().st_size
        except OSError as exc:
            self._show_info(p, f"Cannot read: {exc}")
            return
        kind = mimetypes.guess_type(p.name)[0] or ("ONNX model" if p.suffix == ".onnx" else "binary file")
        self.title.setText(f"<b>{p.name}</b> — {human_size(size)}, {kind}")
        self.title.setToolTip(str(p))
        head = b""
        if size <= _TEXT_LIMIT:
            try:
                head = p.read_bytes()
            except OSError as exc:
                self._show_info(p, f"Cannot read: {exc}")
                return
        if p.suffix == ".json" and head:
            try:
                data = json.loads(head.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                data = None
            if data is not None:
                self.text.setPlainText(json.dumps(data, indent=2, ensure_ascii=False))
                self.tree.set_data(data)
                self.tabs.setTabEnabled(1, True)
                self.stack.setCurrentIndex(0)
                return
        text = self._as_text(head, p)
        if text is None:
            self._show_info(p, f"{kind}\n{human_size(size)} ({size:,} bytes)\n\n{p}")
            return
        self.text.setPlainText(text)
        self.tree.clear()
        self.tabs.setTabEnabled(1, False)
        self.tabs.setCurrentIndex(0)
        self.stack.setCurrentIndex(0)

    @staticmethod
    def _as_text(head: bytes, p: Path) -> str | None:
        if not head or b"\x00" in head[:4096]:
            return None
        if p.suffix not in _TEXT_SUFFIXES and p.suffix != ".onnx":
            return None
        try:
            return head.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _show_info(self, p: Path, text: str) -> None:
        self.title.setText(f"<b>{p.name}</b>")
        self.info.setText(text)
        self.stack.setCurrentIndex(1)

    def clear(self) -> None:
        self.current_path = ""
        self.title.setText("Select a file to view it")
        self.text.clear()
        self.tree.clear()

    def content(self) -> str:
        """What the viewer shows as text (tests and screenshots use it)."""
        return self.text.toPlainText() if self.stack.currentIndex() == 0 else self.info.text()


class ArtifactsPanel(QWidget):
    """Runs (status, time, dataset, options) above a file tree; the viewer on the right."""

    load_options_requested = Signal(dict)  # a past run's options
    run_selected = Signal(str)  # run folder

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("artifactsPanel")
        self.root: str = ""
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        tools = QHBoxLayout()
        self.refresh_button = _tool("reload", "Refresh", "Re-read the runs in the output folder")
        self.load_button = _tool("reload", "Load options", "Load the selected run's options into the form")
        self.load_button.setObjectName("loadOptionsButton")
        self.open_button = _tool("folder", "Open Folder", "Open the selected file's folder in the file manager")
        self.open_button.setObjectName("openFolderButton")
        self.copy_button = _tool("copy", "Copy Path", "Copy the selected path to the clipboard")
        self.copy_button.setObjectName("copyPathButton")
        self.refresh_button.clicked.connect(self.refresh_runs)
        self.load_button.clicked.connect(self._load_selected_options)
        self.open_button.clicked.connect(self.open_folder)
        self.copy_button.clicked.connect(self.copy_path)
        for b in (self.refresh_button, self.load_button, self.open_button, self.copy_button):
            tools.addWidget(b)
        tools.addStretch(1)
        layout.addLayout(tools)

        self.runs = QTreeWidget()
        self.runs.setObjectName("runsList")
        self.runs.setAccessibleName("Runs")
        self.runs.setToolTip("Past runs; double-click to load a run's options back")
        self.runs.setHeaderLabels(["run", "status", "time", "dataset", "options"])
        self.runs.setRootIsDecorated(False)
        self.runs.setAlternatingRowColors(True)
        header = self.runs.header()
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(40)
        for column in (0, 1, 2):  # run, status, time: always readable in full
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(3, 130)
        self.runs.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.runs.currentItemChanged.connect(self._on_run_changed)
        self.runs.itemDoubleClicked.connect(self._on_run_double_clicked)

        self.fs_model = QFileSystemModel(self)
        self.fs_model.setFilter(QDir.Filter.AllEntries | QDir.Filter.NoDotAndDotDot)
        self.fs_model.setReadOnly(True)
        self.tree = QTreeView()
        self.tree.setObjectName("artifactTree")
        self.tree.setAccessibleName("Artifacts")
        self.tree.setToolTip("Files of the runs; select one to view it")
        self.tree.setModel(self.fs_model)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setColumnWidth(0, 260)
        self.tree.setColumnHidden(2, True)
        self.tree.selectionModel().currentChanged.connect(self._on_file_changed)

        left = QSplitter(Qt.Orientation.Vertical)
        left.setObjectName("artifactsLeftSplitter")
        left.addWidget(self.runs)
        left.addWidget(self.tree)
        left.setStretchFactor(1, 2)
        self.viewer = ArtifactViewer()
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.setObjectName("artifactsSplitter")
        self.split.addWidget(left)
        self.split.addWidget(self.viewer)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([470, 450])
        layout.addWidget(self.split, 1)

    # --- root and runs ---
    def set_root(self, folder: str) -> None:
        """Show ``folder`` (the output folder) in the tree; created when it does not exist yet."""
        if folder == self.root:
            return
        self.root = folder
        Path(folder).mkdir(parents=True, exist_ok=True)
        index = self.fs_model.setRootPath(folder)
        self.tree.setRootIndex(index)
        self.refresh_runs()

    @Slot()
    def refresh_runs(self) -> None:
        if not self.root:
            return
        # core.run_layout (pydantic) loads here, after the first paint, not at start-up.
        from core.run_layout import list_runs

        current = self.selected_run()
        self.runs.clear()
        for record in list_runs(self.root):
            self._add_run_item(record)
        if current:
            self.select_run(current)

    def _add_run_item(self, record: RunRecord) -> QTreeWidgetItem:
        path = record.folder or Path(record.run_id)
        options = record.options
        bits: list[str] = []
        if options is not None:
            train = options.train
            bits.append("dry run" if train.dry_run else train.base_model)
            if train.lora.enabled:
                bits.append(f"LoRA r{train.lora.r}/α{train.lora.alpha}")
            if "export" in options.actions:
                bits.append("ONNX" if options.export.export_onnx else "service")
        when = _local_time(record.created_time)
        dataset = Path(record.dataset.path).name
        status = record.status
        item = QTreeWidgetItem(self.runs, [path.name, status, when, dataset, ", ".join(b for b in bits if b)])
        item.setIcon(1, make_icon(_STATUS_ICONS.get(status, "file")))
        item.setToolTip(0, str(path))
        item.setToolTip(2, record.created_time)
        item.setToolTip(4, ", ".join(b for b in bits if b))
        item.setData(0, Qt.ItemDataRole.UserRole, str(path))
        item.setToolTip(1, (record.error.message if record.error else "") or status)
        return item

    def selected_run(self) -> str:
        item = self.runs.currentItem()
        return str(item.data(0, Qt.ItemDataRole.UserRole)) if item else ""

    def select_run(self, run_dir: str) -> None:
        for i in range(self.runs.topLevelItemCount()):
            item = self.runs.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == run_dir:
                self.runs.setCurrentItem(item)
                return

    def run_status(self, run_dir: str) -> str:
        for i in range(self.runs.topLevelItemCount()):
            item = self.runs.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == run_dir:
                return item.text(1)
        return ""

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _on_run_changed(self, current: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        if current is None:
            return
        run_dir = str(current.data(0, Qt.ItemDataRole.UserRole))
        index = self.fs_model.index(run_dir)
        if index.isValid():
            self.tree.expand(index)
            self.tree.scrollTo(index)
        self.run_selected.emit(run_dir)

    @Slot(QTreeWidgetItem, int)
    def _on_run_double_clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        self.runs.setCurrentItem(item)
        self._load_selected_options()

    @Slot()
    def _load_selected_options(self) -> None:
        run_dir = self.selected_run()
        if not run_dir:
            return
        from core.run_layout import RunFileError, read_run

        try:
            options = read_run(run_dir).options
        except RunFileError as exc:
            logger.warning("cannot load the options: %s", exc)
            return
        if options is None:
            logger.warning("cannot load the options of %s: they no longer validate", run_dir)
            return
        # As saved (unset fields stay as the form has them), for OptionsPanel.load_dict.
        self.load_options_requested.emit(options.model_dump(mode="json", exclude_unset=True))

    # --- files ---
    def show_path(self, path: str) -> bool:
        """Select ``path`` in the tree (expanding its parents) and show it in the viewer."""
        index = self.fs_model.index(path)
        if not index.isValid():
            return False
        parent = index.parent()
        while parent.isValid():
            self.tree.expand(parent)
            parent = parent.parent()
        self.tree.setCurrentIndex(index)
        self.tree.scrollTo(index)
        self.viewer.show_file(path)
        return True

    @Slot(QModelIndex, QModelIndex)
    def _on_file_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.viewer.show_file(self.fs_model.filePath(current))

    def selected_path(self) -> str:
        index = self.tree.currentIndex()
        if index.isValid():
            return self.fs_model.filePath(index)
        return self.selected_run() or self.root

    @Slot()
    def open_folder(self) -> None:
        path = Path(self.selected_path() or self.root)
        folder = path if path.is_dir() else path.parent
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    @Slot()
    def copy_path(self) -> None:
        path = self.selected_path()
        if path:
            QGuiApplication.clipboard().setText(path)
