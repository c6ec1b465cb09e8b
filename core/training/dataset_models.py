"""The typed shapes of the dataset engine (pydantic): a record, a problem, a warning, a report.

Kept apart from :mod:`core.training.dataset` so that module imports without pydantic, and a
large scan starts its worker processes before these load.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["DatasetWarning", "Problem", "Record", "ValidationReport"]


class Record(BaseModel):
    """One training pair. Unknown keys are kept (and reported as warnings by validation)."""

    model_config = ConfigDict(extra="allow", strict=True)

    input: str
    output: str
    metadata: dict[str, Any] | None = None


class Problem(BaseModel):
    """A line that is not a usable record (``line`` None for whole-file problems)."""

    line: int | None
    kind: str
    message: str


class DatasetWarning(BaseModel):
    """A usable record that looks suspicious (empty string, duplicate, unknown key, very long)."""

    line: int | None
    kind: str
    message: str


class ValidationReport(BaseModel):
    """What :func:`validate_file` found; ``model_dump()`` is what ``foremforge validate --json`` prints."""

    path: str
    n_records: int
    n_lines: int
    avg_input_len: float
    avg_output_len: float
    file_size: int
    sha256: str
    problems: list[Problem]
    n_problems: int
    problem_counts: dict[str, int]
    warnings: list[DatasetWarning]
    n_warnings: int
    warning_counts: dict[str, int]
    valid: bool
    format: str | None = None  # the format rule the file's rows fit (core.training.formats)
    format_counts: dict[str, int] = {}  # rows per rule; more than one rule makes the file invalid
