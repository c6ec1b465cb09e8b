"""A command on a terminal: core events rendered (a redrawn progress bar on a TTY, plain lines
elsewhere), and :func:`run_command`, the one place where a command's Ctrl-C, cancel and errors
become what the user sees and the exit code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TextIO

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
from core.failures import EXIT_CANCELLED, print_error

__all__ = ["CommandConsole", "ConsoleReporter", "run_command"]

_BAR_WIDTH = 28


class ConsoleReporter:
    """An event callback that writes human-readable progress to ``stream`` (stderr by default).

    On a terminal the progress bar redraws in place; when output is piped or logged, it
    prints plain lines instead, at most one per ``line_interval`` seconds per stage.
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, line_interval: float = 2.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.line_interval = line_interval
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar_open = False
        self._last_line_at: dict[str, float] = {}
        self._last_metrics: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        if self.stream is None:
            return
        if isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, Metric):
            self._last_metrics = {**self._last_metrics, **event.values}
            if not self.is_tty and "loss" in event.values and not self.quiet:
                extra = "  ".join(f"{k} {v:.4g}" for k, v in event.values.items() if k != "loss")
                self._line(f"step {event.step}  loss {event.values['loss']:.4f}  {extra}".rstrip())
        elif isinstance(event, Log):
            if event.level in ("warning", "error") or not self.quiet:
                prefix = {"info": "", "error": "Error: "}.get(event.level, f"{event.level}: ")
                self._line(f"{prefix}{event.message}")
        elif isinstance(event, StageStarted):
            if not self.quiet:
                self._line(f"== {event.stage}{': ' + event.message if event.message else ''}")
        elif isinstance(event, ArtifactWritten):
            if not self.quiet:
                self._line(f"wrote {event.path}")
        elif isinstance(event, Failed):
            self._line(f"Error: {event.message}")

    def close(self) -> None:
        """End a half-drawn bar line so the next output starts on a fresh line."""
        if self._bar_open:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_open = False

    def _line(self, text: str) -> None:
        self.close()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _progress(self, event: Progress) -> None:
        if self.quiet:
            return
        total = max(event.total, 0)
        fraction = min(event.step / total, 1.0) if total else 0.0
        loss = self._last_metrics.get("loss")
        suffix = f" loss {loss:.4f}" if loss is not None and event.stage == "train" else ""
        message = f" {event.message}" if event.message else ""
        if self.is_tty:
            filled = int(fraction * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            self.stream.write(f"\r{event.stage:<8} [{bar}] {fraction:6.1%}{suffix}{message}\x1b[K")
            self.stream.flush()
            self._bar_open = True
            if total and event.step >= total:
                self.close()
            return
        now = time.monotonic()
        done = bool(total) and event.step >= total
        if done or now - self._last_line_at.get(event.stage, 0.0) >= self.line_interval:
            self._last_line_at[event.stage] = now
            amount = f"{event.step}/{total}" if total else str(event.step)
            self._line(f"{event.stage}: {amount} ({fraction:.0%}){suffix}{message}")


class CommandConsole:
    """What a command's work gets from :func:`run_command`: progress on stderr, and Ctrl-C as a
    cancel request."""

    def __init__(self) -> None:
        self._reporters: list[ConsoleReporter] = []

    def progress(self, quiet: bool = False) -> ConsoleReporter:
        """An event callback showing the command's progress on stderr (``quiet``: warnings and
        errors only); its half-drawn bar is ended before anything else is said."""
        reporter = ConsoleReporter(quiet=quiet)
        self._reporters.append(reporter)
        return reporter

    def cancellable(self) -> AbstractContextManager[CancelToken]:
        """Within the block, the first Ctrl-C (or SIGTERM) cancels the token it gives, so the
        work stops at its next step and raises ``Cancelled``; a second one interrupts at once.
        Outside such a block Ctrl-C interrupts at once (work that cannot stop at a step)."""
        from core.sigint import cancel_on_sigint

        return cancel_on_sigint()

    def close(self) -> None:
        for reporter in self._reporters:
            reporter.close()


def run_command(
    work: Callable[[CommandConsole], int],
    cancelled: str = "Cancelled.",
    errors: tuple[type[Exception], ...] = (ValueError, OSError),
    doing: str | None = None,
    bad_input: tuple[type[BaseException], ...] = (ValueError, OSError),
) -> int:
    """Run one command's ``work`` and return its exit code: every command of the command line
    (and TinyForgeAI's scripts) runs through here.

    ``Cancelled`` (the work stopped at a step after Ctrl-C) prints ``cancelled`` and exits 130;
    a second Ctrl-C (``KeyboardInterrupt``) prints ``Interrupted.`` and exits 130; an exception
    of ``errors`` is one ``Error: ...`` line (:func:`core.failures.print_error` with ``doing``
    and ``bad_input``) and exit 1. Progress lines are ended first.
    """
    console = CommandConsole()
    try:
        return int(work(console))
    except Cancelled:
        console.close()
        print(cancelled, file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        console.close()
        print("\nInterrupted.", file=sys.stderr)
        return EXIT_CANCELLED
    except errors as exc:
        console.close()
        return print_error(exc, doing=doing, bad_input=bad_input)
    finally:
        console.close()
