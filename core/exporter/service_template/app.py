"""TinyForge inference service.

``GET /health`` -> ``{"status": "ok", "service": "inference-server"}`` (always open, answered on
the event loop whatever the load); ``GET /info`` -> what this folder serves;
``POST /predict {"input": ..., "max_new_tokens"?}`` -> ``output``, ``confidence`` in [0, 1], ...;
``POST /v1/chat/completions`` -> OpenAI's chat completion for a conversation (greedy; no streaming).

Runs from this folder alone (``./run.sh``, or ``uvicorn app:app`` here; the folder is also an
importable package). A dry-run folder answers with a labelled placeholder, an exported one runs
its ONNX graphs with ONNX Runtime. Bad requests get a 4xx, never a 500, and error answers never
repeat the request. Predictions (of both routes) run one at a time in their own thread; at most
``$TINYFORGE_MAX_QUEUE`` (default 32) are admitted at once, the rest get 503 with Retry-After.
A client that goes away stops its prediction at the next token and frees its place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # started from another folder (uvicorn --app-dir, tests, package import)
    sys.path.insert(0, str(HERE))

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from model_loader import load_model  # noqa: E402
from request_guard import RequestGuard, api_key  # noqa: E402
from schemas import (  # noqa: E402
    MAX_INPUT_CHARS,
    MAX_NEW_TOKENS,
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatUsage,
    PredictRequest,
    PredictResponse,
)

logger = logging.getLogger("tinyforge.service")
# JSON escapes can make a body several times longer than its text; anything beyond this is refused
# while it is read, so a huge (or endless chunked) upload cannot tie the service up.
MAX_BODY_BYTES = 8 * MAX_INPUT_CHARS + 4096
BODY_TIMEOUT_S = float(os.environ.get("TINYFORGE_BODY_TIMEOUT", "30"))
MAX_QUEUE = max(1, int(os.environ.get("TINYFORGE_MAX_QUEUE", "32")))
API_KEY = api_key()

app = FastAPI(title="TinyForge service")
app.add_middleware(RequestGuard, max_body_bytes=MAX_BODY_BYTES, body_timeout_s=BODY_TIMEOUT_S, key=API_KEY)
model = load_model()

# One generation at a time (the ONNX generator uses every core), in a pool of its own so the
# event loop and /health never wait behind predictions.
_predict_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinyforge-predict")
_admitted = 0  # predictions running or waiting; only touched on the event loop
_mean_predict_s = 1.0  # moving average of one prediction, for Retry-After
_T = TypeVar("_T")


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """422 with where and why, without the offending values (FastAPI's default echoes them)."""
    errors = []
    for error in exc.errors():
        errors.append(
            {
                "loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "invalid value"))[:300],
                "type": str(error.get("type", "value_error")),
            }
        )
    # ensure_ascii: a message can never carry a character that fails to encode
    body = json.dumps({"detail": errors}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "service": "inference-server"}


@app.get("/info")
async def info() -> dict[str, Any]:
    return {
        "model": model.name,
        "placeholder": model.placeholder,
        "precision": model.precision,
        "confidence": (
            f"fixed {model.confidence} (dry-run placeholder)"
            if model.placeholder
            else "geometric mean probability of the generated tokens"
        ),
        "max_input_chars": MAX_INPUT_CHARS,
        "max_new_tokens_limit": MAX_NEW_TOKENS,
        "default_max_new_tokens": model.default_max_new_tokens,
        "max_body_bytes": MAX_BODY_BYTES,
        "max_queue": MAX_QUEUE,
        "auth": bool(API_KEY),
    }


def _timed(work: Callable[[threading.Event], _T], gone: threading.Event) -> tuple[_T, float]:
    started = time.perf_counter()
    result = work(gone)
    return result, time.perf_counter() - started


async def _watch_client(http_request: Request, gone: threading.Event) -> None:
    """Set ``gone`` when the client disconnects (the body is read: only a disconnect can come)."""
    while not gone.is_set():
        if await http_request.is_disconnected():
            gone.set()
            return
        await asyncio.sleep(_DISCONNECT_POLL_S)


_DISCONNECT_POLL_S = 0.05
_BUSY = {503: {"description": "too many predictions queued; retry after Retry-After seconds"}}


async def _admitted_run(http_request: Request, work: Callable[[threading.Event], _T]) -> _T | Response:
    """Run ``work(gone)`` in the prediction thread if the queue has room, else a 503 with
    Retry-After; a 499 when the client went away meanwhile (``gone`` is set at once, so the
    work can stop at its next token and free its place)."""
    global _admitted, _mean_predict_s
    if _admitted >= MAX_QUEUE:
        retry_after = max(1, min(60, math.ceil(_mean_predict_s)))
        return JSONResponse(
            {"detail": f"the service is busy ({_admitted} predictions queued); retry in {retry_after} s"},
            status_code=503,
            headers={"Retry-After": str(retry_after)},
        )
    _admitted += 1
    gone = threading.Event()
    watcher = asyncio.create_task(_watch_client(http_request, gone))
    try:
        loop = asyncio.get_running_loop()
        result, seconds = await loop.run_in_executor(_predict_pool, _timed, work, gone)
    finally:
        _admitted -= 1
        watcher.cancel()
    if gone.is_set():  # nobody to answer: the prediction stopped early, its place is free
        return Response(status_code=499)
    _mean_predict_s = 0.8 * _mean_predict_s + 0.2 * seconds
    return result


@app.post("/predict", response_model=PredictResponse, responses=_BUSY)
async def predict(request: PredictRequest, http_request: Request) -> Any:
    started = time.perf_counter()
    result = await _admitted_run(
        http_request, lambda gone: model.predict(request.input, request.max_new_tokens, should_stop=gone.is_set)
    )
    if isinstance(result, Response):
        return result
    output, confidence = result
    return PredictResponse(
        output=output,
        confidence=confidence,
        model=model.name,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        placeholder=model.placeholder,
    )


@app.post(
    "/v1/chat/completions",
    response_model=ChatCompletionResponse,
    responses={**_BUSY, 400: {"description": "stream or n > 1 asked: not supported"}},
)
async def chat_completions(request: ChatCompletionRequest, http_request: Request) -> Any:
    """OpenAI's chat completion: the greedy answer to the conversation (``temperature`` and
    ``model`` are ignored; the limits, key and queue are those of ``/predict``)."""
    if request.stream:
        return JSONResponse({"detail": "streaming is not supported: leave out \"stream\" or send false"},
                            status_code=400)
    if request.n is not None and request.n != 1:
        return JSONResponse({"detail": "n must be 1: this service gives one answer per request"}, status_code=400)
    messages = request.conversation()
    budget = request.token_budget()
    result = await _admitted_run(
        http_request, lambda gone: model.complete(messages, budget, should_stop=gone.is_set)
    )
    if isinstance(result, Response):
        return result
    return ChatCompletionResponse(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=model.name,
        choices=[ChatChoice(message=AssistantMessage(content=result.text), finish_reason=result.finish_reason)],
        usage=ChatUsage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                        total_tokens=result.prompt_tokens + result.completion_tokens),
    )
