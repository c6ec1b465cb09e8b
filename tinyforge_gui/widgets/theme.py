"""Fusion style with the system palette (light or dark), plus small palette/font touches.

No application-wide stylesheet: QStyleSheetStyle makes every widget slower to polish, which
costs start-up time. Emphasis is set through fonts and palette roles instead, so it follows the
system's light or dark palette.
"""

from __future__ import annotations

import logging

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication, QWidget

logger = logging.getLogger(__name__)

ACCENT = "#e8590c"
STATE_COLOURS = {"ok": "#2f9e44", "completed": "#40c057", "error": "#e03131", "failed": "#fa5252",
                 "cancelled": "#868e96", "running": "#4c9be8"}


def apply_theme(app: QApplication) -> None:
    """Fusion everywhere (consistent on every OS); colours come from the system palette."""
    app.setStyle("Fusion")


def style_label(widget: QWidget, role: str) -> None:
    """``title`` / ``value`` / ``section`` (bigger or bold), ``dim`` (secondary text colour)."""
    font = QFont(widget.font())
    if role == "title":
        font.setPointSizeF(font.pointSizeF() + 9)
        font.setBold(True)
    elif role == "value":
        font.setPointSizeF(font.pointSizeF() + 3)
        font.setBold(True)
    elif role in ("section", "name"):
        font.setBold(True)
        if role == "name":
            font.setPointSizeF(font.pointSizeF() + 2)
    widget.setFont(font)
    if role == "dim":
        pal = widget.palette()
        pal.setColor(QPalette.ColorRole.WindowText, pal.color(QPalette.ColorRole.PlaceholderText))
        widget.setPalette(pal)


def set_state_colour(widget: QWidget, state: str) -> None:
    """Colour a label's text or a progress bar's chunk by state (ok, error, completed, …)."""
    colour = STATE_COLOURS.get(state)
    pal = QApplication.palette(widget)
    if colour:
        pal.setColor(QPalette.ColorRole.WindowText, QColor(colour))
        pal.setColor(QPalette.ColorRole.Highlight, QColor(colour))
    widget.setPalette(pal)


def accent_button(widget: QWidget) -> None:
    """The primary action: accent background, white bold text."""
    pal = widget.palette()
    # Active and inactive only: a disabled primary button keeps the greyed system look.
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        pal.setColor(group, QPalette.ColorRole.Button, QColor(ACCENT))
        pal.setColor(group, QPalette.ColorRole.ButtonText, QColor("white"))
    widget.setPalette(pal)
    font = QFont(widget.font())
    font.setBold(True)
    widget.setFont(font)
