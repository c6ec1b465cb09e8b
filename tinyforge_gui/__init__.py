"""TinyForge Studio desktop app (PySide6). Drives :mod:`core` on worker threads."""

from __future__ import annotations

ORGANIZATION = "TinyForge"
APPLICATION = "TinyForge Studio"
