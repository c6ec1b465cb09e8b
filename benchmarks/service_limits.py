"""The generated service under load and a huge upload, on 127.0.0.1.

Measures, against a running service folder (started like the GUI does, on a free loopback port):

- ``/health`` latency (median and max of 10 probes) while ``--concurrency`` long predictions
  (``max_new_tokens`` 512) are in flight, and how many of them were answered or refused (503);
- the server's peak RSS (``VmHWM``) before and after one 50 MB chunked POST /predict, the status
  it answered, and how much of the body the client got to send before the answer.

Without ``--service``, it exports a never-trained tiny causal model (it rarely stops early, so
each prediction is long) into a temporary folder. Prints one JSON object.

    python benchmarks/service_limits.py [--service DIR] [--concurrency 60] [--upload-mb 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", int(parsed.port or 80)


def _request(url: str, method: str, path: str, body: bytes | None = None, timeout: float = 300) -> int:
    connection = http.client.HTTPConnection(*_address(url), timeout=timeout)
    try:
        connection.request(method, path, body=body, headers={"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def health_under_load(url: str, concurrency: int) -> dict[str, Any]:
    body = json.dumps({"input": "How do I reset my password? " * 4, "max_new_tokens": 512}).encode()
    started = time.perf_counter()
    _request(url, "POST", "/predict", body)
    one_prediction_ms = (time.perf_counter() - started) * 1000
    statuses: list[int] = []
    lock = threading.Lock()

    def ask() -> None:
        try:
            status = _request(url, "POST", "/predict", body)
        except OSError:
            status = -1
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    latencies = []
    for _ in range(10):
        begun = time.perf_counter()
        _request(url, "GET", "/health", timeout=60)
        latencies.append((time.perf_counter() - begun) * 1000)
        time.sleep(0.05)
    in_flight = sum(1 for t in threads if t.is_alive())
    for thread in threads:
        thread.join(timeout=600)
    return {
        "one_prediction_ms": round(one_prediction_ms, 1),
        "concurrent_predictions": concurrency,
        "in_flight_after_probes": in_flight,
        "health_ms_median": round(statistics.median(latencies), 1),
        "health_ms_max": round(max(latencies), 1),
        "answered_200": statuses.count(200),
        "refused_503": statuses.count(503),
        "other": sorted(s for s in statuses if s not in (200, 503)),
    }


def huge_chunked_upload(url: str, pid: int, megabytes: int) -> dict[str, Any]:
    total = megabytes * 1024 * 1024
    chunk = b"x" * 65536
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    before = _peak_rss_mib(pid)
    sent = 0
    response = b""
    started = time.perf_counter()
    with socket.create_connection(_address(url), timeout=120) as sock:
        head = b'{"input": "'
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(head) + head + b"\r\n"
        )
        try:
            while sent < total:
                if select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(frame)
                sent += len(chunk)
            sock.sendall(b'3\r\n"}\n\r\n0\r\n\r\n')
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not select.select([sock], [], [], 0.5)[0]:
                continue
            try:
                data = sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            response += data
            if len(response) > 1 << 20:
                break
    status_line = response.split(b"\r\n", 1)[0].decode("ascii", "replace")
    return {
        "upload_mib": megabytes,
        "status": status_line,
        "client_sent_mib_before_answer": round(sent / 1048576, 1),
        "answer_bytes": len(response),
        "answer_echoes_body": b"xxxxxxxx" in response,
        "server_peak_rss_mib_before": before,
        "server_peak_rss_mib_after": _peak_rss_mib(pid),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _rambling_service(root: Path) -> Path:
    from core.exporter.onnx_export import export_real
    from tests.core.export_helpers import make_trained_model

    model = make_trained_model("tiny-causal", root / "model", steps=0)
    export_real(model, root / "svc", max_new_tokens=8)
    return root / "svc"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", type=Path, default=None, help="an exported service folder (default: build one)")
    parser.add_argument("--concurrency", type=int, default=60)
    parser.add_argument("--upload-mb", type=int, default=50)
    args = parser.parse_args(argv)

    from core.exporter.serve import start_service_process, stop_service_process

    with tempfile.TemporaryDirectory(prefix="tinyforge-bench-") as tmp:
        service = args.service or _rambling_service(Path(tmp))
        os.environ.setdefault("TINYFORGE_THREADS", "1")
        process, url = start_service_process(service, port=0)
        try:
            result = {
                "service": str(service),
                "cpu_count": os.cpu_count(),
                "load": health_under_load(url, args.concurrency),
                "upload": huge_chunked_upload(url, process.pid, args.upload_mb),
            }
        finally:
            stop_service_process(process)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
