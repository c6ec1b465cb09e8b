"""The window's shared state in plain Python: the dataset, the runs, the service; no Qt.

Controllers change it through :meth:`StudioState.update`; whoever renders it (the main window,
tests) subscribes and is told which fields changed. Enums name the states and the workers once.
Results are held as core's models (a dataset scan's ``ValidationReport``, a run's ``Estimate``),
imported here for typing only: this module loads before the first paint, pydantic after it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.run_layout import Estimate
    from core.training.dataset_models import ValidationReport

logger = logging.getLogger(__name__)

__all__ = ["SCAN_FAILED", "RunStatus", "ServiceState", "StudioState", "Task", "failed_scan_report", "scan_failure"]


class Task(StrEnum):
    """The kinds of background work; a worker carries its kind as its name."""

    WARMUP = "warmup"
    INDEX = "index"
    VALIDATE = "validate"
    RUN = "run"
    ESTIMATE = "estimate"
    LORA_TARGETS = "lora-targets"
    PLAYGROUND = "playground"
    SERVICE = "service"
    VARIANTS = "variants"
    TABLE = "table"  # reading a CSV/TSV/JSON table's rows for the Dataset tab
    PREVIEW = "preview"  # reading the base model's tokenizer and prompt format for the preview
    TOKEN_STATS = "token-stats"  # token lengths of the dataset's training texts


class RunStatus(StrEnum):
    """Where the current (or last) run stands; NONE before the first run."""

    NONE = ""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.NONE, RunStatus.RUNNING)

    @classmethod
    def of(cls, value: object) -> RunStatus:
        """The status a run's result names; an unknown one counts as failed (never an exception in a slot)."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.FAILED


class ServiceState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


Listener = Callable[[set[str]], None]

# The kind of the one whole-file problem in the report of a scan that could not finish.
SCAN_FAILED = "scan_failed"


def failed_scan_report(path: str, message: str) -> ValidationReport:
    """The report of a scan that raised: invalid, no records, one problem saying why. The state
    holds it like any report, so whoever waits for the scan sees it end."""
    from core.training.dataset_models import Problem, ValidationReport

    return ValidationReport(
        path=path, n_records=0, n_lines=0, avg_input_len=0.0, avg_output_len=0.0, file_size=0, sha256="",
        problems=[Problem(line=None, kind=SCAN_FAILED, message=message)], n_problems=1,
        problem_counts={SCAN_FAILED: 1}, warnings=[], n_warnings=0, warning_counts={}, valid=False,
    )


def scan_failure(report: ValidationReport) -> str:
    """Why the scan behind ``report`` failed (:func:`failed_scan_report`), or "" for a finished scan."""
    return next((p.message for p in report.problems if p.kind == SCAN_FAILED), "")


@dataclass
class StudioState:
    """What the window shows and the controllers share. Compare enums with their plain values
    too (``state.run_status == "completed"``): they are ``str`` enums."""

    dataset_path: str = ""
    dataset_report: ValidationReport | None = None  # the scan's report (core.training.dataset.validate_file)
    dataset_columns: dict[str, str] | None = None  # Map columns…: {"question": col, "answer": col, "system"?: col}
    current_run: str = ""  # the run folder being (or last) run in this session
    last_run: str = ""
    run_status: RunStatus = RunStatus.NONE
    estimate: Estimate | None = None  # what the last Estimate projected (core.training.estimate)
    service_state: ServiceState = ServiceState.STOPPED
    _listeners: list[Listener] = field(default_factory=list, repr=False, compare=False)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(changed_field_names)`` after every :meth:`update` or :meth:`notify`."""
        self._listeners.append(listener)

    def update(self, **changes: Any) -> None:
        """Set fields (names checked) and tell the listeners which ones changed."""
        known = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(changes) - known
        if unknown:
            raise AttributeError(f"StudioState has no field(s) {', '.join(sorted(unknown))}")
        changed = {name for name, value in changes.items() if getattr(self, name) != value}
        for name, value in changes.items():
            setattr(self, name, value)
        if changed:
            self.notify(changed)

    def notify(self, changed: set[str] | None = None) -> None:
        """Tell the listeners something changed (``{"busy"}`` when only the running work did)."""
        for listener in list(self._listeners):
            try:
                listener(set(changed or {"busy"}))
            except Exception:  # a broken view must not stop the others
                logger.exception("state listener failed")
