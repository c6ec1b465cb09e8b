"""Export errors: user mistakes with messages worth showing as they are.

They are ``ValueError``s (bad input). The two that mirror a file-system condition are also
the matching ``OSError`` subclass, so code written for TinyForgeAI (``except
FileNotFoundError`` / ``except FileExistsError``) keeps catching them.
"""

from __future__ import annotations

__all__ = ["ExportError", "ModelNotFoundError", "OutputExistsError"]


class ExportError(ValueError):
    """The export cannot proceed; the message says why and what to do."""


class ModelNotFoundError(ExportError, FileNotFoundError):
    """The model path does not exist."""


class OutputExistsError(ExportError, FileExistsError):
    """The output folder already exists and ``overwrite`` was not asked for."""
