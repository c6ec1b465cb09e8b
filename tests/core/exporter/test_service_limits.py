"""The generated service under bad input, slow clients and load: real servers on 127.0.0.1.

Every loop here is bounded (a deadline or a fixed count), so a regression fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.core.export_helpers import QUESTIONS

# ----------------------------------------------------------------------------- helpers


def _stub_service(folder: Path) -> Path:
    from core.exporter.builder import build

    stub = folder / "stub" / "model_stub.json"
    stub.parent.mkdir(parents=True)
    stub.write_text(json.dumps({"model_type": "tinyforge_stub", "n_records": 3}))
    build(stub, folder / "svc", export_onnx=True)
    return folder / "svc"


@pytest.fixture()
def stub_service(tmp_path: Path) -> Path:
    return _stub_service(tmp_path)


@contextlib.contextmanager
def _start(service: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[tuple[Any, str]]:
    from core.exporter.serve import start_service_process, stop_service_process

    monkeypatch.delenv("TINYFORGE_API_KEY", raising=False)  # open unless a test sets a key
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    process, url = start_service_process(service, port=0)
    try:
        yield process, url
    finally:
        stop_service_process(process)


def _address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", int(parsed.port or 80)


def _request(
    url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    host, port = _address(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        all_headers = {"content-type": "application/json", **(headers or {})}
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def _read_response(sock: socket.socket, limit_s: float) -> bytes:
    """What the server sent until it closed the connection (or ``limit_s`` passed)."""
    data = b""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _closed_within(sock: socket.socket, limit_s: float, trickle: bytes) -> tuple[bool, bytes]:
    """Send ``trickle`` one byte every 0.2 s; return (the server closed the connection, what it sent)."""
    received = b""
    deadline = time.monotonic() + limit_s
    position = 0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if ready:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return True, received
            if not chunk:
                return True, received
            received += chunk
            continue
        try:
            sock.sendall(trickle[position % len(trickle) : position % len(trickle) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return True, received
        position += 1
    return False, received


# ----------------------------------------------------------------------------- bad input


MALFORMED = {
    "lone-surrogate": b'{"input": "a\\ud800b"}',
    "lone-surrogate-low": b'{"input": "\\udfff"}',
    "tokens-1e400": b'{"input": "hi", "max_new_tokens": 1e400}',
    "tokens-nan": b'{"input": "hi", "max_new_tokens": NaN}',
    "tokens-string": b'{"input": "hi", "max_new_tokens": "5"}',
    "tokens-true": b'{"input": "hi", "max_new_tokens": true}',
    "tokens-float": b'{"input": "hi", "max_new_tokens": 5.0}',
    "tokens-huge": b'{"input": "hi", "max_new_tokens": 123456789012345678901234567890}',
    "input-bool": b'{"input": true}',
    "input-list": b'{"input": ["hi"]}',
    "json-string": b'"hi"',
    "json-null": b"null",
    "json-number": b"5",
    "json-array": b"[1, 2]",
    "invalid-utf8": b'{"input": "\xff\xfe"}',
    "deep-nesting": b"[" * 50_000,
    "truncated": b'{"input": "hi"',
    "empty-body": b"",
}


def test_malformed_requests_get_4xx_from_a_real_server(stub_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = {}
    with _start(stub_service, monkeypatch) as (_, url):
        for name, payload in MALFORMED.items():
            status, _, body = _request(url, "POST", "/predict", payload)
            if not 400 <= status < 500:
                wrong[name] = (status, body[:200])
        assert _request(url, "GET", "/health")[0] == 200
    assert not wrong, wrong


def test_error_answers_never_echo_the_request(stub_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = "SECRET-CUSTOMER-TEXT"
    bodies = [
        {"input": marker * 600},  # over 10,000 characters: 422
        {"input": [marker]},
        {"input": "hi", "max_new_tokens": marker},
        {"input": {"nested": marker}},
    ]
    with _start(stub_service, monkeypatch) as (_, url):
        for payload in bodies:
            status, _, body = _request(url, "POST", "/predict", json.dumps(payload).encode())
            assert status == 422, body[:300]
            assert marker.encode() not in body, body[:300]
            detail = json.loads(body)["detail"]
            assert detail and all({"loc", "msg", "type"} <= set(item) for item in detail)


def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(
    stub_service: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 50 MB chunked upload: 413 as soon as the limit passes, and the server's peak memory
    does not grow with the upload (it used to read all of it, about 4x its size, then echo it)."""
    total = 50 * 1024 * 1024
    chunk = b"x" * 65536
    with _start(stub_service, monkeypatch) as (process, url):
        before = _rss_peak_kib(process.pid)
        sent = 0
        response = b""
        with socket.create_connection(_address(url), timeout=10) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + _chunk(b'{"input": "xxxx')
            )
            frame = _chunk(chunk)
            try:
                while sent < total:
                    ready, _, _ = select.select([sock], [], [], 0)
                    if ready:
                        break  # the server answered (or closed) before the end of the body
                    sock.sendall(frame)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            response = _read_response(sock, 10)
        after = _rss_peak_kib(process.pid)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert b"xxxx" not in response
        assert sent < total, "the server read the whole 50 MB body"
        assert after - before < 20 * 1024, f"server peak memory grew by {(after - before) // 1024} MiB"
        assert _request(url, "GET", "/health")[0] == 200


def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    stub_service: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _start(stub_service, monkeypatch) as (_, url):
        with socket.create_connection(_address(url), timeout=10) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 52428800\r\n\r\n"
            )
            response = _read_response(sock, 5)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]


# ----------------------------------------------------------------------------- slow clients


def test_a_request_head_sent_byte_by_byte_is_dropped(stub_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _start(stub_service, monkeypatch, TINYFORGE_HEADER_TIMEOUT="1") as (_, url):
        with socket.create_connection(_address(url), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            started = time.monotonic()
            closed, _ = _closed_within(sock, 8, b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
            elapsed = time.monotonic() - started
        assert closed, "a slowloris request head held its connection for 8 s"
        assert elapsed < 5
        # A connection that says nothing at all is dropped too.
        with socket.create_connection(_address(url), timeout=10) as sock:
            assert _read_response(sock, 8) == b""
        assert _request(url, "GET", "/health")[0] == 200


def test_a_body_sent_byte_by_byte_is_dropped(stub_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _start(stub_service, monkeypatch, TINYFORGE_BODY_TIMEOUT="1") as (_, url):
        with socket.create_connection(_address(url), timeout=10) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
            )
            started = time.monotonic()
            closed, received = _closed_within(sock, 8, b'{"input": "' + b"y" * 600)
            elapsed = time.monotonic() - started
        assert closed, "a slow body held its connection for 8 s"
        assert elapsed < 5
        assert received.startswith(b"HTTP/1.1 408"), received[:200]
        assert _request(url, "GET", "/health")[0] == 200


def test_keep_alive_still_works_with_the_timeout_protocol(stub_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _start(stub_service, monkeypatch, TINYFORGE_HEADER_TIMEOUT="1") as (_, url):
        host, port = _address(url)
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            for _ in range(3):
                connection.request("POST", "/predict", body=b'{"input": "hi"}', headers={"content-type": "application/json"})
                response = connection.getresponse()
                assert response.status == 200 and json.loads(response.read())["confidence"] == 0.0
                time.sleep(0.3)
        finally:
            connection.close()


# ----------------------------------------------------------------------------- authentication


def test_an_api_key_guards_everything_but_health(stub_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "s3cret-key"
    body = b'{"input": "hi"}'
    with _start(stub_service, monkeypatch, TINYFORGE_API_KEY=key) as (_, url):
        assert _request(url, "GET", "/health")[0] == 200
        status, headers, answer = _request(url, "POST", "/predict", body)
        assert status == 401 and headers.get("www-authenticate", "").startswith("Bearer"), answer
        assert _request(url, "POST", "/predict", body, {"authorization": "Bearer wrong"})[0] == 401
        assert _request(url, "POST", "/predict", body, {"authorization": key})[0] == 401
        assert _request(url, "GET", "/info")[0] == 401
        assert _request(url, "GET", "/docs")[0] == 401
        status, _, answer = _request(url, "POST", "/predict", body, {"authorization": f"Bearer {key}"})
        assert status == 200 and json.loads(answer)["placeholder"] is True
        assert _request(url, "GET", "/info", headers={"authorization": f"bearer {key}"})[0] == 200


def test_without_a_key_the_service_is_open(stub_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINYFORGE_API_KEY", raising=False)
    with _start(stub_service, monkeypatch) as (_, url):
        status, _, answer = _request(url, "GET", "/info")
        assert status == 200 and json.loads(answer)["auth"] is False


# ----------------------------------------------------------------------------- load


@pytest.fixture(scope="module")
def rambling_service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported tiny causal model that was never trained: it rarely picks its stop token, so
    every prediction runs to ``max_new_tokens`` (a long prediction, on purpose)."""
    from core.exporter.onnx_export import export_real
    from tests.core.export_helpers import make_trained_model

    root = tmp_path_factory.mktemp("rambling")
    model = make_trained_model("tiny-causal", root / "model", steps=0)
    export_real(model, root / "svc", max_new_tokens=8)
    return root / "svc"


@pytest.mark.slow
def test_health_answers_fast_and_the_queue_is_bounded_under_60_predictions(
    rambling_service: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 concurrent long predictions: /health keeps answering within 100 ms, the
    admitted ones (32 by default) finish, the rest get 503 with Retry-After at once."""
    long_input = json.dumps({"input": QUESTIONS[0] * 4, "max_new_tokens": 512}).encode()
    with _start(rambling_service, monkeypatch, TINYFORGE_THREADS="1") as (_, url):
        started = time.perf_counter()
        status, _, body = _request(url, "POST", "/predict", long_input, timeout=120)
        single_s = time.perf_counter() - started
        assert status == 200, body
        results: list[tuple[int, dict[str, str]]] = []
        lock = threading.Lock()

        def ask() -> None:
            try:
                status, headers, _ = _request(url, "POST", "/predict", long_input, timeout=120)
            except OSError as exc:  # recorded, so the assertion below names it
                status, headers = -1, {"error": repr(exc)}
            with lock:
                results.append((status, headers))

        threads = [threading.Thread(target=ask, daemon=True) for _ in range(60)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # let them queue
        latencies = []
        for _ in range(10):
            started = time.perf_counter()
            status, _, body = _request(url, "GET", "/health", timeout=30)
            latencies.append(time.perf_counter() - started)
            assert status == 200 and json.loads(body) == {"status": "ok", "service": "inference-server"}
            time.sleep(0.05)
        busy_while_measuring = sum(1 for t in threads if t.is_alive())
        for thread in threads:
            thread.join(timeout=120)
        statuses = sorted(status for status, _ in results)
        print(
            f"one prediction {single_s * 1000:.0f} ms; /health under load: median "
            f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
            f"{statuses.count(200)} answered, {statuses.count(503)} refused with 503"
        )
        assert busy_while_measuring > 0, "the predictions were too short to load the service"
        assert len(results) == 60 and set(statuses) <= {200, 503}, statuses
        rejected = [headers for status, headers in results if status == 503]
        assert rejected and all(int(h["retry-after"]) >= 1 for h in rejected)
        assert statuses.count(200) >= 32
        # 100 ms is the goal; the max allows for a loaded test machine (it was 5.6 s before)
        assert statistics.median(latencies) < 0.1 and max(latencies) < 0.5, latencies


def test_foremforge_serve_runs_the_guarded_service(stub_service: Path) -> None:
    """The in-process ``serve`` (also the packaged app's ``--serve``) on loopback: the same
    routes, the API key and the request-head deadline as the other launchers."""
    from core.exporter.serve import find_free_port

    port = find_free_port()
    env = {**os.environ, "TINYFORGE_HEADER_TIMEOUT": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("TINYFORGE_API_KEY", None)
    command = [sys.executable, "-m", "core.cli", "serve", "--service", str(stub_service), "--port", str(port),
               "--api-key", "k3"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                if _request(url, "GET", "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "foremforge serve did not answer /health within 60 s"
            time.sleep(0.2)
        assert _request(url, "GET", "/info")[0] == 401
        assert _request(url, "GET", "/info", headers={"authorization": "Bearer k3"})[0] == 200
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            closed, _ = _closed_within(sock, 8, b"X-Slow: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
        assert closed
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        if process.stderr:
            process.stderr.close()


def test_a_client_that_goes_away_stops_its_prediction_and_frees_its_place(stub_service: Path) -> None:
    """A client that disconnects: its generation stops at the next token and its admission slot
    is free at once; before, it ran to the end (minutes for 512 tokens on the starter) and the
    requests after it got 503."""
    import asyncio

    from starlette.requests import Request

    from tests.core.export_helpers import service_app

    class SlowModel:  # a generation of up to 20 s, token by token, asking before each one
        name, placeholder, confidence, default_max_new_tokens = "slow", False, 1.0, None

        def __init__(self) -> None:
            self.stopped_after: float | None = None

        def predict(self, text: str, max_new_tokens: int | None = None, should_stop=None):  # noqa: ANN001, ANN201
            started = time.perf_counter()
            while time.perf_counter() - started < 20:
                if should_stop is not None and should_stop():
                    self.stopped_after = time.perf_counter() - started
                    return "", 0.0
                time.sleep(0.01)
            return "all of it", 1.0

    async def gone() -> dict[str, str]:
        return {"type": "http.disconnect"}

    with service_app(stub_service):
        service = sys.modules["app"]
        service.model = SlowModel()
        request = Request({"type": "http", "method": "POST", "path": "/predict", "headers": []}, gone)
        started = time.perf_counter()
        response = asyncio.run(service.predict(service.PredictRequest(input="hi", max_new_tokens=512), request))
        waited = time.perf_counter() - started
        assert response.status_code == 499 and waited < 2, waited  # not the 20 s the generation would take
        assert service.model.stopped_after is not None and service._admitted == 0


def test_a_keyless_loopback_service_answers_only_requests_for_this_machine(
    stub_service: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a web page's own name pointed at 127.0.0.1 reached a keyless local service."""
    body = b'{"input": "hi"}'
    with _start(stub_service, monkeypatch) as (_, url):
        port = urlparse(url).port
        status, _, answer = _request(url, "POST", "/predict", body, {"host": f"attacker.example:{port}"})
        assert status == 421 and "TINYFORGE_ALLOWED_HOSTS" in answer.decode()
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
            assert _request(url, "POST", "/predict", body, {"host": host})[0] == 200, host
    with _start(stub_service, monkeypatch, TINYFORGE_ALLOWED_HOSTS="studio.lan") as (_, url):
        assert _request(url, "POST", "/predict", body, {"host": "studio.lan"})[0] == 200
    with _start(stub_service, monkeypatch, TINYFORGE_API_KEY="k") as (_, url):  # a key guards it instead
        headers = {"host": "anything.example", "authorization": "Bearer k"}
        assert _request(url, "POST", "/predict", body, headers)[0] == 200
