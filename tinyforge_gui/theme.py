"""Fusion style, the system palette (light or dark) and a small palette-aware stylesheet."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QApplication

from tinyforge_gui.resources import resource_path

logger = logging.getLogger(__name__)


def apply_theme(app: QApplication) -> None:
    """Use Fusion and the bundled stylesheet; colours come from the system palette."""
    app.setStyle("Fusion")
    path = resource_path("style.qss")
    if path is None:
        return
    try:
        app.setStyleSheet(path.read_text(encoding="utf-8"))
    except OSError as exc:
        logger.warning("cannot read the stylesheet: %s", exc)
