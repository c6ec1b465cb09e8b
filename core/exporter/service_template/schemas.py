"""Request and response bodies of the service."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

MAX_INPUT_CHARS = int(os.environ.get("TINYFORGE_MAX_INPUT_CHARS", "10000"))


class PredictRequest(BaseModel):
    input: str = Field(..., min_length=1, max_length=MAX_INPUT_CHARS)
    max_new_tokens: int | None = Field(None, ge=1, le=512)


class PredictResponse(BaseModel):
    output: str
    model: str
    latency_ms: float
    placeholder: bool = False
