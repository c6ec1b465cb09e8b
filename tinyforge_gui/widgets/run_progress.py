"""The run progress bar's words: short stage names, one text that fits, an ETA only where honest.

Core reports ``Progress(stage, step, total, message)``; the bar shows the current stage's own
fraction and says so in words ("Training · step 28 of 40", "Exporting · ONNX graph (2 of 9)").
Long messages belong in the tooltip and the log: the bar picks the longest of its candidate texts
that fits its label rectangle. Only training steps run at a steady rate, so only they get an ETA;
every other stage shows the time spent in it instead.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QProgressBar, QStyle, QStyleOptionProgressBar, QWidget

logger = logging.getLogger(__name__)

# The stages core emits (core.training.hf_train, core.runs, core.exporter), in words.
STAGE_LABELS = {
    "validate": "Checking the data",
    "load": "Loading the model",
    "train": "Training",
    "evaluate": "Evaluating",
    "variants": "Writing phrasings",
    "save": "Saving the model",
    "export": "Exporting",
    "gguf": "Writing GGUF",
}
# The export's step names (core.exporter.onnx_export), shortened for the bar; any other message is
# shown as it is and dropped when it does not fit.
STEP_LABELS = {
    "loading the trained model": "loading the model",
    "exporting the fp32 onnx graph": "ONNX graph",
    "checking the graphs": "checking graphs",
    "quantizing to int8": "int8 quantization",
    "assembling the service folder": "service folder",
    "checking parity and latency against torch": "parity check",
    "choosing the served precision": "precision",
    "self-testing the service": "self-test",
    "writing the report": "report",
    "writing and checking gguf files": "GGUF files",
}
# Stages whose steps take about the same time each: the rest of the stage can be projected.
# Export steps, evaluation answers (variable lengths) and phrasings are not like that.
STEADY_STAGES = frozenset({"train"})
WARMUP_STEPS = 3  # steps measured (after the first, which includes start-up) before an ETA
WARMUP_SECONDS = 1.0


def stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, stage.replace("_", " ").capitalize() or "Working")


def step_label(message: str) -> str:
    text = message.strip()
    return STEP_LABELS.get(text.lower(), text)


def progress_texts(stage: str, step: int, total: int, message: str) -> list[str]:
    """What the bar may say for one Progress event, most detailed first (the bar shows the first
    that fits). Counts are the stage's own, never mixed with the whole run's share."""
    label = stage_label(stage)
    # Training's messages are its own ETA ("ETA 0:01:10") or "starting": the ETA has its label.
    detail = "" if stage in STEADY_STAGES else step_label(message)
    if total <= 0:
        return [f"{label} · {detail}", label] if detail else [label]
    count = f"{step:,} of {total:,}"
    if stage in STEADY_STAGES:
        return [f"{label} · step {count}", f"{label} · {count}", f"{step:,}/{total:,}"]
    if detail:
        return [f"{label} · {detail} ({count})", f"{label} · {count}", f"{step:,}/{total:,}"]
    return [f"{label} · {count}", f"{step:,}/{total:,}"]


class StepRate:
    """Projects the time left in a stage from its steady step rate.

    The first step seen is only the baseline's predecessor: the interval up to the next one holds
    start-up work (loading, the first batch). The rate is measured from the second step seen on,
    and reported only after ``WARMUP_STEPS`` steps and ``WARMUP_SECONDS`` of measurement.
    """

    def __init__(self) -> None:
        self._first_step: int | None = None
        self._base: tuple[int, float] | None = None  # (step, time) the rate is measured from
        self._last: tuple[int, float] | None = None

    def reset(self) -> None:
        self._first_step, self._base, self._last = None, None, None

    def add(self, step: int, now: float) -> None:
        if self._last is not None and step < self._last[0]:  # a new stage of the same name
            self.reset()
        if self._first_step is None:
            self._first_step = step
        elif self._base is None and step > self._first_step:
            self._base = (step, now)
        self._last = (step, now)

    def remaining(self, total: int, now: float | None = None) -> float | None:
        """Seconds left to reach ``total`` (counting down from the last step to ``now``); None
        while there is no honest estimate."""
        if self._base is None or self._last is None:
            return None
        steps = self._last[0] - self._base[0]
        seconds = self._last[1] - self._base[1]
        if steps < WARMUP_STEPS or seconds < WARMUP_SECONDS or self._last[0] >= total:
            return None
        since_last = 0.0 if now is None else max(0.0, now - self._last[1])
        return max(0.0, (total - self._last[0]) * seconds / steps - since_last)


class FittedProgressBar(QProgressBar):
    """A progress bar whose text is the first of several candidates that fits inside it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._texts: list[str] = [""]
        self.setTextVisible(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)

    def set_texts(self, texts: list[str] | str) -> None:
        """Show the first of ``texts`` that fits (the last one elided when none does)."""
        self._texts = [texts] if isinstance(texts, str) else (list(texts) or [""])
        self._fit()

    def texts(self) -> list[str]:
        return list(self._texts)

    def label_width(self) -> int:
        """Pixels the style gives the text (Fusion: the whole bar less its frame and a margin)."""
        option = QStyleOptionProgressBar()
        self.initStyleOption(option)
        rect = self.style().subElementRect(QStyle.SubElement.SE_ProgressBarLabel, option, self)
        return max(0, rect.width() - 8)

    def _fit(self) -> None:
        metrics = self.fontMetrics()
        room = self.label_width()
        chosen = next((t for t in self._texts if metrics.horizontalAdvance(t) <= room), None)
        if chosen is None:
            chosen = metrics.elidedText(self._texts[-1], Qt.TextElideMode.ElideRight, room)
        self.setFormat(chosen.replace("%", "%%"))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._fit()
