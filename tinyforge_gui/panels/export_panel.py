"""The Export tab: live export stages, the export report as a table, drift warnings, and the
Start/Stop Service button with the service's URL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.panels.dataset_panel import human_size
from tinyforge_gui.widgets.common import make_icon
from tinyforge_gui.widgets.theme import style_label

if TYPE_CHECKING:
    from core.run_layout import ExportReport

logger = logging.getLogger(__name__)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f} %"


def report_rows(report: ExportReport) -> list[tuple[str, str, str]]:
    """(section, name, value) rows of an export report, in reading order: what is served, each
    ONNX precision the report describes, the trained model, the self-test, GGUF, the export."""
    rows: list[tuple[str, str, str]] = []
    if report.served_precision:
        rows.append(("Served", "precision", report.served_precision))
        if report.served_reason:
            rows.append(("Served", "why", report.served_reason))
    for precision in report.precisions():
        rows.extend(_precision_rows(report, precision))
    torch_section = "Trained model (torch)"
    parameters = report.sizes.get("torch_parameters")
    if parameters is not None:
        rows.append((torch_section, "parameters", f"{int(parameters):,}"))
    torch_latency = _latency_text(report, "torch")
    if torch_latency:
        rows.append((torch_section, "latency", torch_latency))
    test = report.self_test
    if test is not None and (test.model_fields_set or test.model_extra):
        if test.skipped:
            rows.append(("Service self-test", "result", "skipped"))
        else:
            verdict = "passed" if test.passed else "FAILED"
            rows.append(("Service self-test", "result",
                         f"{verdict}: {test.n_matched or 0}/{test.n_checked or 0} answers match"))
            if test.latency_ms_median is not None:
                rows.append(("Service self-test", "request latency", f"{test.latency_ms_median:.1f} ms"))
            if test.error:
                rows.append(("Service self-test", "error", test.error))
    rows.extend(_gguf_rows(report))
    if report.model_stub:
        rows.append(("Export", "note", "dry-run service: placeholders, no model to run"))
    for key in ("exporter", "opset", "architecture", "base_model"):
        value = getattr(report, key)
        if value is not None:
            rows.append(("Export", key.replace("_", " "), str(value)))
    return rows


def _precision_rows(report: ExportReport, precision: str) -> list[tuple[str, str, str]]:
    """One ONNX precision's rows: verdict, what the graph is, size, latency (where measured) and
    parity with the trained model (or why it was not checked)."""
    part = report.candidate(precision)
    section = f"ONNX {precision}"
    if part.served:
        verdict = "served"
    elif not part.checked:
        verdict = "skipped"
    elif part.passed is None:
        verdict = "not served"
    else:
        verdict = "passed, not served" if part.passed else "FAILED the gate"
    if not part.kept:
        verdict += " (not shipped)"
    rows = [(section, "verdict", verdict)]
    if part.description:
        rows.append((section, "graph", part.description))
    if part.size_bytes:
        fp32 = report.sizes.get("fp32_bytes")
        share = f" ({part.size_bytes / fp32 * 100:.0f} % of fp32)" if precision != "fp32" and fp32 else ""
        rows.append((section, "size", human_size(part.size_bytes) + share))
    latency = _latency_text(report, f"onnx_{precision}", part.ms_per_token, part.speedup_vs_torch)
    if latency:
        rows.append((section, "latency", latency))
    rows.append((section, "parity", _parity_text(report, precision)))
    return rows


def _latency_text(report: ExportReport, backend: str, ms: float | None = None,
                  speedup: float | None = None) -> str:
    """"0.298 ms/token (prefill 0.80 ms), 6.3× torch", or "" where it was not measured."""
    latency = report.latency_of(backend)
    if latency is not None and latency.median_ms_per_token is not None:
        ms = latency.median_ms_per_token
    if not ms:
        return ""
    text = f"{ms:.3f} ms/token"
    if latency is not None and latency.median_prefill_ms is not None:
        text += f" (prefill {latency.median_prefill_ms:.2f} ms)"
    return text + (f", {speedup:.1f}× torch" if speedup else "")


def _parity_text(report: ExportReport, precision: str) -> str:
    """Agreement with the trained model: teacher-forced agreement, greedy match, max |logit
    diff| and how many inputs; or "not checked: why"."""
    part = report.candidate(precision)
    parity = report.parity_of(precision)
    if not part.checked or (parity is not None and not parity.checked):
        note = part.note or "a faster candidate passed first"
        return note if note.startswith("not checked") else f"not checked: {note}"
    figures = []
    if part.teacher_forced_agreement is not None:
        figures.append(f"agreement {_pct(part.teacher_forced_agreement)}")
    elif parity is not None and parity.mean_token_agreement is not None:  # reports before teacher forcing
        figures.append(f"token agreement {_pct(parity.mean_token_agreement)}")
    if part.generation_match_rate is not None:
        figures.append(f"greedy match {_pct(part.generation_match_rate)}")
    if parity is not None and parity.max_abs_logit_diff is not None:
        figures.append(f"max |logit diff| {_num(parity.max_abs_logit_diff)}")
    text = ", ".join(figures) or "no figures recorded"
    if parity is not None and parity.n_compared is not None:
        text += f" on {parity.n_compared} input(s)"
    if parity is not None and parity.stopped_early:
        text += ", then stopped: it could no longer pass the gate"
    elif part.note:
        text += f"; {part.note}"
    return text


def _gguf_rows(report: ExportReport) -> list[tuple[str, str, str]]:
    """One row per GGUF file (verdict, size, agreement, speed) and where it was checked."""
    gguf = report.gguf
    if gguf is None or not gguf.files:
        return []
    section = "GGUF (Ollama / llama.cpp)"
    rows = []
    for part in gguf.files:
        if not part.checked:  # a smaller file passed first
            rows.append((section, part.file, f"{part.size_mb or 0:.1f} MB, {part.note or 'not checked'}"))
            continue
        verdict = "recommended" if part.recommended else ("passed" if part.passed else "failed the gate")
        size = f"{part.size_mb:.1f} MB" if part.size_mb is not None else "–"
        speed = f", {part.tokens_per_s:.0f} tokens/s" if part.tokens_per_s else ""
        rows.append((section, part.file, f"{verdict}: {size}, agreement {_pct(part.agreement)}, "
                                         f"greedy match {_pct(part.exact_match)}{speed}"))
    if gguf.checked_in:
        rows.append((section, "checked in", gguf.checked_in))
    tokens = gguf.tokenization
    if tokens is not None and tokens.passed is not None:
        rows.append((section, "tokenizer", f"{'same ids' if tokens.passed else 'DIFFERENT ids'} on "
                                          f"{tokens.n_matched or 0}/{tokens.n_checked or 0} texts"))
    if gguf.modelfile:
        rows.append((section, "Modelfile", gguf.modelfile))
    return rows


class ExportPanel(QWidget):
    """Stage list while exporting; the report table and the service controls afterwards."""

    open_json_requested = Signal(str)  # path of export_report.json
    service_toggled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("exportTab")
        self.run_dir = ""
        self.stages_run = ""  # the run whose export the stage list shows
        self.export_report: ExportReport | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        top = QHBoxLayout()
        self.title = QLabel("Export a trained run to see its report here.")
        self.title.setObjectName("exportTitle")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.title, 1)
        self.json_button = QPushButton(make_icon("file"), "Open JSON")
        self.json_button.setObjectName("openReportJsonButton")
        self.json_button.setToolTip("Open export_report.json in the artifact viewer")
        self.json_button.setEnabled(False)
        self.json_button.clicked.connect(self._open_json)
        top.addWidget(self.json_button)
        layout.addLayout(top)

        self.warnings = QLabel()
        self.warnings.setObjectName("exportWarnings")
        self.warnings.setWordWrap(True)
        self.warnings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warnings.setStyleSheet(
            "#exportWarnings { background: rgba(232,89,12,0.14); border: 1px solid #e8590c;"
            " border-radius: 6px; padding: 6px; font-weight: bold; }"
        )
        self.warnings.hide()
        layout.addWidget(self.warnings)

        self.stages = QListWidget()
        self.stages.setObjectName("exportStages")
        self.stages.setAccessibleName("Export stages")
        self.stages.setToolTip("Stages of the running or last export")
        self.stages.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table = QTableWidget(0, 3)
        self.table.setObjectName("exportReportView")
        self.table.setAccessibleName("Export report")
        self.table.setHorizontalHeaderLabels(["Section", "Measure", "Value"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.stages)
        split.addWidget(self.table)
        split.setStretchFactor(1, 3)
        split.setSizes([260, 640])
        layout.addWidget(split, 1)

        service = QHBoxLayout()
        self.service_button = QPushButton(make_icon("train"), "Start Service")
        self.service_button.setObjectName("serviceButton")
        self.service_button.setToolTip("Run the selected run's service/ on a free local port")
        self.service_button.setEnabled(False)
        self.service_button.clicked.connect(self.service_toggled)
        self.service_url = QLabel("Service stopped")
        self.service_url.setObjectName("serviceUrlLabel")
        self.service_url.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.service_url.setOpenExternalLinks(True)
        style_label(self.service_url, "dim")
        self.copy_url = QToolButton()
        self.copy_url.setObjectName("copyServiceUrlButton")
        self.copy_url.setIcon(make_icon("copy"))
        self.copy_url.setToolTip("Copy the service URL")
        self.copy_url.setAutoRaise(True)
        self.copy_url.setEnabled(False)
        self.copy_url.clicked.connect(self._copy_url)
        service.addWidget(self.service_button)
        service.addWidget(self.service_url, 1)
        service.addWidget(self.copy_url)
        layout.addLayout(service)
        self.url = ""

    # --- export progress ---
    def begin(self, run_dir: str) -> None:
        """An export is starting for ``run_dir``."""
        self.run_dir = run_dir
        self.stages_run = run_dir
        self.export_report = None
        self.stages.clear()
        self.stages.show()
        self.table.setRowCount(0)
        self.warnings.hide()
        self.json_button.setEnabled(False)
        self.title.setText(f"Exporting <b>{Path(run_dir).name}</b>…" if run_dir else "Exporting…")

    def _show_stages(self) -> None:
        """The stage list only beside the run whose export it lists; another run's stored report
        gets the width."""
        self.stages.setVisible(self.stages.count() > 0 and self.stages_run == self.run_dir)

    def _mark(self, upto: int, state: str) -> None:
        icons = {"done": "ok", "running": "running", "failed": "error"}
        for i in range(self.stages.count()):
            item = self.stages.item(i)
            if i < upto:
                item.setIcon(make_icon("ok"))
            elif i == upto:
                item.setIcon(make_icon(icons.get(state, "running")))

    @Slot(str, str)
    def on_stage(self, stage: str, message: str) -> None:
        if stage != "export" or not message or message == "export started":
            return
        name = Path(self.run_dir).name
        self.title.setText(f"Exporting <b>{name}</b>: {message.replace(self.run_dir + '/', '')}")

    @Slot(str, int, int, str)
    def on_progress(self, stage: str, step: int, total: int, message: str) -> None:
        if stage != "export" or step <= 0 or not message:
            return
        texts = [self.stages.item(i).text() for i in range(self.stages.count())]
        if message not in texts:
            self.stages.addItem(QListWidgetItem(make_icon("running"), message))
            self._show_stages()
            texts.append(message)
        self._mark(texts.index(message), "running")

    def finish(self, status: str) -> None:
        count = self.stages.count()
        if status == "completed":
            self._mark(count, "done")
        elif count:
            self._mark(count - 1, "failed")

    # --- report ---
    def show_run(self, run_dir: str) -> bool:
        """Show ``run_dir``'s export report (when it has one); True when shown."""
        from core.run_layout import EXPORT_REPORT_FILE, SERVICE_DIR, RunFileError, read_export_report

        self.run_dir = run_dir
        path = Path(run_dir) / SERVICE_DIR / EXPORT_REPORT_FILE if run_dir else None
        if path is None or not path.is_file():
            self.export_report = None
            self.table.setRowCount(0)
            self.warnings.hide()
            self.json_button.setEnabled(False)
            self._show_stages()
            self.title.setText(f"<b>{Path(run_dir).name}</b> has no export yet." if run_dir
                               else "Export a trained run to see its report here.")
            return False
        try:
            report = read_export_report(path.parent)
        except RunFileError as exc:
            self.title.setText(f"Cannot read {path.name}: {exc.reason}")
            return False
        self.set_report(report, run_dir)
        return True

    def set_report(self, report: ExportReport, run_dir: str = "") -> None:
        self.export_report = report
        if run_dir:
            self.run_dir = run_dir
        self._show_stages()
        rows = report_rows(report)
        self.table.setRowCount(len(rows))
        previous = ""
        for row, (section, name, value) in enumerate(rows):
            cells = (section if section != previous else "", name, value)
            previous = section
            served = (section, name) == ("Served", "precision") or (name, value) == ("verdict", "served")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0 or (col == 2 and served):  # section names, and what is served
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                if "FAILED" in text:
                    item.setForeground(Qt.GlobalColor.red)
                self.table.setItem(row, col, item)
        self.table.resizeRowsToContents()  # a long value (a GGUF file's figures) wraps, not clips
        warnings = report.warnings
        if warnings:
            self.warnings.setText("⚠ " + "<br>⚠ ".join(warnings))
            self.warnings.show()
        else:
            self.warnings.hide()
        self.json_button.setEnabled(True)
        kind = "dry-run placeholders" if report.model_stub else (
            "ONNX service and GGUF" if report.gguf is not None and report.gguf.files else "ONNX service")
        self.title.setText(f"<b>{Path(self.run_dir).name}</b> — {kind}, exported {report.export_time or ''}")

    def value(self, section: str, name: str) -> str:
        """The table's value for (section, name), or "" (tests and screenshots use it)."""
        current = ""
        for row in range(self.table.rowCount()):
            current = self.table.item(row, 0).text() or current
            if current == section and self.table.item(row, 1).text() == name:
                return self.table.item(row, 2).text()
        return ""

    @Slot()
    def _open_json(self) -> None:
        from core.run_layout import EXPORT_REPORT_FILE, SERVICE_DIR

        if self.run_dir:
            self.open_json_requested.emit(str(Path(self.run_dir) / SERVICE_DIR / EXPORT_REPORT_FILE))

    # --- service ---
    def set_service_state(self, state: str, url: str = "", can_start: bool = False) -> None:
        """``state``: stopped | starting | running | stopping."""
        self.url = url if state == "running" else ""
        texts = {"stopped": "Start Service", "starting": "Starting…", "running": "Stop Service",
                 "stopping": "Stopping…"}
        self.service_button.setText(texts.get(state, "Start Service"))
        self.service_button.setIcon(make_icon("cancel" if state == "running" else "train"))
        self.service_button.setEnabled(state == "running" or (state == "stopped" and can_start))
        if state == "running":
            self.service_url.setText(f'Service running at <a href="{url}/docs">{url}</a> '
                                     f'(POST {url}/predict, GET {url}/health)' + _key_note())
        elif state == "starting":
            self.service_url.setText("Starting the service…")
        else:
            self.service_url.setText("Service stopped" if can_start or state != "stopped"
                                     else "Service stopped (export a real model with ONNX to serve it)")
        self.copy_url.setEnabled(bool(self.url))

    @Slot()
    def _copy_url(self) -> None:
        if self.url:
            QGuiApplication.clipboard().setText(self.url)


def _key_note() -> str:
    """Say so when the service inherits an API key from the environment (it then answers 401
    to any client that does not send it)."""
    import os

    if os.environ.get("TINYFORGE_API_KEY", "").strip():
        return ("; it requires the API key set in TINYFORGE_API_KEY (send Authorization: Bearer &lt;key&gt; "
                "on every request but /health)")
    return ""

