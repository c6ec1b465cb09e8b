"""TinyForge inference service: GET /health, POST /predict {"input": ...}."""

from __future__ import annotations

import time

from fastapi import FastAPI

from model_loader import load_model
from schemas import PredictRequest, PredictResponse

app = FastAPI(title="TinyForge service")
model = load_model()


@app.get("/health")
def health() -> dict:
    return {"status": "ok", "model": model.name, "placeholder": model.placeholder}


@app.post("/predict", response_model=PredictResponse)
def predict(request: PredictRequest) -> PredictResponse:
    started = time.perf_counter()
    output = model.predict(request.input, request.max_new_tokens)
    return PredictResponse(
        output=output,
        model=model.name,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        placeholder=model.placeholder,
    )
