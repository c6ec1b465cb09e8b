"""Loss chart for real training; pyqtgraph loads on the first point so start-up stays fast."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from tinyforge_gui.widgets.theme import style_label

logger = logging.getLogger(__name__)

SERIES = {"loss": "#e8590c", "eval_loss": "#1c7ed6"}


class LossChart(QWidget):
    """Shows ``loss`` / ``eval_loss`` Metric values against the step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lossChart")
        self.setAccessibleName("Loss chart")
        self.setToolTip("Training and eval loss of a real training run")
        self.points: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in SERIES}
        self._stack = QStackedLayout(self)
        self._placeholder = QLabel("The loss curve appears here during real training.")
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setObjectName("hintLabel")
        style_label(self._placeholder, "dim")
        self._stack.addWidget(self._placeholder)
        self._plot: Any = None
        self._legend: Any = None
        self._curves: dict[str, Any] = {}

    def _ensure_plot(self) -> None:
        if self._plot is not None:
            return
        import pyqtgraph as pg  # lazy: ~100 ms of imports

        pal = self.palette()
        plot = pg.PlotWidget(background=pal.color(QPalette.ColorRole.Base))
        plot.setObjectName("lossPlot")
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("bottom", "step")
        plot.setLabel("left", "loss")
        self._legend = plot.addLegend(offset=(-10, 10))
        for name, colour in SERIES.items():
            # No name here: a series joins the legend with its first point (see add_metric), so
            # eval_loss, drawn only when early stopping checks the held-out phrasings, is not
            # announced by a legend entry with nothing behind it.
            self._curves[name] = plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=4,
                                           symbolBrush=colour, symbolPen=None)
        self._plot = plot
        self._stack.addWidget(plot)
        self._stack.setCurrentWidget(plot)

    @Slot(int, dict)
    def add_metric(self, step: int, values: dict[str, float]) -> None:
        wanted = {k: v for k, v in values.items() if k in SERIES}
        if not wanted:
            return
        self._ensure_plot()
        for name, value in wanted.items():
            xs, ys = self.points[name]
            if not xs:
                self._legend.addItem(self._curves[name], name)
            xs.append(float(step))
            ys.append(float(value))
            self._curves[name].setData(xs, ys)

    def legend_names(self) -> list[str]:
        """The series the legend lists (those with at least one point)."""
        return [] if self._legend is None else [label.text for _, label in self._legend.items]

    def count(self) -> int:
        return sum(len(xs) for xs, _ in self.points.values())

    @Slot()
    def clear(self) -> None:
        self.points = {name: ([], []) for name in SERIES}
        if self._legend is not None:
            self._legend.clear()
        for curve in self._curves.values():
            curve.setData([], [])
        self._stack.setCurrentIndex(0 if self._plot is None else 1)
