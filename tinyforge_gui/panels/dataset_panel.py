"""The dataset tab: a welcome page that invites a drop, then preview, summary and problems."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelection, QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.panels.phrasings_box import PhrasingsBox
from tinyforge_gui.widgets.common import StatCard, make_icon
from tinyforge_gui.widgets.dataset_model import DatasetTableModel
from tinyforge_gui.widgets.theme import set_state_colour, style_label

logger = logging.getLogger(__name__)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


class WelcomePage(QWidget):
    """First-run state: a big drop target with Open… and Try the example."""

    open_requested = Signal()
    example_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcomePage")
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        icon = QLabel()
        icon.setPixmap(make_icon("drop").pixmap(72, 72))
        icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title = QLabel("Drop a .jsonl dataset here")
        title.setObjectName("welcomeTitle")
        style_label(title, "title")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text = QLabel(
            'One JSON object per line with <b>input</b> and <b>output</b> (optional <b>metadata</b>).<br>'
            "TinyForge previews it, checks every line, trains a small model and exports an ONNX service."
        )
        text.setObjectName("welcomeText")
        style_label(text, "dim")
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        open_button = QPushButton(make_icon("open"), "Open a dataset…")
        open_button.setObjectName("welcomeOpenButton")
        open_button.setToolTip("Choose a .jsonl file (Ctrl+O)")
        open_button.setAccessibleName("Open a dataset")
        open_button.clicked.connect(self.open_requested)
        example = QPushButton(make_icon("example"), "Try the example")
        example.setObjectName("exampleButton")
        example.setToolTip("Load the bundled examples/sample_qna.jsonl")
        example.setAccessibleName("Load the example dataset")
        example.setDefault(True)
        example.clicked.connect(self.example_requested)
        for b in (open_button, example):
            b.setMinimumHeight(34)
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addWidget(icon)
        layout.addWidget(title)
        layout.addWidget(text)
        layout.addSpacing(12)
        layout.addLayout(buttons)
        layout.addStretch(3)


class DatasetPanel(QStackedWidget):
    """Welcome page, or the loaded dataset: header, summary cards, lazy table, problems, detail."""

    open_requested = Signal()
    example_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("datasetPanel")
        self.welcome = WelcomePage()
        self.welcome.open_requested.connect(self.open_requested)
        self.welcome.example_requested.connect(self.example_requested)
        self.addWidget(self.welcome)
        self.addWidget(self._build_dataset_page())
        self.path: str = ""
        self.report: dict[str, Any] | None = None

    def _build_dataset_page(self) -> QWidget:
        """The page: the file's header, the summary cards, the table above problems and record."""
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(self._build_header())
        layout.addLayout(self._build_cards())
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setObjectName("datasetSplitter")
        self.split.addWidget(self._build_table())
        self.split.addWidget(self._build_problems_and_record())
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)  # room for the problems, the record and its phrasings
        layout.addWidget(self.split, 1)
        return page

    def _build_header(self) -> QHBoxLayout:
        """The file's name and folder, the scan's status and progress."""
        header = QHBoxLayout()
        icon = QLabel()
        icon.setPixmap(make_icon("dataset").pixmap(28, 28))
        names = QVBoxLayout()
        names.setSpacing(0)
        self.file_label = QLabel()
        self.file_label.setObjectName("datasetName")
        style_label(self.file_label, "name")
        self.path_label = QLabel()
        self.path_label.setObjectName("datasetPath")
        style_label(self.path_label, "dim")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        names.addWidget(self.file_label)
        names.addWidget(self.path_label)
        self.scan_progress = QProgressBar()
        self.scan_progress.setObjectName("datasetProgress")
        self.scan_progress.setMaximumWidth(220)
        self.scan_progress.setFormat("Scanning… %p%")
        self.scan_progress.setToolTip("Checking every line of the dataset in the background")
        self.scan_progress.setAccessibleName("Dataset scan progress")
        self.status_label = QLabel()
        self.status_label.setObjectName("datasetStatus")
        header.addWidget(icon)
        header.addLayout(names, 1)
        header.addWidget(self.status_label)
        header.addWidget(self.scan_progress)
        return header

    def _build_cards(self) -> QHBoxLayout:
        """One summary card per figure of the scan report."""
        cards = QHBoxLayout()
        self.cards: dict[str, StatCard] = {}
        for key, caption in (
            ("records", "records"),
            ("avg_input", "avg input tokens"),
            ("avg_output", "avg output tokens"),
            ("size", "file size"),
            ("sha", "sha256"),
            ("problems", "problems"),
        ):
            card = StatCard(caption)
            card.setObjectName(f"stat_{key}")
            self.cards[key] = card
            cards.addWidget(card)
        return cards

    def _build_table(self) -> QTableView:
        """The rows, read on demand from the file (:class:`DatasetTableModel`)."""
        self.model = DatasetTableModel(self)
        self.table = QTableView()
        self.table.setObjectName("datasetTable")
        self.table.setAccessibleName("Dataset preview")
        self.table.setToolTip("Rows of the dataset; hover a cell for its full text")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hh.setStretchLastSection(True)
        hh.resizeSection(0, 300)
        hh.resizeSection(1, 340)
        vh = self.table.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vh.setDefaultSectionSize(24)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        return self.table

    def _build_problems_and_record(self) -> QSplitter:
        """The problems list beside the whole selected record."""
        self.problems = QListWidget()
        self.problems.setObjectName("problemsList")
        self.problems.setAccessibleName("Problems")
        self.problems.setToolTip("Problems found by the scan; choose one to show its line")
        self.problems.currentItemChanged.connect(self._on_problem)
        self.detail = QPlainTextEdit()
        self.detail.setObjectName("recordDetail")
        self.detail.setReadOnly(True)
        self.detail.setAccessibleName("Selected record")
        self.detail.setPlaceholderText("Select a row to see the whole record")
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.detail.setFont(mono)

        problems_box = QWidget()
        pl = QVBoxLayout(problems_box)
        pl.setContentsMargins(0, 0, 0, 0)
        self.problems_title = QLabel("Problems")
        self.problems_title.setObjectName("sectionTitle")
        style_label(self.problems_title, "section")
        pl.addWidget(self.problems_title)
        pl.addWidget(self.problems)
        detail_box = QWidget()
        dl = QVBoxLayout(detail_box)
        dl.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Record")
        title.setObjectName("sectionTitle")
        style_label(title, "section")
        dl.addWidget(title)
        dl.addWidget(self.detail)
        self.bottom_split = QSplitter(Qt.Orientation.Horizontal)
        self.bottom_split.setObjectName("datasetBottomSplitter")
        self.bottom_split.addWidget(problems_box)
        self.bottom_split.addWidget(detail_box)
        self.phrasings = PhrasingsBox()
        self.phrasings.dropped_changed.connect(self.refresh_phrasing_counts)
        self.bottom_split.addWidget(self.phrasings)
        for pane, stretch in enumerate((1, 2, 2)):
            self.bottom_split.setStretchFactor(pane, stretch)
        return self.bottom_split

    # --- states ---
    def show_welcome(self) -> None:
        self.setCurrentIndex(0)

    def begin(self, path: str, head: list[tuple[int, str]]) -> None:
        """A new file: show its head rows at once and reset summary, problems and phrasings."""
        self.phrasings.clear()
        self.model.set_phrasing_counts({})
        self.path = path
        self.report = None
        p = Path(path)
        self.file_label.setText(f"<b>{p.name}</b>")
        self.path_label.setText(str(p.parent))
        self.status_label.setText("")
        for card in self.cards.values():
            card.set_value("…")
        try:
            self.cards["size"].set_value(human_size(p.stat().st_size))
        except OSError:
            pass
        self.problems.clear()
        self.problems_title.setText("Problems")
        self.detail.clear()
        self.model.set_head(head)
        self.scan_progress.setRange(0, 0)
        self.scan_progress.show()
        self.setCurrentIndex(1)

    def set_index(self, index: Any) -> None:
        self.model.set_index(index)
        if self.report is not None:
            self._apply_problem_highlights()

    @Slot(str, int, int, str)
    def on_scan_progress(self, stage: str, step: int, total: int, message: str) -> None:
        if total > 0:
            self.scan_progress.setRange(0, 1000)
            self.scan_progress.setValue(min(1000, step * 1000 // total))

    def set_report(self, report: dict[str, Any]) -> None:
        """Fill summary cards and problems from a ``ValidationReport.model_dump()``."""
        self.report = report
        self.scan_progress.hide()
        sha = str(report.get("sha256") or "")
        self.cards["records"].set_value(f"{int(report.get('n_records', 0)):,}")
        self.cards["avg_input"].set_value(f"{float(report.get('avg_input_len', 0.0)):.1f}")
        self.cards["avg_output"].set_value(f"{float(report.get('avg_output_len', 0.0)):.1f}")
        self.cards["size"].set_value(human_size(float(report.get("file_size", 0))))
        self.cards["sha"].set_value(sha[:12] or "–", sha)
        n_problems = int(report.get("n_problems", len(report.get("problems", []))))
        n_warnings = int(report.get("n_warnings", len(report.get("warnings", []))))
        self.cards["problems"].set_value(f"{n_problems:,}" + (f" (+{n_warnings} warnings)" if n_warnings else ""))
        self.problems.clear()
        for problem in report.get("problems", []):
            self._add_problem(problem, "error")
        for warning in report.get("warnings", []):
            self._add_problem(warning, "warning")
        shown = self.problems.count()
        total = n_problems + n_warnings
        more = f" (first {shown} of {total:,})" if shown < total else ""
        self.problems_title.setText(f"Problems: {n_problems:,}, warnings: {n_warnings:,}{more}")
        if report.get("valid"):
            self.status_label.setText("✓ ready to train")
            set_state_colour(self.status_label, "ok")
        else:
            self.status_label.setText("✗ fix the problems to train")
            set_state_colour(self.status_label, "error")
        if n_problems == 0 and n_warnings == 0:
            item = QListWidgetItem(make_icon("ok"), "No problems found")
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.problems.addItem(item)
        self._apply_problem_highlights()

    def scan_failed(self, message: str) -> None:
        self.scan_progress.hide()
        self.status_label.setText("✗ could not scan")
        self.status_label.setToolTip(message)

    def _add_problem(self, problem: dict[str, Any], level: str) -> None:
        line = problem.get("line")
        where = f"Line {line}" if line else "File"
        item = QListWidgetItem(make_icon(level), f"{where}: {problem.get('message', '')}")
        item.setData(Qt.ItemDataRole.UserRole, int(line) if line else 0)
        item.setToolTip(f"{problem.get('kind', level)}: {problem.get('message', '')}")
        self.problems.addItem(item)

    def _apply_problem_highlights(self) -> None:
        if not self.report:
            return
        lines = {int(p["line"]): str(p.get("message", "")) for p in self.report.get("problems", []) if p.get("line")}
        self.model.set_problems(lines)

    # --- interaction ---
    def show_line(self, line: int) -> int:
        """Scroll to and select the row of file line ``line``; return the row (-1 if none)."""
        row = self.model.row_for_line(line)
        if row < 0:
            return -1
        index = self.model.index(row, 0)
        self.table.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        self.table.selectRow(row)
        return row

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_problem(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if current is None:
            return
        line = int(current.data(Qt.ItemDataRole.UserRole) or 0)
        if line > 0:
            self.show_line(line)

    @Slot(QItemSelection, QItemSelection)
    def _on_selection(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        indexes = selected.indexes()
        if not indexes:
            return
        self._show_detail(indexes[0])

    def _show_detail(self, index: QModelIndex) -> None:
        parsed = self.model.row_at(index.row())
        if parsed is None:
            return
        header = f"// line {parsed.line}" + (f" — {parsed.error}" if parsed.error else "")
        self.detail.setPlainText(f"{header}\n{parsed.pretty()}")
        self.phrasings.show_question(parsed.cells[0] if not parsed.error else "")

    def show_phrasings(self, rows: list[dict[str, Any]], dropped: set[str], summary: str) -> None:
        """The variants of every question: the count column and the selected record's list."""
        self.phrasings.set_rows(rows, dropped, summary)
        self.model.set_phrasing_counts(self.phrasings.counts())
        current = self.table.currentIndex()
        if current.isValid():
            self._show_detail(current)

    @Slot(str, bool)
    def refresh_phrasing_counts(self, _text: str = "", _dropped: bool = False) -> None:
        self.model.set_phrasing_counts(self.phrasings.counts())
