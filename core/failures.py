"""One translation of an exception into what a user sees: a one-line message, details, an exit code.

Core functions only raise (typed exceptions whose message a user can act on). Only the
boundaries report: the run executor (:mod:`core.runs`), the training child's ``main``
(:mod:`core.training.child_main`), the command line and the GUI's worker base. Each calls
:func:`describe` here, so a failure is worded the same everywhere and reported once.
"""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass
from typing import TextIO

from core.events import Cancelled, Failed

logger = logging.getLogger(__name__)

__all__ = ["EXIT_CANCELLED", "EXIT_FAILED", "Failure", "describe", "print_error"]

EXIT_FAILED = 1
EXIT_CANCELLED = 130  # what a shell reports for Ctrl-C
_MAX_HEADLINE = 400  # the details keep everything; a run record keeps a short message


@dataclass(frozen=True)
class Failure:
    """How a boundary reports one exception."""

    message: str  # one line a user can act on (no traceback)
    details: str  # the traceback, or what the exception carried (a child's stderr tail)
    exit_code: int  # the command line's: 130 cancelled, 1 otherwise
    bad_input: bool  # a user mistake (its message stands alone), not a crash
    cancelled: bool = False

    @property
    def headline(self) -> str:
        """The message cut to a length a run record and a status line can hold."""
        return self.message if len(self.message) < _MAX_HEADLINE else self.message[:_MAX_HEADLINE] + "…"

    def event(self, short: bool = False) -> Failed:
        """The ``Failed`` event of this failure (``short``: with the headline as its message)."""
        return Failed(message=self.headline if short else self.message, details=self.details)


def describe(
    exc: BaseException,
    doing: str | None = None,
    bad_input: tuple[type[BaseException], ...] = (ValueError, OSError),
) -> Failure:
    """Translate ``exc``. ``bad_input`` are the classes whose message is shown as it is; any
    other exception reads ``"{doing}: {Type}: {message}"`` when ``doing`` is given."""
    if isinstance(exc, Cancelled):
        return Failure(_text(exc), "", EXIT_CANCELLED, bad_input=False, cancelled=True)
    user = isinstance(exc, bad_input)
    text = _text(exc)
    if doing and not user:
        text = f"{doing}: {type(exc).__name__}: {text}"
    carried = getattr(exc, "details", None)
    details = carried if isinstance(carried, str) and carried else "".join(traceback.format_exception(exc))
    return Failure(text, details, EXIT_FAILED, bad_input=user)


def print_error(
    exc: BaseException,
    doing: str | None = None,
    bad_input: tuple[type[BaseException], ...] = (ValueError, OSError),
    stream: TextIO | None = None,
) -> int:
    """The command line's report: one ``Error: ...`` line on stderr; return the exit code.

    A crash (not ``bad_input``) also goes to the log with its traceback, at debug level.
    """
    failure = describe(exc, doing, bad_input)
    if not failure.bad_input:
        logger.debug("%s", failure.details)
    print(f"Error: {failure.message}", file=stream if stream is not None else sys.stderr)
    return failure.exit_code


def _text(exc: BaseException) -> str:
    # An OS "[Errno 2] No such file or directory: 'x'" names the file better said plainly.
    filename = getattr(exc, "filename", None)
    if isinstance(exc, FileNotFoundError) and filename:
        return f"file not found: {filename}"
    return str(exc).strip() or type(exc).__name__
