"""The dataset tab: a welcome page that invites a drop, then the rows, the summary, the detected
format and token lengths, the problems, and the selected row's training text as the model sees it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.panels.phrasings_box import PhrasingsBox
from tinyforge_gui.widgets.common import StatCard, make_icon
from tinyforge_gui.widgets.dataset_model import (
    ANSWER_COLUMN,
    QUESTION_COLUMN,
    TURNS_COLUMN,
    DatasetTableModel,
    ParsedRow,
)
from tinyforge_gui.widgets.theme import set_state_colour, style_label
from tinyforge_gui.widgets.training_text import TrainingTextView

if TYPE_CHECKING:
    from core.run_layout import PhrasingRow
    from core.training.dataset_models import DatasetWarning, Problem, ValidationReport

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
        title = QLabel("Drop a dataset here")
        title.setObjectName("welcomeTitle")
        style_label(title, "title")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text = QLabel(
            "<b>.jsonl</b>, <b>.csv</b>, <b>.tsv</b> or <b>.json</b>: question/answer rows (<b>input</b> and "
            "<b>output</b>), chat <b>messages</b>, ShareGPT <b>conversations</b>, Alpaca <b>instruction</b>s or "
            "<b>prompt</b>/<b>completion</b> pairs.<br>"
            "TinyForge previews it, checks every row, trains a small model and exports an ONNX service."
        )
        text.setObjectName("welcomeText")
        style_label(text, "dim")
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        open_button = QPushButton(make_icon("open"), "Open a dataset…")
        open_button.setObjectName("welcomeOpenButton")
        open_button.setToolTip("Choose a .jsonl, .csv, .tsv or .json file (Ctrl+O)")
        open_button.setAccessibleName("Open a dataset")
        open_button.clicked.connect(self.open_requested)
        example = QPushButton(make_icon("example"), "Try the example")
        example.setObjectName("exampleButton")
        example.setToolTip("Load the bundled examples/customer_support.jsonl: 40 customer-support questions "
                           "and answers, enough for a first fine-tune worth looking at")
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
    map_columns_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("datasetPanel")
        self._prepared: Any = None  # PreparedFormat of the base model (see set_preview_format)
        self._loss_on = "all"
        self.welcome = WelcomePage()
        self.welcome.open_requested.connect(self.open_requested)
        self.welcome.example_requested.connect(self.example_requested)
        self.addWidget(self.welcome)
        # Built now, as a hidden child (every widget exists and findChild finds it from the
        # start), but it joins the stack only when first needed (:meth:`attach_dataset_page`):
        # on the window's first show the stack measures, polishes and lays out every page, the
        # hidden one too, and this page would cost about a sixth of the start-up time.
        self._page: QWidget | None = self._build_dataset_page()
        self._page.setParent(self)
        self._page.hide()
        self.path: str = ""
        self.report: ValidationReport | None = None

    def attach_dataset_page(self) -> None:
        """Put the dataset page in the stack (once): before a file is shown, or after the first paint."""
        if self._page is not None:
            page, self._page = self._page, None
            self.addWidget(page)

    def _build_dataset_page(self) -> QWidget:
        """The page: the file's header, the summary cards, the table above problems and record."""
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(self._build_header())
        layout.addLayout(self._build_cards())
        layout.addLayout(self._build_format_bar())
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setObjectName("datasetSplitter")
        self.split.addWidget(self._build_table())
        self.split.addWidget(self._build_problems_and_record())
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 1)  # room for the problems, the row's training text and its phrasings
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

    def _build_format_bar(self) -> QHBoxLayout:
        """The detected format and its reading in words, the token lengths, and Map columns…."""
        bar = QHBoxLayout()
        lines = QVBoxLayout()
        lines.setSpacing(0)
        self.format_label = QLabel("")
        self.format_label.setObjectName("datasetFormat")
        self.format_label.setWordWrap(True)
        self.format_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.format_label.setToolTip("The data format every row was read as, and which field becomes which role")
        self.tokens_label = QLabel("")
        self.tokens_label.setObjectName("datasetTokens")
        self.tokens_label.setWordWrap(True)
        self.tokens_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tokens_label.setToolTip("Training-text lengths in the base model's tokens (prompt and answer) "
                                     "against Max length; longer rows are cut when training")
        style_label(self.tokens_label, "dim")
        lines.addWidget(self.format_label)
        lines.addWidget(self.tokens_label)
        self.map_columns = QPushButton("Map columns…")
        self.map_columns.setObjectName("mapColumnsButton")
        self.map_columns.setAccessibleName("Map columns")
        self.map_columns.setEnabled(False)
        self.map_columns.clicked.connect(self.map_columns_requested)
        bar.addLayout(lines, 1)
        bar.addWidget(self.map_columns, 0, Qt.AlignmentFlag.AlignTop)
        return bar

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
        hh.resizeSection(QUESTION_COLUMN, 250)
        hh.resizeSection(ANSWER_COLUMN, 290)
        hh.resizeSection(TURNS_COLUMN, 48)
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
        self.training_text = TrainingTextView()
        self.training_text.setObjectName("trainingTextView")
        self.row_tabs = QTabWidget()
        self.row_tabs.setObjectName("rowTabs")
        self.row_tabs.setDocumentMode(True)
        self.row_tabs.addTab(self.training_text, "Training text")
        self.row_tabs.addTab(self.detail, "Record")
        self.row_tabs.setTabToolTip(0, "The selected row as the model is trained on it")
        self.row_tabs.setTabToolTip(1, "The selected row as the file holds it")
        dl.addWidget(self.row_tabs)
        self.bottom_split = QSplitter(Qt.Orientation.Horizontal)
        self.bottom_split.setObjectName("datasetBottomSplitter")
        self.bottom_split.addWidget(problems_box)
        self.bottom_split.addWidget(detail_box)
        self.phrasings = PhrasingsBox()
        self.phrasings.dropped_changed.connect(self.refresh_phrasing_counts)
        self.bottom_split.addWidget(self.phrasings)
        for pane, stretch in enumerate((2, 3, 2)):
            self.bottom_split.setStretchFactor(pane, stretch)
        return self.bottom_split

    # --- states ---
    def show_welcome(self) -> None:
        self.setCurrentIndex(0)

    def begin(self, path: str, head: list[tuple[int, str]], columns: dict[str, str] | None = None) -> None:
        """A new file: show its head rows at once (a table's rows come with :meth:`set_table`) and
        reset summary, format, problems and phrasings."""
        self.phrasings.clear()
        self.model.set_phrasing_counts({})
        self.path = path
        p = Path(path)
        self.file_label.setText(f"<b>{p.name}</b>")
        self.path_label.setText(str(p.parent))
        self.model.set_head(head, columns)
        self.begin_scan()
        try:
            self.cards["size"].set_value(human_size(p.stat().st_size))
        except OSError:
            pass
        self.attach_dataset_page()
        self.setCurrentIndex(1)

    def begin_scan(self) -> None:
        """A scan starts (a new file, or the same one with other columns): clear what it will tell."""
        self.report = None
        self.status_label.setText("")
        self.status_label.setToolTip("")
        for key, card in self.cards.items():
            if key != "size":
                card.set_value("…")
        self.problems.clear()
        self.problems_title.setText("Problems")
        self.detail.clear()
        self.training_text.clear()
        self.set_format_lines([])
        self.set_token_line("")
        self.scan_progress.setRange(0, 0)
        self.scan_progress.show()

    def set_table(self, rows: list[tuple[int, Any]]) -> None:
        """A table's rows, read whole (CSV, TSV, a JSON array)."""
        self.model.set_table(rows)
        if self.report is not None:
            self._apply_problem_highlights()

    def set_columns(self, columns: dict[str, str] | None) -> None:
        """Show the rows read with a column mapping (Map columns…)."""
        self.model.set_columns(columns)
        self._refresh_selected()

    def set_format_lines(self, lines: list[str]) -> None:
        """The detected format in words (``core.training.dataset_preview.format_lines``)."""
        self.format_label.setText(" · ".join(lines))
        self.format_label.setVisible(bool(lines))

    def set_token_line(self, text: str) -> None:
        self.tokens_label.setText(text)
        self.tokens_label.setVisible(bool(text))

    def set_map_columns(self, enabled: bool, tip: str, wanted: bool = False) -> None:
        """Offer Map columns… (``wanted``: the file needs it to be read at all)."""
        self.map_columns.setEnabled(enabled)
        self.map_columns.setToolTip(tip)
        font = self.map_columns.font()
        font.setBold(wanted)
        self.map_columns.setFont(font)

    def set_preview_format(self, prepared: Any, loss_on: str, note: str = "") -> None:
        """The base model's prompt format for the training text (a ``PreparedFormat``, or None with
        ``note`` saying why there is none yet), and which answers train."""
        self._prepared = prepared
        self._loss_on = loss_on
        self.training_text.set_note(note)
        row = self._selected_row()
        if row is not None:
            self._show_training_text(row)

    def _selected_row(self) -> ParsedRow | None:
        current = self.table.currentIndex()
        if current.isValid() and self.table.selectionModel().isRowSelected(current.row()):
            return self.model.row_at(current.row())
        return None

    def _refresh_selected(self) -> None:
        current = self.table.currentIndex()
        if self._selected_row() is not None:
            self._show_detail(current)

    def set_index(self, index: Any) -> None:
        self.model.set_index(index)
        if self.report is not None:
            self._apply_problem_highlights()

    @Slot(str, int, int, str)
    def on_scan_progress(self, stage: str, step: int, total: int, message: str) -> None:
        if total > 0:
            self.scan_progress.setRange(0, 1000)
            self.scan_progress.setValue(min(1000, step * 1000 // total))

    def set_report(self, report: ValidationReport) -> None:
        """Fill summary cards and problems from the scan's report."""
        self.report = report
        self.scan_progress.hide()
        sha = report.sha256
        self.cards["records"].set_value(f"{report.n_records:,}")
        self.cards["avg_input"].set_value(f"{report.avg_input_len:.1f}")
        self.cards["avg_output"].set_value(f"{report.avg_output_len:.1f}")
        self.cards["size"].set_value(human_size(report.file_size))
        self.cards["sha"].set_value(sha[:12] or "–", sha)
        n_problems, n_warnings = report.n_problems, report.n_warnings
        self.cards["problems"].set_value(f"{n_problems:,}" + (f" (+{n_warnings} warnings)" if n_warnings else ""))
        self.problems.clear()
        for problem in report.problems:
            self._add_problem(problem, "error")
        for warning in report.warnings:
            self._add_problem(warning, "warning")
        shown = self.problems.count()
        total = n_problems + n_warnings
        more = f" (first {shown} of {total:,})" if shown < total else ""
        self.problems_title.setText(f"Problems: {n_problems:,}, warnings: {n_warnings:,}{more}")
        if report.valid:
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
        if self.model.rowCount() and not self.table.selectionModel().hasSelection():
            self.table.selectRow(0)  # the first row's training text shows at once

    def scan_failed(self, message: str) -> None:
        self.scan_progress.hide()
        self.status_label.setText("✗ could not scan")
        self.status_label.setToolTip(message)

    def _add_problem(self, problem: Problem | DatasetWarning, level: str) -> None:
        line = problem.line
        where = f"Line {line}" if line else "File"
        item = QListWidgetItem(make_icon(level), f"{where}: {problem.message}")
        item.setData(Qt.ItemDataRole.UserRole, line or 0)
        item.setToolTip(f"{problem.kind}: {problem.message}")
        self.problems.addItem(item)

    def _apply_problem_highlights(self) -> None:
        if self.report is None:
            return
        lines = {p.line: p.message for p in self.report.problems if p.line}
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
        self.phrasings.show_question(parsed.cells[QUESTION_COLUMN] if not parsed.error else "")
        self._show_training_text(parsed)

    def _show_training_text(self, parsed: ParsedRow) -> None:
        """The row's training text with its trained span, once the base model's format is known."""
        if parsed.conversation is None:
            self.training_text.show_message(f"Line {parsed.line} is not a conversation the model can train on"
                                            + (f": {parsed.error}" if parsed.error else "; see its problem."))
            return
        if self._prepared is None:
            self.training_text.clear()
            return
        from core.training.dataset_preview import training_segments

        try:
            segments = training_segments(parsed.conversation, self._prepared.fmt, self._loss_on)
        except Exception as exc:  # noqa: BLE001 - a template that cannot render one row: say so, keep going
            logger.warning("cannot render line %d: %s", parsed.line, exc)
            self.training_text.show_message(f"Cannot render line {parsed.line}: {exc}")
            return
        self.training_text.show_segments(segments, self._prepared.special_tokens)

    def show_phrasings(self, rows: list[PhrasingRow], dropped: set[str], summary: str) -> None:
        """The variants of every question: the count column and the selected record's list."""
        self.phrasings.set_rows(rows, dropped, summary)
        self.model.set_phrasing_counts(self.phrasings.counts())
        current = self.table.currentIndex()
        if current.isValid():
            self._show_detail(current)

    @Slot(str, bool)
    def refresh_phrasing_counts(self, _text: str = "", _dropped: bool = False) -> None:
        self.model.set_phrasing_counts(self.phrasings.counts())
