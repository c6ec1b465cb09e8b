"""Export errors: user mistakes with messages worth showing as they are."""

from __future__ import annotations


class ExportError(ValueError):
    """The export cannot proceed; the message says why and what to do."""


class OutputExistsError(ExportError):
    """The output folder already exists and ``overwrite`` was not asked for."""
