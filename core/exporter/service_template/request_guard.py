"""ASGI middleware in front of the service: API key, body size limit and body read deadline.

It runs before FastAPI sees a request, so a refused request costs almost nothing:

* with ``$TINYFORGE_API_KEY`` set, every path except ``/health`` needs
  ``Authorization: Bearer <key>`` (401 otherwise);
* a body is read here chunk by chunk, chunked transfer encoding included, and refused with 413
  as soon as it passes the limit (never buffered whole), or with 408 when it is not complete
  within ``$TINYFORGE_BODY_TIMEOUT`` seconds (default 30: a slowloris body);
* without a key, a service bound to a loopback address answers only requests whose ``Host``
  names this machine (``localhost``, ``127.0.0.1``, ``[::1]``, or a name listed in
  ``$TINYFORGE_ALLOWED_HOSTS``) with 421 otherwise: a web page cannot reach it through DNS
  rebinding (a name it controls, pointed at 127.0.0.1);
* these answers close the connection and never repeat anything the client sent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

logger = logging.getLogger("tinyforge.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def allowed_hosts() -> frozenset[str]:
    """Host names a keyless loopback service answers: this machine's, and ``$TINYFORGE_ALLOWED_HOSTS``."""
    extra = {name.strip().lower() for name in os.environ.get("TINYFORGE_ALLOWED_HOSTS", "").split(",") if name.strip()}
    return _LOOPBACK_HOSTS | extra


def _host_name(value: bytes) -> str:
    """``Host`` header value without its port: ``[::1]:8000`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _bound_to_loopback(scope: Scope) -> bool:
    server = scope.get("server") or ("", 0)
    host = str(server[0] or "")
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def api_key() -> str:
    """The key clients must send, or "" when the service is open."""
    return os.environ.get("TINYFORGE_API_KEY", "").strip()


async def reply(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A small JSON error answer that closes the connection (the rest of the body is unread)."""
    body = json.dumps({"detail": detail}).encode("ascii")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RequestGuard:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float, key: str = "") -> None:
        self.app = app
        self.hosts = allowed_hosts()
        self.max_body_bytes = int(max_body_bytes)
        self.body_timeout_s = float(body_timeout_s)
        self.key = key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.key and _bound_to_loopback(scope) and not self._host_allowed(scope):
            await reply(send, 421, "this service answers requests for this machine only (Host: localhost); "
                                   "add other names to TINYFORGE_ALLOWED_HOSTS")
            return
        if self.key and scope["path"] not in OPEN_PATHS and not self._authorized(scope):
            await reply(
                send, 401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                [(b"www-authenticate", b'Bearer realm="tinyforge"')],
            )
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await reply(send, 400, "invalid Content-Length")
                return
            if declared > self.max_body_bytes:
                await reply(send, 413, self._too_large())
                return
            if declared == 0 and not chunked:
                await self.app(scope, receive, send)
                return
        elif not chunked:
            await self.app(scope, receive, send)
            return
        status, body = await self._read_body(receive)
        if status == 499:  # the client went away: nobody to answer
            return
        if status:
            detail = self._too_large() if status == 413 else (
                f"request body not received within {self.body_timeout_s:g} s"
            )
            await reply(send, status, detail)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _host_allowed(self, scope: Scope) -> bool:
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        return bool(hosts) and _host_name(hosts[0]) in self.hosts

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
        return False

    def _too_large(self) -> str:
        return f"request body too large (limit {self.max_body_bytes} bytes)"

    async def _read_body(self, receive: Receive) -> tuple[int, bytes]:
        """``(0, body)``, or ``(413 | 408 | 499, b"")`` when it is too big, too slow or abandoned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return 408, b""
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except asyncio.TimeoutError:  # noqa: UP041 - not the builtin before Python 3.11
                logger.warning("request body not complete within %.0f s: connection closed", self.body_timeout_s)
                return 408, b""
            if message["type"] == "http.disconnect":
                return 499, b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return 413, b""
            chunks.append(chunk)
            if not message.get("more_body", False):
                return 0, b"".join(chunks)
