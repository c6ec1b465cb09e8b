"""The one worker recipe: a QObject moved to a QThread, events relayed as plain-data signals.

A :class:`Worker` subclass implements :meth:`Worker.work` (runs in the worker thread) and
reports through :meth:`Worker.relay`, which turns core events into queued signals and drops
progress updates nobody could see. Cancel is a :class:`core.events.CancelToken` the GUI sets.
:class:`TaskRunner` owns the threads, keeps them referenced while they run and waits for them.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from core.events import (
    ArtifactWritten,
    Cancelled,
    CancelToken,
    Event,
    Failed,
    Log,
    Metric,
    Progress,
    StageStarted,
)
from core.failures import describe

logger = logging.getLogger(__name__)

# Every QThread this module started; the GUI tests fail when one is still running at teardown.
LIVE_THREADS: weakref.WeakSet[QThread] = weakref.WeakSet()

_PROGRESS_INTERVAL_S = 0.05


class Worker(QObject):
    """Base worker: subclasses implement :meth:`work`; every outcome ends with ``done``."""

    stage = Signal(str, str)  # stage, message
    progress = Signal(str, int, int, str)  # stage, step, total, message
    log = Signal(str, str)  # level, message
    metric = Signal(int, dict)  # step, values
    artifact = Signal(str)  # path
    succeeded = Signal(object)  # result: plain data or a core model (ValidationReport, Estimate, LoraModules)
    failed = Signal(str, str)  # message, details
    cancelled = Signal()
    done = Signal()  # always emitted last

    def __init__(self, name: str = "worker") -> None:
        super().__init__()
        self.name = name
        self.cancel_token = CancelToken()
        self.work_done = False  # set in the worker thread once work() has returned or raised
        self._last_progress: tuple[str, int, int] = ("", -1, -1)
        self._last_progress_time = 0.0

    def work(self) -> Any:  # pragma: no cover - every worker defines its own
        raise TypeError(f"{type(self).__name__} must define work()")

    @Slot()
    def run(self) -> None:
        """Entry point, connected to ``QThread.started``; never lets an exception escape."""
        try:
            report = self._work_and_outcome()
            # Idle before the outcome is reported: a slot reacting to it (Stop right after
            # "running") must find this task free, not wait for the thread to wind down.
            self.work_done = True
            report()
        finally:
            self.work_done = True
            self.done.emit()

    def _work_and_outcome(self) -> Callable[[], None]:
        """Run :meth:`work`; return the signal emission that reports how it ended."""
        try:
            result = self.work()
        except Cancelled:
            return self.cancelled.emit
        except Exception as exc:  # errors are results; core only raises, so this reports it once
            logger.debug("worker %s failed", self.name, exc_info=True)
            failure = describe(exc)
            return lambda: self.failed.emit(failure.message, failure.details)
        if self.cancel_token.cancelled:
            return self.cancelled.emit
        return lambda: self.succeeded.emit(result)

    def relay(self, event: Event) -> None:
        """Core's ``on_event`` callback: re-emit as signals (called in the worker thread)."""
        if isinstance(event, Progress):
            self._relay_progress(event)
        elif isinstance(event, StageStarted):
            self._last_progress = (event.stage, -1, -1)
            self.stage.emit(event.stage, event.message)
        elif isinstance(event, Log):
            self.log.emit(event.level, event.message)
        elif isinstance(event, Metric):
            self.metric.emit(int(event.step), {str(k): float(v) for k, v in event.values.items()})
        elif isinstance(event, ArtifactWritten):
            self.artifact.emit(event.path)
        elif isinstance(event, Failed):  # a run's one failure, reported by core.runs.execute_run
            self.failed.emit(event.message, event.details)
        # Finished events of inner steps carry nothing the window shows; the worker's own
        # outcome signals (succeeded / cancelled) report the end of the work.

    def _relay_progress(self, event: Progress) -> None:
        """Emit only visible changes: a new stage, a new per-mille, the end, or 50 ms passed."""
        now = time.monotonic()
        stage, step, total = self._last_progress
        permille_old = step * 1000 // total if total > 0 else step
        permille_new = event.step * 1000 // event.total if event.total > 0 else event.step
        finished = event.total > 0 and event.step >= event.total
        few_steps = 0 < event.total <= 100 and event.step != step  # stage lists: every step is news
        if (
            event.stage != stage
            or finished
            or few_steps
            or (permille_new != permille_old and now - self._last_progress_time >= _PROGRESS_INTERVAL_S)
        ):
            self._last_progress = (event.stage, event.step, event.total)
            self._last_progress_time = now
            self.progress.emit(event.stage, int(event.step), int(event.total), event.message)


class TaskRunner(QObject):
    """Starts workers on their own QThreads and keeps both alive until the thread ends."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._active: dict[int, tuple[QThread, Worker]] = {}

    def start(self, worker: Worker) -> None:
        thread = QThread()
        thread.setObjectName(f"tinyforge-{worker.name}")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        # QThread.quit is thread-safe; a direct call from the worker thread lets the thread end
        # even while the GUI thread is blocked in wait_all() during shutdown.
        worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)
        key = id(thread)
        self._active[key] = (thread, worker)
        LIVE_THREADS.add(thread)
        thread.start()

    @Slot()
    def _on_thread_finished(self) -> None:
        finished = [key for key, (thread, _) in self._active.items() if thread.isFinished()]
        for key in finished:
            thread, worker = self._active.pop(key)
            worker.deleteLater()
            thread.deleteLater()

    def workers(self) -> list[Worker]:
        return [worker for _, worker in self._active.values()]

    def is_busy(self, name: str | None = None) -> bool:
        return any(name is None or w.name == name for w in self.workers())

    def is_working(self, name: str) -> bool:
        """Busy with work not yet ended (a worker whose outcome is out may still be winding down
        its thread): what decides whether a new action of that task may start."""
        return any(w.name == name and not w.work_done for w in self.workers())

    def cancel(self, name: str | None = None) -> None:
        for worker in self.workers():
            if name is None or worker.name == name:
                worker.cancel_token.cancel()

    def wait_all(self, timeout_ms: int = 30000) -> bool:
        """Block until every thread ended (used on close, after cancel); True when all ended."""
        deadline = time.monotonic() + timeout_ms / 1000
        ok = True
        for thread, _ in list(self._active.values()):
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            ok = thread.wait(remaining) and ok
        self._on_thread_finished()
        return ok
