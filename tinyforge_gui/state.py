"""The window's shared state in plain Python: the dataset, the runs, the service; no Qt.

Controllers change it through :meth:`StudioState.update`; whoever renders it (the main window,
tests) subscribes and is told which fields changed. Enums name the states and the workers once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["RunStatus", "ServiceState", "StudioState", "Task"]


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


@dataclass
class StudioState:
    """What the window shows and the controllers share. Compare enums with their plain values
    too (``state.run_status == "completed"``): they are ``str`` enums."""

    dataset_path: str = ""
    dataset_report: dict[str, Any] | None = None  # the scan report (core.training.dataset_scan)
    dataset_columns: dict[str, str] | None = None  # Map columns…: {"question": col, "answer": col, "system"?: col}
    current_run: str = ""  # the run folder being (or last) run in this session
    last_run: str = ""
    run_status: RunStatus = RunStatus.NONE
    estimate: dict[str, Any] | None = None  # core.run_layout.Estimate as data
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
