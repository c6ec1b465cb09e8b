"""Request and response bodies of the service."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, field_validator

MAX_INPUT_CHARS = int(os.environ.get("TINYFORGE_MAX_INPUT_CHARS", "10000"))
MAX_NEW_TOKENS = int(os.environ.get("TINYFORGE_MAX_NEW_TOKENS_LIMIT", "512"))


class PredictRequest(BaseModel):
    input: str = Field(..., min_length=1, max_length=MAX_INPUT_CHARS)
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input must not be blank")
        return value


class PredictResponse(BaseModel):
    output: str
    model: str
    latency_ms: float
    placeholder: bool = False
