"""Run an exported service folder: in this process (``serve``), as a child process on a free
loopback port (``start_service_process``, for the GUI's Start/Stop button and the export
self-test), and the self-test itself.

The service is the folder's own ``app.py``; nothing here imports torch.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.exporter.errors import ExportError

if TYPE_CHECKING:
    from core.run_layout import SelfTest

logger = logging.getLogger(__name__)

__all__ = [
    "ServiceStartError",
    "exposure_warning",
    "find_free_port",
    "http_json",
    "self_test",
    "serve",
    "serve_dry_run",
    "service_api_key",
    "start_service_process",
    "stop_service_process",
    "uvicorn_command",
]


class ServiceStartError(ExportError):
    """The service process exited or did not answer /health in time."""


def _check_service_dir(service_dir: str | os.PathLike[str], need_metadata: bool = True) -> Path:
    from core.run_layout import MODEL_METADATA_FILE, SERVICE_APP_FILE

    folder = Path(service_dir).expanduser().resolve()
    if not folder.is_dir():
        raise ExportError(f"service folder not found: {folder}")
    if not (folder / SERVICE_APP_FILE).is_file():
        raise ExportError(f"{SERVICE_APP_FILE} not found in {folder}: not an exported service folder")
    if need_metadata and not (folder / MODEL_METADATA_FILE).is_file():
        raise ExportError(f"{MODEL_METADATA_FILE} not found in {folder}: not an exported service folder")
    return folder


# The service folder's uvicorn protocol with a deadline for request heads (slowloris).
HTTP_PROTOCOL = "http_timeouts:TimeoutH11Protocol"
API_KEY_ENV = "TINYFORGE_API_KEY"


def http_protocol(folder: Path) -> str:
    """``--http`` for ``folder``: its timeout protocol, or plain h11 for a folder exported before it."""
    return HTTP_PROTOCOL if (folder / "http_timeouts.py").is_file() else "h11"


def uvicorn_command(folder: Path, host: str, port: int) -> list[str]:
    """The uvicorn command line that serves ``folder`` (run inside it)."""
    return ["uvicorn", "app:app", "--host", host, "--port", str(port), "--http", http_protocol(folder)]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may well resolve to a public address


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning for a service reachable from other machines without a key, else None."""
    if is_loopback(host) or (api_key or "").strip():
        return None
    return (
        f"warning: the service listens on {host} and has no authentication: anyone who can reach "
        f"this machine can use it. Set --api-key or {API_KEY_ENV} to require a bearer token."
    )


def service_api_key(api_key: str | None = None) -> str:
    """The key a service started from here requires (``api_key``, else ``$TINYFORGE_API_KEY``),
    "" when it is open. A key of only spaces is refused: it would silently mean no key at all."""
    for value, where in ((api_key, "--api-key"), (os.environ.get(API_KEY_ENV), API_KEY_ENV)):
        if value is None:
            continue
        if not value.strip():
            raise ValueError(f"{where} is blank: give a real key, or leave it out to serve without one")
        return value.strip()
    return ""


def serve_dry_run(
    service_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None
) -> str:
    """What :func:`serve` would do, as text: the uvicorn command, run in the service folder."""
    import shlex

    _check_service_dir(service_dir, need_metadata=False)
    key = service_api_key(api_key)
    shown = Path(os.path.abspath(Path(service_dir).expanduser()))  # the folder as the user named it
    lines = ["Dry run: would run, in the service folder:", f"  cd {shlex.quote(str(shown))}"]
    if key:  # the key is not printed: the command reads it from the environment, as the service does
        lines.append(f"  export {API_KEY_ENV}='<your key>'   # the service requires it; without it, it serves openly")
    lines += [
        f"  {shlex.join(uvicorn_command(shown, host, int(port)))}",
        f"service folder: {shown}",
        f"serving: http://{host}:{int(port)} (GET /health, GET /info, POST /predict)",
    ]
    if key:
        lines.append(f"requests except /health need: Authorization: Bearer <key> (the key comes from {API_KEY_ENV})")
    warning = exposure_warning(host, key)
    if warning:
        lines.append(warning)
    return "\n".join(lines)


def serve(
    service_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
) -> None:
    """Serve ``service_dir`` with uvicorn in this process until interrupted (Ctrl+C).

    ``api_key`` (else ``$TINYFORGE_API_KEY``) makes the service require
    ``Authorization: Bearer <key>`` on every route but /health.
    """
    import uvicorn

    folder = _check_service_dir(service_dir)
    key = service_api_key(api_key)
    if key:
        os.environ[API_KEY_ENV] = key  # app.py reads it when uvicorn imports it, below
    warning = exposure_warning(host, os.environ.get(API_KEY_ENV))
    if warning:
        print(warning, file=sys.stderr)
    logger.info("serving %s on http://%s:%d", folder, host, port)
    uvicorn.run(
        "app:app", app_dir=str(folder), host=host, port=int(port), log_level="info", http=http_protocol(folder)
    )


def find_free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_json(
    url: str, payload: Any = None, raw: bytes | None = None, timeout: float = 60.0, api_key: str = ""
) -> tuple[int, Any]:
    """GET (no body) or POST JSON to ``url`` (with ``api_key`` as a bearer token when given);
    return ``(status, parsed body or text)``."""
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode("utf-8"))
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body.decode("utf-8"))
    except ValueError:
        return status, body.decode("utf-8", "replace")


def start_service_process(
    service_dir: str | os.PathLike[str],
    port: int = 0,
    host: str = "127.0.0.1",
    precision: str | None = None,
    startup_timeout: float = 120.0,
    die_with_parent: bool = False,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``service_dir``'s app with uvicorn in a child process and wait until /health answers.

    ``port=0`` picks a free port. Returns ``(process, base_url)``; stop it with
    :func:`stop_service_process`. The child's output goes to a log file whose path is
    ``process.log_path`` (so a full pipe can never block it). With ``die_with_parent`` (Linux)
    the child is killed when the calling *thread* ends, even by ``kill -9``: right for the
    export self-test, wrong for a service a short-lived worker thread starts for the window.
    """
    folder = _check_service_dir(service_dir)
    port = int(port) or find_free_port(host)
    env = dict(os.environ)
    if precision:
        env["TINYFORGE_PRECISION"] = precision
    env.setdefault("PYTHONUNBUFFERED", "1")
    if getattr(sys, "frozen", False):  # the packaged app has no "python -m": it serves itself
        command = [sys.executable, "--serve", str(folder), "--host", host, "--port", str(port)]
    else:
        command = [
            sys.executable, "-m", "uvicorn", "app:app",
            "--app-dir", str(folder), "--host", host, "--port", str(port), "--log-level", "warning",
            "--http", http_protocol(folder),
        ]
    log_file = tempfile.NamedTemporaryFile(prefix="tinyforge-service-", suffix=".log", delete=False)
    process = subprocess.Popen(
        command, cwd=str(folder), env=env, stdout=log_file, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent_hook() if die_with_parent else None,
    )
    log_file.close()
    process.log_path = log_file.name  # type: ignore[attr-defined]
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + startup_timeout
    while True:
        if process.poll() is not None:
            raise ServiceStartError(f"the service exited with code {process.returncode}: {_log_tail(process)}")
        try:
            status, _ = http_json(f"{url}/health", timeout=2.0)
            if status == 200:
                return process, url
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            stop_service_process(process)
            raise ServiceStartError(f"the service did not answer {url}/health within {startup_timeout:.0f} s")
        time.sleep(0.2)


def _die_with_parent_hook() -> Callable[[], None] | None:
    """Linux only: a ``preexec_fn`` asking the kernel to SIGKILL the child when its parent dies
    (``PR_SET_PDEATHSIG``), so a killed export never leaves its self-test service serving."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def hook() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return hook


def _log_tail(process: subprocess.Popen[bytes], limit: int = 1500) -> str:
    path = getattr(process, "log_path", None)
    if not path:
        return ""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()


def stop_service_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Ask the service to stop (SIGTERM), kill it after ``timeout``, remove its log file."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    path = getattr(process, "log_path", None)
    if path:
        Path(path).unlink(missing_ok=True)


def self_test(
    service_dir: str | os.PathLike[str],
    inputs: list[str],
    expected: list[str],
    max_new_tokens: int,
    precision: str | None = None,
) -> SelfTest:
    """Start the service on a free loopback port, ask it every input, compare with ``expected``
    (the answers ``predict_onnx`` gives), check that bad requests get a 4xx and the service
    stays up, then stop it. Never raises: a failure is reported in the result."""
    from core.run_layout import SelfTest

    result = SelfTest(passed=False, n_checked=0, n_matched=0, precision=precision)
    key = service_api_key()  # the service inherits the shell's key: ask as an authorised client
    result.auth = bool(key)
    n_checked = n_matched = 0
    started = time.perf_counter()
    process = None
    try:
        process, url = start_service_process(service_dir, precision=precision, die_with_parent=True)
        result.startup_s = round(time.perf_counter() - started, 3)
        latencies: list[float] = []
        mismatches: list[dict[str, str]] = []
        for text, want in zip(inputs, expected, strict=True):
            begun = time.perf_counter()
            status, body = http_json(f"{url}/predict", {"input": text, "max_new_tokens": max_new_tokens}, api_key=key)
            latencies.append((time.perf_counter() - begun) * 1000)
            n_checked += 1
            result.n_checked = n_checked
            if status == 200 and isinstance(body, dict) and body.get("output") == want:
                n_matched += 1
                result.n_matched = n_matched
            else:
                mismatches.append({"input": text, "expected": want, "got": str(body)[:300], "status": str(status)})
        bad_requests = {
            "malformed_json": http_json(f"{url}/predict", raw=b"{not json", api_key=key)[0],
            "empty_input": http_json(f"{url}/predict", {"input": ""}, api_key=key)[0],
        }
        healthy = http_json(f"{url}/health")[0] == 200
        result.latency_ms_median = round(statistics.median(latencies), 3) if latencies else None
        result.bad_request_status = bad_requests
        result.healthy_after = healthy
        result.mismatches = mismatches[:3]
        result.passed = (
            n_checked > 0
            and n_matched == n_checked
            and all(400 <= code < 500 for code in bad_requests.values())
            and healthy
        )
    except Exception as exc:  # reported, not raised: the export itself succeeded
        logger.warning("service self-test failed: %s", exc)
        result.error = f"{type(exc).__name__}: {exc}"[:1000]
    finally:
        if process is not None:
            stop_service_process(process)
    result.seconds = round(time.perf_counter() - started, 3)
    return result
