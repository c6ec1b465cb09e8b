"""Ctrl-C as a cancel request: the first press sets the token, the second one interrupts."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from core.events import CancelToken


@contextmanager
def cancel_on_sigint(token: CancelToken | None = None) -> Iterator[CancelToken]:
    """Within the block, SIGINT cancels ``token`` so work stops cleanly at its next step."""
    token = token or CancelToken()
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def handle(signum: int, frame: object) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        print("\nCancelling at the next step (press Ctrl-C again to stop at once)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)
