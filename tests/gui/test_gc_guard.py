"""Garbage collection happens on the GUI thread, never in a worker thread."""

from __future__ import annotations

import gc

from PySide6.QtWidgets import QApplication

from tinyforge_gui.gc_guard import GuiThreadCollector, install
from tinyforge_gui.main_window import MainWindow


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_window_moves_collection_to_the_gui_thread(qtbot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    app = QApplication.instance()
    collector = app.findChild(GuiThreadCollector)
    assert collector is not None and install(app) is collector  # once per application
    assert not gc.isenabled()

    gc.collect()
    for _ in range(gc.get_threshold()[0] + 10):
        _Cycle()
    assert gc.get_count()[0] > gc.get_threshold()[0]
    qtbot.waitUntil(lambda: gc.get_count()[0] < gc.get_threshold()[0], timeout=5000)
