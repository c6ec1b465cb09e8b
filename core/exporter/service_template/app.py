"""TinyForge inference service: GET /health, POST /predict {"input": ..., "max_new_tokens"?}.

Runs from this folder alone (``./run.sh`` or ``uvicorn app:app``): a dry-run folder answers
with a labelled placeholder, an exported one runs its ONNX graphs with ONNX Runtime.
Bad requests (malformed JSON, a missing/blank/oversized input) get a 4xx, never a 500.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # started from another folder (uvicorn --app-dir, tests)
    sys.path.insert(0, str(HERE))

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.concurrency import run_in_threadpool  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from model_loader import load_model  # noqa: E402
from schemas import MAX_INPUT_CHARS, PredictRequest, PredictResponse  # noqa: E402

logger = logging.getLogger("tinyforge.service")
# JSON escapes can make a body several times longer than its text; anything beyond this is refused
# before it is read, so a huge upload cannot tie the service up.
MAX_BODY_BYTES = 8 * MAX_INPUT_CHARS + 4096

app = FastAPI(title="TinyForge service")
model = load_model()


@app.middleware("http")
async def limit_body_size(request: Request, call_next):
    length = request.headers.get("content-length")
    if length is not None:
        try:
            too_big = int(length) > MAX_BODY_BYTES
        except ValueError:
            return JSONResponse({"detail": "invalid Content-Length"}, status_code=400)
        if too_big:
            return JSONResponse({"detail": f"request body too large (limit {MAX_BODY_BYTES} bytes)"}, status_code=413)
    return await call_next(request)


@app.get("/health")
def health() -> dict:
    return {
        "status": "ok",
        "model": model.name,
        "placeholder": model.placeholder,
        "precision": model.precision,
        "max_input_chars": MAX_INPUT_CHARS,
    }


@app.post("/predict", response_model=PredictResponse)
async def predict(request: PredictRequest) -> PredictResponse:
    started = time.perf_counter()
    output = await run_in_threadpool(model.predict, request.input, request.max_new_tokens)
    return PredictResponse(
        output=output,
        model=model.name,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        placeholder=model.placeholder,
    )
