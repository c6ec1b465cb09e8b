"""The service's OpenAI-compatible ``POST /v1/chat/completions``: rendering, answers, errors."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.core.export_helpers import QUESTIONS, service_app

CHAT = "/v1/chat/completions"
CONVERSATIONS: list[tuple[str | None, list[tuple[str, str]]]] = [
    (None, [("user", "How do I reset my password?")]),
    ("You are terse.", [("user", "Hi")]),
    (None, [("user", "Hi"), ("assistant", "Hello."), ("user", "Refunds?")]),
    ("Be kind.", [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d\n"), ("user", "e")]),
]


def _messages(system: str | None, turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    head = [] if system is None else [{"role": "system", "content": system}]
    return head + [{"role": role, "content": content} for role, content in turns]


@pytest.fixture()
def stub_client(stub_service: Path) -> Any:
    from fastapi.testclient import TestClient

    with service_app(stub_service) as app, TestClient(app) as client:
        yield client


# ----------------------------------------------------------------------------- rendering


def _formats() -> list[Any]:
    from core.models.prompting import PromptFormat

    plain = PromptFormat("causal", "plain", "Question: ", "\nAnswer: ", True, 1, 0)  # an older file: no turns
    chatml = PromptFormat(
        "causal", "chat", "<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n", False, 2, 2,
        turns={"system_prefix": "<|im_start|>system\n", "system_to_user": "<|im_end|>\n<|im_start|>user\n",
               "user_to_assistant": "<|im_end|>\n<|im_start|>assistant\n",
               "assistant_to_user": "<|im_end|>\n<|im_start|>user\n"},
        eos_text="<|im_end|>",
    )
    seq2seq = PromptFormat("seq2seq", "plain", "", "", True, 1, 0, 0,
                           turns={"system_prefix": "", "system_to_user": "\n", "user_to_assistant": "",
                                  "assistant_to_user": "\n"}, eos_text="</s>")
    old_seq2seq = PromptFormat("seq2seq", "plain", "", "", True, 1, 0, 0)
    return [plain, chatml, seq2seq, old_seq2seq]


@pytest.mark.parametrize("fmt", _formats(), ids=["plain-no-turns", "chatml", "seq2seq", "seq2seq-no-turns"])
def test_the_service_renders_a_conversation_as_training_does(fmt: Any) -> None:
    from core.exporter.onnx_predict import load_runtime_module

    runtime = load_runtime_module()
    saved = json.loads(json.dumps(fmt.to_dict()))  # what the service reads from tinyforge_prompt.json
    for system, turns in CONVERSATIONS:
        assert runtime.render_conversation(saved, system, turns) == fmt.render_conversation(system, turns)
        messages = [("system", system)] if system is not None else []
        assert runtime.split_system([*messages, *turns]) == (system, turns)
    assert runtime.render_conversation(saved, None, [("user", "x")]) == fmt.render("x")


# ----------------------------------------------------------------------------- the placeholder service


def test_a_chat_completion_has_openais_shape(stub_client: Any) -> None:
    before = int(time.time())
    response = stub_client.post(CHAT, json={"model": "anything", "messages": [{"role": "user", "content": "hello"}],
                                            "temperature": 0.7, "top_p": 0.9, "user": "u1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert before <= body["created"] <= int(time.time()) + 1
    assert body["model"] == stub_client.get("/info").json()["model"] == "tinyforge_stub"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant" and "hello" in choice["message"]["content"]
    assert "placeholder" in choice["message"]["content"]
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}  # nothing generated


def test_text_parts_are_joined_and_the_last_user_message_is_answered(stub_client: Any) -> None:
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "reply"},
                {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}]}]
    body = stub_client.post(CHAT, json={"messages": messages, "max_tokens": 5, "n": 1, "stream": False}).json()
    assert body["choices"][0]["message"]["content"].endswith("part one\ntwo")


BAD_REQUESTS: dict[str, tuple[Any, int, str]] = {
    "no-messages": ({}, 422, "messages"),
    "empty": ({"messages": []}, 422, "must not be empty"),
    "bad-role": ({"messages": [{"role": "tool", "content": "x"}]}, 422, "role"),
    "ends-on-assistant": ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
                          422, "end with a user message"),
    "starts-on-assistant": ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]},
                            422, "alternate"),
    "two-users": ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, 422, "alternate"),
    "late-system": ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]},
                    422, "only come first"),
    "only-system": ({"messages": [{"role": "system", "content": "a"}]}, 422, "end with a user message"),
    "blank-question": ({"messages": [{"role": "user", "content": "  "}]}, 422, "blank"),
    "content-number": ({"messages": [{"role": "user", "content": 5}]}, 422, "content"),
    "content-null": ({"messages": [{"role": "user", "content": None}]}, 422, "content"),
    "image-part": ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
                   422, "only text content parts"),
    "messages-object": ({"messages": {"role": "user", "content": "a"}}, 422, "messages"),
    "too-long": ({"messages": [{"role": "user", "content": "x" * 6000}, {"role": "assistant", "content": "y"},
                               {"role": "user", "content": "z" * 4000}]}, 422, "at most 10000"),
    "max-tokens-zero": ({"messages": [{"role": "user", "content": "a"}], "max_tokens": 0}, 422, "max_tokens"),
    "max-tokens-string": ({"messages": [{"role": "user", "content": "a"}], "max_completion_tokens": "9"}, 422,
                          "max_completion_tokens"),
    "max-tokens-over": ({"messages": [{"role": "user", "content": "a"}], "max_tokens": 513}, 422, "max_tokens"),
    "stream": ({"messages": [{"role": "user", "content": "a"}], "stream": True}, 400, "streaming is not supported"),
    "n-2": ({"messages": [{"role": "user", "content": "a"}], "n": 2}, 400, "n must be 1"),
    "lone-surrogate": (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 422, "Unicode"),
    "not-json": (b"{not json", 422, "json"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_a_clients_mistake_gets_a_4xx_with_a_one_line_reason(stub_client: Any, name: str) -> None:
    payload, status, reason = BAD_REQUESTS[name]
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = stub_client.post(CHAT, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    lines = [detail] if isinstance(detail, str) else [entry["msg"] + " " + " ".join(map(str, entry["loc"]))
                                                      for entry in detail]
    assert all("\n" not in line for line in lines)
    assert reason.lower() in " ".join(lines).lower(), lines
    assert stub_client.get("/health").status_code == 200


def test_error_answers_never_echo_the_conversation(stub_client: Any) -> None:
    marker = "SECRET-CUSTOMER-TEXT"
    for messages in ([{"role": "user", "content": marker}, {"role": "assistant", "content": marker}],
                     [{"role": "user", "content": marker * 800}], [{"role": "nobody", "content": marker}],
                     [{"role": "user", "content": [{"type": "audio", "text": marker}]}]):
        response = stub_client.post(CHAT, json={"messages": messages})
        assert response.status_code == 422 and marker not in response.text, response.text[:300]


def test_the_api_key_guards_chat_too(stub_service: Path) -> None:
    from fastapi.testclient import TestClient

    body = {"messages": [{"role": "user", "content": "hi"}]}
    with service_app(stub_service, TINYFORGE_API_KEY="k9") as app, TestClient(app) as client:
        assert client.post(CHAT, json=body).status_code == 401
        assert client.post(CHAT, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.post(CHAT, json=body, headers={"Authorization": "Bearer k9"}).status_code == 200


class _SlowModel:
    """A generation of up to 20 s, token by token, asking before each one whether to stop."""

    name, placeholder, confidence, default_max_new_tokens = "slow", False, 1.0, None

    def __init__(self) -> None:
        self.stopped_after: float | None = None

    def complete(self, messages: Any, max_new_tokens: int | None = None, should_stop: Any = None) -> Any:
        started = time.perf_counter()
        while time.perf_counter() - started < 20:
            if should_stop is not None and should_stop():
                self.stopped_after = time.perf_counter() - started
                return None
            time.sleep(0.01)
        raise AssertionError("the generation was not stopped")


def test_chat_shares_the_queue_and_the_disconnect_rule_of_predict(stub_service: Path) -> None:
    from starlette.requests import Request

    async def gone() -> dict[str, str]:
        return {"type": "http.disconnect"}

    with service_app(stub_service):
        service = sys.modules["app"]
        request = service.ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=512)
        http_request = Request({"type": "http", "method": "POST", "path": CHAT, "headers": []}, gone)
        service.model = _SlowModel()
        started = time.perf_counter()
        response = asyncio.run(service.chat_completions(request, http_request))
        assert response.status_code == 499 and time.perf_counter() - started < 2
        assert service.model.stopped_after is not None and service._admitted == 0
        service._admitted = service.MAX_QUEUE  # every place taken (by /predict or chat alike)
        try:
            busy = asyncio.run(service.chat_completions(request, http_request))
        finally:
            service._admitted = 0
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1


def test_a_real_server_guards_chat_by_host_and_answers_localhost(
    stub_service: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.client
    from urllib.parse import urlparse

    from core.exporter.serve import start_service_process, stop_service_process

    monkeypatch.delenv("TINYFORGE_API_KEY", raising=False)
    process, url = start_service_process(stub_service, port=0)
    try:
        port = urlparse(url).port
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
        for host, status in ((f"attacker.example:{port}", 421), (f"localhost:{port}", 200)):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("POST", CHAT, body=body, headers={"host": host, "content-type": "application/json"})
                assert connection.getresponse().status == status, host
            finally:
                connection.close()
    finally:
        stop_service_process(process)


# ----------------------------------------------------------------------------- an exported model


@pytest.mark.slow
def test_one_user_message_answers_what_predict_answers(exported: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from core.exporter.onnx_predict import load_generator

    for name in ("causal", "seq2seq"):
        service, _ = exported[name]
        generator = load_generator(service)
        with service_app(service) as app, TestClient(app) as client:
            for question in QUESTIONS:
                predicted = client.post("/predict", json={"input": question, "max_new_tokens": 12}).json()
                body = client.post(CHAT, json={"messages": [{"role": "user", "content": question}],
                                               "max_tokens": 12}).json()
                assert body["choices"][0]["message"]["content"] == predicted["output"], (name, question)
                assert body["model"] == predicted["model"]
                usage = body["usage"]
                assert usage["prompt_tokens"] == len(generator.fit_prompt(generator.encode(question)))
                assert 0 <= usage["completion_tokens"] <= 12
                assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
                finish = body["choices"][0]["finish_reason"]
                assert finish == ("length" if usage["completion_tokens"] == 12 else "stop")


@pytest.mark.slow
def test_a_conversation_is_encoded_per_the_prompt_contract(exported: dict[str, Any],
                                                           tiny_models: dict[str, Path]) -> None:
    """The runtime's prompt ids are the trained tokenizer's ids of ``render_conversation``."""
    from fastapi.testclient import TestClient
    from transformers import AutoTokenizer

    from core.exporter.onnx_predict import load_generator
    from core.models.prompting import encode_conversation_prompt, load_prompt_format

    for name in ("causal", "seq2seq"):
        service, _ = exported[name]
        generator = load_generator(service)
        fmt = load_prompt_format(tiny_models[name] / "model")
        tokenizer = AutoTokenizer.from_pretrained(str(tiny_models[name] / "model"))
        for system, turns in CONVERSATIONS:
            messages = ([("system", system)] if system is not None else []) + turns
            assert generator.encode_messages(messages) == encode_conversation_prompt(tokenizer, fmt, system, turns)
        system, turns = CONVERSATIONS[3]
        ids = generator.fit_messages([("system", system), *turns])
        expected = generator.decode(generator.generate_ids(ids, 8))
        with service_app(service) as app, TestClient(app) as client:
            body = client.post(CHAT, json={"messages": _messages(system, turns), "max_completion_tokens": 8}).json()
        assert body["choices"][0]["message"]["content"] == expected
        assert body["usage"]["prompt_tokens"] == len(ids)
