"""Small shared widgets: icons, the message bar with details on demand, summary cards."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStatusBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tinyforge_gui.resources import icon_path
from tinyforge_gui.widgets.theme import style_label

logger = logging.getLogger(__name__)

_ICONS: dict[str, QIcon] = {}


def make_icon(name: str) -> QIcon:
    """An SVG icon from resources/icons (cached; scales crisply on high-DPI screens)."""
    icon = _ICONS.get(name)
    if icon is None:
        icon = QIcon(icon_path(name))
        _ICONS[name] = icon
    return icon


class MessageBar(QFrame):
    """A dismissible in-window message (info / warning / error) with optional details."""

    closed = Signal()

    _COLOURS = {
        "info": ("#1c7ed6", "rgba(28,126,214,0.12)"),
        "warning": ("#e8590c", "rgba(232,89,12,0.12)"),
        "error": ("#e03131", "rgba(224,49,49,0.12)"),
        "success": ("#2f9e44", "rgba(47,158,68,0.12)"),
    }
    _ICON_NAMES = {"info": "running", "warning": "warning", "error": "error", "success": "ok"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.level = "info"
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 6, 6, 6)
        outer.setSpacing(4)
        row = QHBoxLayout()
        self.icon = QLabel()
        self.icon.setFixedSize(20, 20)
        self.text = QLabel()
        self.text.setObjectName("messageText")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = QPushButton("Details")
        self.details_button.setObjectName("messageDetailsButton")
        self.details_button.setCheckable(True)
        self.details_button.setToolTip("Show the technical details")
        self.details_button.setAccessibleName("Show details")
        self.details_button.toggled.connect(self._toggle_details)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss this message")
        close.setAccessibleName("Dismiss message")
        close.clicked.connect(self.dismiss)
        row.addWidget(self.icon)
        row.addWidget(self.text, 1)
        row.addWidget(self.details_button)
        row.addWidget(close)
        outer.addLayout(row)
        self.details = QPlainTextEdit()
        self.details.setObjectName("messageDetails")
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(160)
        self.details.setAccessibleName("Message details")
        self.details.hide()
        outer.addWidget(self.details)
        self.hide()

    def show_message(self, level: str, message: str, details: str = "") -> None:
        self.level = level if level in self._COLOURS else "info"
        fg, bg = self._COLOURS[self.level]
        self.setStyleSheet(
            f"#messageBar {{ background: {bg}; border: 1px solid {fg}; border-radius: 6px; }}"
        )
        self.icon.setPixmap(make_icon(self._ICON_NAMES[self.level]).pixmap(18, 18))
        self.text.setText(message)
        self.details.setPlainText(details)
        self.details_button.setVisible(bool(details))
        self.details_button.setChecked(False)
        self.details.hide()
        self.show()

    @Slot(bool)
    def _toggle_details(self, on: bool) -> None:
        self.details.setVisible(on)

    @Slot()
    def dismiss(self) -> None:
        self.hide()
        self.closed.emit()


class StatCard(QFrame):
    """A small caption + value tile for the dataset summary."""

    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(0)
        self.value = QLabel("–")
        self.value.setObjectName("statValue")
        style_label(self.value, "value")
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption = QLabel(caption)
        self.caption.setObjectName("statCaption")
        style_label(self.caption, "dim")
        layout.addWidget(self.value)
        layout.addWidget(self.caption)
        self.setAccessibleName(caption)

    def set_value(self, text: str, tooltip: str = "") -> None:
        self.value.setText(text)
        self.setToolTip(tooltip or text)


class Notifier:
    """How controllers speak to the user: the message bar (with details on demand) and the
    status bar; every message is logged too. Controllers get this, never the window."""

    def __init__(self, message_bar: MessageBar, status_bar: QStatusBar) -> None:
        self._bar = message_bar
        self._status = status_bar

    def show_message(self, level: str, message: str, details: str = "") -> None:
        self._bar.show_message(level, message, details)
        log_level = {"error": logging.ERROR, "warning": logging.WARNING}.get(level, logging.INFO)
        logger.log(log_level, "%s", message)

    def hide_message(self) -> None:
        self._bar.hide()

    def status(self, text: str, timeout_ms: int = 0) -> None:
        """A transient line in the status bar (0: until the next one)."""
        self._status.showMessage(text, timeout_ms)
