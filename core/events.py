"""Small typed events that core functions emit, plus the cancel token.

Core functions take ``on_event`` (a callable receiving an :class:`Event`) and ``cancel``
(a :class:`CancelToken`). Both default to no-ops so core is usable from a plain script.
Events round-trip through plain dicts so a child process can send them as JSON lines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

__all__ = [
    "ArtifactWritten",
    "CancelToken",
    "Cancelled",
    "Event",
    "EventCallback",
    "Failed",
    "Finished",
    "LinkedCancelToken",
    "Log",
    "Metric",
    "Progress",
    "StageStarted",
    "event_from_dict",
    "noop",
]


@dataclass(frozen=True)
class Event:
    """Base class: every event has a ``kind`` used to serialise it."""

    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class StageStarted(Event):
    kind: ClassVar[str] = "stage"
    stage: str
    message: str = ""


@dataclass(frozen=True)
class Progress(Event):
    """``step`` of ``total`` units done in ``stage`` (total 0 means unknown)."""

    kind: ClassVar[str] = "progress"
    stage: str
    step: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class Log(Event):
    kind: ClassVar[str] = "log"
    message: str
    level: str = "info"  # debug | info | warning | error


@dataclass(frozen=True)
class Metric(Event):
    """Named numbers at a step, e.g. ``{"loss": 1.2, "tokens_per_second": 900.0}``."""

    kind: ClassVar[str] = "metric"
    step: int
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactWritten(Event):
    kind: ClassVar[str] = "artifact"
    path: str


@dataclass(frozen=True)
class Finished(Event):
    kind: ClassVar[str] = "finished"
    status: str = "completed"  # completed | cancelled
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed(Event):
    kind: ClassVar[str] = "failed"
    message: str
    details: str = ""


EventCallback = Callable[[Event], None]

_EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (StageStarted, Progress, Log, Metric, ArtifactWritten, Finished, Failed)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from :meth:`Event.to_dict` output (unknown keys are ignored)."""
    cls = _EVENT_TYPES.get(str(data.get("kind")))
    if cls is None:
        raise ValueError(f"unknown event kind: {data.get('kind')!r}")
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def noop(event: Event) -> None:
    """The default callback: ignore the event."""


class Cancelled(Exception):
    """Raised inside core work when its :class:`CancelToken` was set."""


class CancelToken:
    """A thread-safe flag the caller sets and the worker polls between steps."""

    def __init__(self) -> None:
        self._flag = threading.Event()

    def cancel(self) -> None:
        self._flag.set()

    @property
    def cancelled(self) -> bool:
        return self._flag.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled("cancelled by the user")


class LinkedCancelToken(CancelToken):
    """Cancelled by its own :meth:`cancel` or when ``outer`` is: a helper thread's token that the
    user's Stop reaches and that its owner can also stop alone."""

    def __init__(self, outer: CancelToken | None) -> None:
        super().__init__()
        self.outer = outer

    @property
    def cancelled(self) -> bool:
        return self._flag.is_set() or (self.outer is not None and self.outer.cancelled)
