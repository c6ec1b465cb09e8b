"""Ctrl-C and SIGTERM as a cancel request: the first sets the token, a second one interrupts.

SIGTERM is what ``timeout``, ``docker stop`` and systemd send: it stops work at its next step
the way Ctrl-C does (a training saves its checkpoint for ``--resume``), instead of killing it.
"""

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
        what = "Ctrl-C again" if signum == signal.SIGINT else "send the signal again"
        print(f"\nCancelling at the next step ({what} to stop at once)...", file=sys.stderr)

    previous = {signum: signal.signal(signum, handle) for signum in _CANCEL_SIGNALS}
    try:
        yield token
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_CANCEL_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)
