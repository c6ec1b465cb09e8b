"""The generated service: validation (in-process TestClient) and one real loopback run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.core.export_helpers import QUESTIONS, service_app

pytestmark = pytest.mark.slow


@pytest.fixture()
def client(exported: dict[str, Any]) -> Any:
    from fastapi.testclient import TestClient

    service, _ = exported["causal"]
    with service_app(service) as app, TestClient(app) as test_client:
        yield test_client


def test_health_and_predict_match_onnx_predict(client: Any, exported: dict[str, Any]) -> None:
    from core.exporter.onnx_predict import predict_onnx

    service, report = exported["causal"]
    assert client.get("/health").json() == {"status": "ok", "service": "inference-server"}
    info = client.get("/info").json()
    assert info["placeholder"] is False and info["max_input_chars"] == 10_000
    assert info["precision"] == report.served_precision  # the service serves what passed the gate
    response = client.post("/predict", json={"input": QUESTIONS[1], "max_new_tokens": 12})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"output", "confidence", "model", "latency_ms"}
    assert body["output"] == predict_onnx(service, QUESTIONS[1], max_new_tokens=12)
    assert body["latency_ms"] > 0


@pytest.mark.parametrize(
    ("payload", "statuses"),
    [
        (b"{not json", {400, 422}),
        (b"[1, 2]", {422}),
        (json.dumps({}).encode(), {422}),
        (json.dumps({"input": ""}).encode(), {422}),
        (json.dumps({"input": "   \n"}).encode(), {422}),
        (json.dumps({"input": 42}).encode(), {422}),
        (json.dumps({"input": "x" * 10_001}).encode(), {413, 422}),
        (json.dumps({"input": "hi", "max_new_tokens": 0}).encode(), {422}),
        (json.dumps({"input": "hi", "max_new_tokens": "many"}).encode(), {422}),
        (b'{"input": "' + b"y" * 200_000 + b'"}', {413}),
    ],
    ids=["malformed", "array", "missing", "empty", "blank", "number", "oversized", "zero-tokens", "bad-tokens", "huge-body"],
)
def test_bad_requests_get_4xx_and_the_service_stays_up(client: Any, payload: bytes, statuses: set[int]) -> None:
    response = client.post("/predict", content=payload, headers={"content-type": "application/json"})
    assert response.status_code in statuses, response.text
    assert client.get("/health").status_code == 200


def test_input_at_the_limit_is_accepted(client: Any) -> None:
    response = client.post("/predict", json={"input": "z" * 10_000, "max_new_tokens": 1})
    assert response.status_code == 200


def test_stub_service_still_answers_with_a_placeholder(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from core.exporter.builder import build

    stub = tmp_path / "model_stub.json"
    stub.write_text(json.dumps({"model_type": "tinyforge_stub", "n_records": 3}))
    service = tmp_path / "svc"
    build(stub, service, export_onnx=True)
    with service_app(service) as app, TestClient(app) as test_client:
        body = test_client.post("/predict", json={"input": "hello"}).json()
        assert body["placeholder"] is True and "dry-run placeholder" in body["output"]
        assert test_client.post("/predict", content=b"{", headers={"content-type": "application/json"}).status_code == 422


def test_service_on_loopback_answers_rejects_and_stops(exported: dict[str, Any]) -> None:
    from core.exporter.onnx_predict import predict_onnx
    from core.exporter.serve import http_json, start_service_process, stop_service_process

    service, _ = exported["seq2seq"]
    process, url = start_service_process(service, port=0, precision="fp32")
    try:
        assert url.startswith("http://127.0.0.1:")
        status, body = http_json(f"{url}/predict", {"input": QUESTIONS[2], "max_new_tokens": 10})
        assert status == 200
        assert body["output"] == predict_onnx(service, QUESTIONS[2], precision="fp32", max_new_tokens=10)
        assert http_json(f"{url}/predict", raw=b"{oops")[0] == 422
        assert http_json(f"{url}/predict", {"input": "q" * 20_000})[0] in (413, 422)
        assert http_json(f"{url}/health")[0] == 200
    finally:
        stop_service_process(process)
    assert process.poll() is not None


def test_generation_stops_when_the_caller_no_longer_wants_it(exported: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    """The service asks ``should_stop`` before every token (a client that went away)."""
    from core.exporter.onnx_predict import load_runtime_module

    generator = load_runtime_module().OnnxGenerator(exported["causal"][0], precision="fp32")
    prompt = generator.fit_prompt(generator.encode("How do I reset my password?"))
    asked: list[int] = []

    def stop_after_three() -> bool:
        asked.append(1)
        return len(asked) >= 3

    ids = generator.generate_ids(prompt, max_new_tokens=50, stop_at_eos=False, should_stop=stop_after_three)
    assert len(ids) == 3 and len(asked) == 3
    assert generator.generate_with_confidence("hi", 50, should_stop=lambda: True) == ("", 0.0)


def test_a_local_base_models_path_never_ships_with_the_service(
    exported: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    """/info and /predict carried the absolute folder of a local base model (reliability round two)."""
    import shutil

    from fastapi.testclient import TestClient

    from core.exporter.onnx_export import public_model_name

    assert public_model_name("/home/me/models/secret-llama") == "secret-llama"
    assert public_model_name("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert public_model_name("smollm2-135m-instruct") == "smollm2-135m-instruct" and public_model_name(None) is None
    service = tmp_path / "svc"
    shutil.copytree(exported["causal"][0], service)
    metadata = json.loads((service / "model_metadata.json").read_text())
    metadata["base_model"] = "/home/me/models/secret-llama"  # as an export before the fix wrote it
    (service / "model_metadata.json").write_text(json.dumps(metadata))
    with service_app(service) as app, TestClient(app) as client:
        info = client.get("/info").json()
        answer = client.post("/predict", json={"input": "hi", "max_new_tokens": 2}).json()
    assert "/home/me" not in json.dumps(info) and "/home/me" not in json.dumps(answer)
    assert info["model"].startswith("secret-llama")
