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
    """(section, name, value) rows of an export report, in reading order."""
    rows: list[tuple[str, str, str]] = []
    if report.served_precision:
        rows.append(("Served", "precision", report.served_precision))
        if report.served_reason:
            rows.append(("Served", "why", report.served_reason))
    for precision, part in report.candidates.items():
        if not part.checked:  # a faster candidate passed first
            rows.append(("Candidates", precision, part.note or "not checked"))
            continue
        verdict = "served" if part.served else ("passed" if part.passed else "failed the gate")
        size = human_size(part.size_bytes) if part.size_bytes else "–"
        ms = f"{part.ms_per_token:.1f} ms/token" if part.ms_per_token else "– ms/token"
        agreement = ("" if precision == "fp32" else
                     f", agreement {_pct(part.teacher_forced_agreement)}, greedy match "
                     f"{_pct(part.generation_match_rate)}")
        rows.append(("Candidates", precision, f"{verdict}: {size}, {ms}{agreement}"))
    sizes = report.sizes
    if sizes:
        if "torch_parameters" in sizes:
            rows.append(("Sizes", "parameters", f"{int(sizes['torch_parameters'] or 0):,}"))
        if "fp32_bytes" in sizes:
            rows.append(("Sizes", "ONNX fp32", human_size(int(sizes["fp32_bytes"] or 0))))
        if "int8_bytes" in sizes:
            ratio = sizes.get("int8_to_fp32_ratio")
            extra = f" ({ratio * 100:.0f} % of fp32)" if isinstance(ratio, int | float) else ""
            rows.append(("Sizes", "ONNX int8", human_size(int(sizes["int8_bytes"] or 0)) + extra))
    served = report.served_precision or "int8"
    for precision in dict.fromkeys(("fp32", served)):  # fp32 and what the service serves
        parity = report.parity_of(precision)
        if parity is None or not parity.checked:
            continue
        section = f"Parity {precision} vs torch"
        verdict = "passed" if parity.passed else "FAILED"
        compared = "?" if parity.n_compared is None else parity.n_compared
        rows.append((section, "result", f"{verdict} on {compared} input(s)"))
        rows.append((section, "max_abs_logit_diff", _num(parity.max_abs_logit_diff)))
        rows.append((section, "generation match rate", _pct(parity.generation_match_rate)))
        rows.append((section, "token agreement", _pct(parity.mean_token_agreement)))
        if "teacher_forced_agreement" in parity.model_fields_set:
            rows.append((section, "teacher-forced agreement", _pct(parity.teacher_forced_agreement)))
    for key, name in dict.fromkeys((("torch", "torch"), ("onnx_fp32", "ONNX fp32"), (f"onnx_{served}", f"ONNX {served}"))):
        latency = report.latency_of(key)
        if latency is not None and latency.median_ms_per_token is not None:
            rows.append(("Latency per token", name, f"{latency.median_ms_per_token:.3f} ms"
                         f" (prefill {latency.median_prefill_ms or 0:.2f} ms)"))
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
    for key in ("exporter", "opset", "architecture", "base_model", "service_precision"):
        value = getattr(report, key)
        if value is not None:
            rows.append(("Export", key.replace("_", " "), str(value)))
    return rows


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
        self.export_report = None
        self.stages.clear()
        self.table.setRowCount(0)
        self.warnings.hide()
        self.json_button.setEnabled(False)
        self.title.setText(f"Exporting <b>{Path(run_dir).name}</b>…" if run_dir else "Exporting…")

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
        rows = report_rows(report)
        self.table.setRowCount(len(rows))
        previous = ""
        for row, (section, name, value) in enumerate(rows):
            cells = (section if section != previous else "", name, value)
            previous = section
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0:
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

