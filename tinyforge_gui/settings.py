"""Persistent UI state in QSettings: geometry, splitters, last options, recent datasets.

``TINYFORGE_SETTINGS_FILE`` points the app at an INI file instead of the platform store, so
tests and screenshots never read or write a user's real settings.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from tinyforge_gui import APPLICATION, ORGANIZATION

logger = logging.getLogger(__name__)

MAX_RECENT = 8


def open_settings() -> QSettings:
    """The app's settings store (an INI file when ``TINYFORGE_SETTINGS_FILE`` is set)."""
    override = os.environ.get("TINYFORGE_SETTINGS_FILE")
    if override:
        return QSettings(override, QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


class AppSettings:
    """Typed accessors over QSettings; values that are dicts are stored as JSON strings."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store or open_settings()

    # --- recent datasets ---
    def recent_datasets(self) -> list[str]:
        raw = self.store.value("recent/datasets", "[]")
        try:
            items = json.loads(raw) if isinstance(raw, str) else list(raw or [])
        except ValueError:
            items = []
        return [str(p) for p in items if isinstance(p, str)]

    def add_recent_dataset(self, path: str) -> list[str]:
        path = str(Path(path).resolve())
        items = [p for p in self.recent_datasets() if p != path]
        items.insert(0, path)
        items = items[:MAX_RECENT]
        self.store.setValue("recent/datasets", json.dumps(items))
        return items

    def clear_recent(self) -> None:
        self.store.setValue("recent/datasets", "[]")

    # --- options ---
    def options(self) -> dict[str, Any]:
        raw = self.store.value("options/last", "")
        if not raw:
            return {}
        try:
            data = json.loads(str(raw))
        except ValueError:
            logger.warning("ignoring unreadable saved options")
            return {}
        return data if isinstance(data, dict) else {}

    def set_options(self, options: dict[str, Any]) -> None:
        self.store.setValue("options/last", json.dumps(options))

    # --- window state (QByteArray values) ---
    def value(self, key: str, default: Any = None) -> Any:
        return self.store.value(key, default)

    def set_value(self, key: str, value: Any) -> None:
        self.store.setValue(key, value)

    def sync(self) -> None:
        self.store.sync()
