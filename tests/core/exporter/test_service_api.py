"""The service's routes as TinyForgeAI users call them, and the ``serve`` command's options."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.core.export_helpers import QUESTIONS, SERVICE_MODULES, service_app

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "core" / "exporter" / "service_template"


# ----------------------------------------------------------------------------- routes


def test_health_is_exactly_the_seed_body_and_info_holds_the_details(stub_service: Path) -> None:
    from fastapi.testclient import TestClient

    with service_app(stub_service) as app, TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ok", "service": "inference-server"}
        info = client.get("/info").json()
        assert info["model"] == "tinyforge_stub" and info["placeholder"] is True
        assert info["max_input_chars"] == 10_000 and info["auth"] is False
        assert "0.0" in info["confidence"]


def test_the_placeholder_answers_with_its_documented_fixed_confidence(stub_service: Path) -> None:
    from fastapi.testclient import TestClient

    with service_app(stub_service) as app, TestClient(app) as client:
        import model_loader  # type: ignore[import-not-found]  # the service's own module

        for text in ("hello", "something else entirely"):
            body = client.post("/predict", json={"input": text}).json()
            assert body["confidence"] == model_loader.PLACEHOLDER_CONFIDENCE == 0.0
            assert body["placeholder"] is True and text in body["output"]
        assert "PLACEHOLDER_CONFIDENCE" in (stub_service / "model_loader.py").read_text()


@pytest.mark.slow
def test_confidence_is_the_geometric_mean_probability_of_the_greedy_tokens(exported: dict[str, Any]) -> None:
    """Recomputed here from the decoder's logits step by step, with a plain softmax."""
    from fastapi.testclient import TestClient

    from core.exporter.onnx_predict import load_generator

    service, _ = exported["causal"]
    generator = load_generator(service)  # the precision the service serves
    answers = {}
    with service_app(service) as app, TestClient(app) as client:
        for question in QUESTIONS:
            answers[question] = client.post("/predict", json={"input": question, "max_new_tokens": 12}).json()
    for question in QUESTIONS:
        ids = generator.fit_prompt(generator.encode(question))
        state, logits = generator.start(ids)
        probabilities = []
        for _ in range(12):
            exp = np.exp(logits.astype(np.float64) - logits.max())
            token = int(np.argmax(logits))
            probabilities.append(exp[token] / exp.sum())
            if token in generator.stop_ids:
                break
            if len(probabilities) == 12:
                break
            logits = generator.step(state, token)
        expected = float(np.prod(probabilities) ** (1 / len(probabilities)))
        body = answers[question]
        assert 0.0 < body["confidence"] <= 1.0
        assert body["confidence"] == pytest.approx(expected, rel=1e-6)


def test_confidence_from_logprobs_stays_in_range() -> None:
    sys.path.insert(0, str(TEMPLATE))
    try:
        runtime = importlib.import_module("runtime")
        assert runtime.confidence_from_logprobs([]) == 0.0
        assert runtime.confidence_from_logprobs([0.0, 0.0]) == 1.0
        assert runtime.confidence_from_logprobs([float("-inf")]) == 0.0
        assert runtime.confidence_from_logprobs([np.log(0.5), np.log(0.125)]) == pytest.approx(0.25)
        logits = np.array([1000.0, 0.0, -1000.0], dtype=np.float32)  # no overflow
        assert runtime._log_softmax_at(logits, 0) == pytest.approx(0.0)
    finally:
        sys.path.remove(str(TEMPLATE))
        sys.modules.pop("runtime", None)


def test_the_service_folder_is_an_importable_package(stub_service: Path) -> None:
    from fastapi.testclient import TestClient

    assert (stub_service / "__init__.py").is_file()
    sys.path.insert(0, str(stub_service.parent))
    try:
        module = importlib.import_module("svc.app")
        with TestClient(module.app) as client:
            assert client.get("/health").json() == {"status": "ok", "service": "inference-server"}
            assert client.post("/predict", json={"input": "hi"}).json()["confidence"] == 0.0
    finally:
        sys.path.remove(str(stub_service.parent))
        if str(stub_service) in sys.path:
            sys.path.remove(str(stub_service))
        for name in [*SERVICE_MODULES, "svc", "svc.app"]:
            sys.modules.pop(name, None)


def test_the_image_runs_as_an_unprivileged_user() -> None:
    lines = [line.strip() for line in (TEMPLATE / "Dockerfile").read_text().splitlines()]
    users = [i for i, line in enumerate(lines) if line.startswith("USER ")]
    assert users, "the Dockerfile has no USER line: the service runs as root"
    user = lines[users[-1]].split()[1].split(":")[0]
    assert user not in ("root", "0")
    assert not any(line.startswith(("RUN ", "COPY ", "ADD ")) for line in lines[users[-1]:])
    assert any(line.startswith("RUN ") and "useradd" in line for line in lines) or "--uid" in "\n".join(lines)
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert "http_timeouts:TimeoutH11Protocol" in cmd
    assert "http_timeouts:TimeoutH11Protocol" in (TEMPLATE / "run.sh").read_text()


# ----------------------------------------------------------------------------- serve command


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from core.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_serve_dry_run_prints_the_uvicorn_command_and_the_folder(
    stub_service: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINYFORGE_API_KEY", raising=False)
    code, out, err = _cli(["serve", "--service", str(stub_service), "--dry-run"], capsys)
    assert code == 0, err
    assert "uvicorn app:app --host 127.0.0.1 --port 8000" in out
    assert str(stub_service) in out and "warning" not in (out + err).lower()
    # TinyForgeAI's spelling of the options, and another address and port
    code, out, err = _cli(["serve", "--dir", str(stub_service), "--host", "0.0.0.0", "-p", "9000", "--dry-run"], capsys)
    assert code == 0, err
    assert "uvicorn app:app --host 0.0.0.0 --port 9000" in out and str(stub_service) in out
    assert "no authentication" in out


def test_serve_dry_run_without_app_py_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = _cli(["serve", "--dir", str(tmp_path / "empty"), "--dry-run"], capsys)
    assert code == 1
    assert err.startswith("Error: ") and "app.py not found" in err and "Traceback" not in err


def test_serve_on_all_interfaces_warns_unless_a_key_is_set(
    stub_service: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` itself (uvicorn.run recorded instead of binding 0.0.0.0 in a test)."""
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    saved = os.environ.pop("TINYFORGE_API_KEY", None)  # serve() sets it for the app: restored below
    try:
        code, _, err = _cli(["serve", "--service", str(stub_service), "--host", "0.0.0.0"], capsys)
        assert code == 0 and "no authentication" in err and "--api-key" in err
        assert calls[-1]["app"] == "app:app" and calls[-1]["host"] == "0.0.0.0"
        assert calls[-1]["http"] == "http_timeouts:TimeoutH11Protocol"
        code, _, err = _cli(["serve", "--service", str(stub_service), "--host", "0.0.0.0", "--api-key", "k1"], capsys)
        assert code == 0 and "no authentication" not in err
        assert os.environ.pop("TINYFORGE_API_KEY") == "k1"  # what app.py reads when uvicorn imports it
        code, _, err = _cli(["serve", "--service", str(stub_service)], capsys)
        assert code == 0 and "no authentication" not in err and calls[-1]["host"] == "127.0.0.1"
    finally:
        os.environ.pop("TINYFORGE_API_KEY", None)
        if saved is not None:
            os.environ["TINYFORGE_API_KEY"] = saved


def test_a_bearer_key_from_the_environment_is_checked(stub_service: Path) -> None:
    from fastapi.testclient import TestClient

    with service_app(stub_service, TINYFORGE_API_KEY="k2") as app, TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json={"input": "hi"}).status_code == 401
        ok = client.post("/predict", json={"input": "hi"}, headers={"Authorization": "Bearer k2"})
        assert ok.status_code == 200


def test_the_packaged_apps_serve_entry_still_serves(stub_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``TinyForgeStudio --serve DIR`` (what a frozen app's Start Service runs) reaches ``serve``."""
    import uvicorn

    from tinyforge_gui.app_entry import main

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    saved = os.environ.pop("TINYFORGE_API_KEY", None)
    try:
        assert main(["--serve", str(stub_service), "--host", "127.0.0.1", "--port", "8123", "--api-key", "k4"]) == 0
        assert os.environ.get("TINYFORGE_API_KEY") == "k4"
    finally:
        os.environ.pop("TINYFORGE_API_KEY", None)
        if saved is not None:
            os.environ["TINYFORGE_API_KEY"] = saved
    assert calls == [
        {
            "app": "app:app", "app_dir": str(stub_service.resolve()), "host": "127.0.0.1", "port": 8123,
            "log_level": "info", "http": "http_timeouts:TimeoutH11Protocol",
        }
    ]


# ----------------------------------------------------------------------------- keys (reliability round two)


def test_a_blank_api_key_is_refused(stub_service: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``--api-key "   "`` would have served with no authentication at all."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("must not serve"))
    monkeypatch.delenv("TINYFORGE_API_KEY", raising=False)
    for flags in (["--api-key", "   "], ["--api-key", "", "--dry-run"]):
        code, out, err = _cli(["serve", "--service", str(stub_service), *flags], capsys)
        assert code == 1 and "--api-key is blank" in err and "Traceback" not in err, err
    monkeypatch.setenv("TINYFORGE_API_KEY", "  ")
    code, _, err = _cli(["serve", "--service", str(stub_service)], capsys)
    assert code == 1 and "TINYFORGE_API_KEY is blank" in err


def test_serve_dry_run_keeps_the_key_in_the_printed_command(
    stub_service: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINYFORGE_API_KEY", raising=False)
    code, out, err = _cli(["serve", "--service", str(stub_service), "--api-key", "s3cret", "--dry-run"], capsys)
    assert code == 0, err
    assert "export TINYFORGE_API_KEY=" in out and "s3cret" not in out  # the key is not printed
    assert out.index("export TINYFORGE_API_KEY") < out.index("uvicorn app:app")
    assert "Authorization: Bearer <key>" in out


def test_the_self_test_authenticates_with_the_shells_key(stub_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service the export starts inherits ``TINYFORGE_API_KEY``: its self-test must send it."""
    from core.exporter import serve

    monkeypatch.setenv("TINYFORGE_API_KEY", "k5")
    result = serve.self_test(stub_service, ["hi"], ["(compared elsewhere)"], 4)
    assert result.auth is True and result.n_checked == 1
    assert [m["status"] for m in result.mismatches] == ["200"]  # answered, not refused with 401
    assert all(code in (400, 422) for code in result.bad_request_status.values()), result
