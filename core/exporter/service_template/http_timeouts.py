"""uvicorn's h11 protocol with a deadline for request heads (slowloris protection).

uvicorn times out idle keep-alive connections, but a client that opens a connection and then
sends its request line and headers one byte at a time holds it forever. This protocol closes a
connection whose request head is not complete ``$TINYFORGE_HEADER_TIMEOUT`` seconds (default
10) after its first byte (or after the connection opened). Slow bodies are cut by app.py.

Selected with ``uvicorn app:app --http http_timeouts:TimeoutH11Protocol`` (uvicorn >= 0.36),
which is what ``run.sh``, the Dockerfile and ``foremforge serve`` do.
"""

from __future__ import annotations

import asyncio
import logging
import os

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("tinyforge.service")

HEADER_TIMEOUT_S = float(os.environ.get("TINYFORGE_HEADER_TIMEOUT", "10"))


class TimeoutH11Protocol(H11Protocol):
    """H11Protocol that drops a connection whose request head arrives too slowly."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        # No request in progress: these bytes begin the next request's head.
        if self.cycle is None or self.cycle.response_complete:
            self._arm_head_timer()
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a complete head arrived and a request started
            self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and HEADER_TIMEOUT_S > 0:
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; its body has its own deadline in app.py
        if not self.transport.is_closing():
            logger.warning("closing a connection whose request head took over %.0f s", HEADER_TIMEOUT_S)
            self.transport.close()
