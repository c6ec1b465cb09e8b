"""The Playground tab: one question, up to four answers side by side (base model, fine-tuned torch
model, the ONNX service at its served precision, the recommended GGUF in llama.cpp), each with
its latency. The answers come from a worker thread; a new question cancels the old one and late
answers of an old question are ignored."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.models.prompting import DEFAULT_MAX_NEW_TOKENS
from tinyforge_gui.widgets.common import make_icon
from tinyforge_gui.widgets.theme import style_label

logger = logging.getLogger(__name__)

KINDS: tuple[tuple[str, str], ...] = (
    ("base", "Base model"),
    ("tuned", "Fine-tuned (torch)"),
    ("onnx", "ONNX (the service's precision)"),
    ("gguf", "GGUF (llama.cpp)"),
)


def playground_sources(run_dir: str) -> dict[str, dict[str, Any]]:
    """What each answer needs for ``run_dir`` (kinds the run cannot give are left out)."""
    if not run_dir:
        return {}
    from core.run_layout import (
        MODEL_DIR,
        ONNX_DIR,
        ONNX_META_FILE,
        SERVICE_DIR,
        RunFileError,
        read_model_manifest,
        read_run,
    )

    run = Path(run_dir)
    sources: dict[str, dict[str, Any]] = {}
    try:
        manifest = read_model_manifest(run / MODEL_DIR)
    except RunFileError:
        return {}
    if manifest.model_type != "tinyforge_hf":
        return {}  # a dry run's stub
    try:
        options = read_run(run).options
    except RunFileError:
        options = None
    train = options.train if options is not None else None
    # Without a readable run.json: seed 0 and 256 tokens, as before the run layout existed.
    sources["base"] = {"base_model": manifest.base_model or (train.base_model if train else ""),
                       "seed": train.seed if train else 0, "max_length": train.max_length if train else 256}
    sources["tuned"] = {"model_dir": str(run / MODEL_DIR)}
    if (run / SERVICE_DIR / ONNX_DIR / ONNX_META_FILE).is_file():
        # None: what the service serves; the label names the graph that will answer, resolved as
        # the runtime resolves it (a served precision whose files are gone falls back to fp32).
        sources["onnx"] = {"service_dir": str(run / SERVICE_DIR), "precision": None,
                           "served": _served_precision(run / SERVICE_DIR)}
    gguf = _recommended_gguf(run / SERVICE_DIR)
    if gguf is not None:
        sources["gguf"] = {"path": str(gguf)}
    return sources


def _served_precision(service: Path) -> str:
    """The precision the ONNX runtime loads for ``service`` when none is asked for."""
    from core.exporter.errors import ExportError
    from core.exporter.onnx_predict import served_precision

    try:
        return served_precision(service)
    except ExportError as exc:  # the runtime will say so when asked; the label names its default
        logger.info("cannot read the served precision of %s: %s", service, exc)
        return "fp32"


def _recommended_gguf(service: Path) -> Path | None:
    """The GGUF file the export recommended, when it is there (its report says which)."""
    from core.run_layout import GGUF_DIR, RunFileError, read_export_report

    try:
        report = read_export_report(service)
    except RunFileError:
        return None
    name = report.gguf.recommended if report.gguf is not None else None
    path = service / GGUF_DIR / name if name else None
    return path if path is not None and path.is_file() else None


_UNAVAILABLE = {"onnx": "Export with ONNX to compare the served model.",
                "gguf": "Export with GGUF to compare the model llama.cpp and Ollama run."}


class AnswerCard(QFrame):
    """One model's answer and latency."""

    def __init__(self, kind: str, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"playground_{kind}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        self.title = QLabel(f"<b>{title}</b>")
        self.latency = QLabel("")
        self.latency.setObjectName(f"playgroundLatency_{kind}")
        style_label(self.latency, "dim")
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.latency)
        layout.addLayout(head)
        self.text = QPlainTextEdit()
        self.text.setObjectName(f"playgroundAnswer_{kind}")
        self.text.setReadOnly(True)
        self.text.setAccessibleName(f"{title} answer")
        layout.addWidget(self.text, 1)
        self.answered = False

    def reset(self, available: bool, note: str) -> None:
        self.answered = False
        self.text.setPlainText("" if available else note)
        self.latency.setText("…" if available else "")
        self.setEnabled(available)

    def show_answer(self, text: str, ms: float, error: str) -> None:
        self.answered = True
        if error:
            self.text.setPlainText(f"(error) {error}")
            self.latency.setText(f"{ms:,.0f} ms")
        else:
            self.text.setPlainText(text or "(empty answer)")
            self.latency.setText(f"{ms:,.0f} ms")


class PlaygroundPanel(QWidget):
    """Input, Ask button, and the three answer cards."""

    ask_requested = Signal(str, int)  # text, max new tokens

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("playgroundTab")
        self.run_dir = ""
        self.request = 0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.source_label = QLabel("Select a real trained run in the Artifacts tab to try it here.")
        self.source_label.setObjectName("playgroundSource")
        self.source_label.setWordWrap(True)
        layout.addWidget(self.source_label)
        row = QHBoxLayout()
        self.input = QLineEdit()
        self.input.setObjectName("playgroundInput")
        self.input.setPlaceholderText("Type a question and press Enter…")
        self.input.setAccessibleName("Playground question")
        self.input.returnPressed.connect(self._ask)
        self.max_tokens = QSpinBox()
        self.max_tokens.setObjectName("playgroundMaxTokens")
        self.max_tokens.setRange(1, 1024)
        self.max_tokens.setValue(DEFAULT_MAX_NEW_TOKENS)  # the answer length of predict and the service
        self.max_tokens.setPrefix("max ")
        self.max_tokens.setSuffix(" tokens")
        self.max_tokens.setToolTip("Most new tokens per answer (byte-level tiny models need ~1 per character)")
        self.run_button = QPushButton(make_icon("train"), "Ask")
        self.run_button.setObjectName("playgroundRunButton")
        self.run_button.setToolTip("Answer with the base, fine-tuned and exported (served precision) models")
        self.run_button.clicked.connect(self._ask)
        row.addWidget(self.input, 1)
        row.addWidget(self.max_tokens)
        row.addWidget(self.run_button)
        layout.addLayout(row)
        grid = QGridLayout()
        self.cards: dict[str, AnswerCard] = {}
        for col, (kind, title) in enumerate(KINDS):
            card = AnswerCard(kind, title)
            self.cards[kind] = card
            grid.addWidget(card, 0, col)
        layout.addLayout(grid, 1)
        self.status = QLabel("")
        self.status.setObjectName("playgroundStatus")
        style_label(self.status, "dim")
        layout.addWidget(self.status)
        self.sources: dict[str, dict[str, Any]] = {}
        self._update_enabled()

    def set_run(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.sources = playground_sources(run_dir)
        if not run_dir:
            self.source_label.setText("Select a real trained run in the Artifacts tab to try it here.")
        elif not self.sources:
            self.source_label.setText(f"<b>{Path(run_dir).name}</b> has no real trained model "
                                      "(dry run, or not trained yet).")
        else:
            base = self.sources["base"]["base_model"]
            onnx = (f"ONNX service ({self.sources['onnx']['served']})" if "onnx" in self.sources
                    else "no ONNX export yet")
            gguf = f", GGUF {Path(self.sources['gguf']['path']).name}" if "gguf" in self.sources else ""
            self.source_label.setText(f"<b>{Path(run_dir).name}</b>: base {base}, fine-tuned model/, {onnx}{gguf}")
        self._update_enabled()

    def _update_enabled(self) -> None:
        self.run_button.setEnabled(bool(self.sources))

    @Slot()
    def _ask(self) -> None:
        text = self.input.text().strip()
        if not text or not self.sources:
            return
        self.request += 1
        for kind, card in self.cards.items():
            card.reset(kind in self.sources, _UNAVAILABLE.get(kind, "Not available for this run."))
        self.status.setText("Answering… (the first question loads the models)")
        self.ask_requested.emit(text, self.max_tokens.value())

    @Slot(int, str, str, float, str)
    def on_answer(self, request: int, kind: str, text: str, ms: float, error: str) -> None:
        if request != self.request or kind not in self.cards:
            return  # an answer to an older question
        self.cards[kind].show_answer(text, ms, error)
        if all(self.cards[k].answered for k in self.sources):
            self.status.setText("Done. Latencies include loading on the first question.")

    def answers(self) -> dict[str, str]:
        """The shown answers by kind (tests and screenshots use it)."""
        return {k: c.text.toPlainText() for k, c in self.cards.items() if c.answered}
