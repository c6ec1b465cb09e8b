"""Garbage collection only on the GUI thread.

Python's cyclic collector runs in whichever thread happens to allocate when a threshold is
crossed. If that is a worker thread (importing numpy, relaying training events), it can
destroy Qt wrapper objects that belong to the GUI thread, which crashes Qt. So while the
window lives, automatic collection is off and a timer on the GUI thread collects instead,
using the same generation thresholds (the approach pyqtgraph documents for Qt apps).
"""

from __future__ import annotations

import gc
import logging

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Slot

logger = logging.getLogger(__name__)

INTERVAL_MS = 500


class GuiThreadCollector(QObject):
    """Collects garbage on a timer in the thread it lives in (the GUI thread)."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect)
        gc.disable()
        self._timer.start()

    @Slot()
    def collect(self) -> None:
        """Collect the oldest generation whose count passed its threshold, as gc itself would."""
        thresholds, counts = gc.get_threshold(), gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return


def install(app: QCoreApplication) -> GuiThreadCollector:
    """Install the collector once per application (idempotent); returns it."""
    existing = app.findChild(GuiThreadCollector)
    if existing is not None:
        return existing
    collector = GuiThreadCollector(app)
    collector.setObjectName("guiThreadCollector")
    logger.debug("automatic garbage collection moved to the GUI thread")
    return collector
