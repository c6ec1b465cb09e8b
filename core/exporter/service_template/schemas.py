"""Request and response bodies of the service.

Types are strict: ``"5"``, ``5.0`` and ``true`` are not a ``max_new_tokens``, and ``input`` must
be a JSON string of valid Unicode text (a lone surrogate such as ``"\\ud800"`` is refused).
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, StrictInt, StrictStr, field_validator

MAX_INPUT_CHARS = int(os.environ.get("TINYFORGE_MAX_INPUT_CHARS", "10000"))
MAX_NEW_TOKENS = int(os.environ.get("TINYFORGE_MAX_NEW_TOKENS_LIMIT", "512"))


class PredictRequest(BaseModel):
    input: StrictStr = Field(..., min_length=1, max_length=MAX_INPUT_CHARS)
    max_new_tokens: StrictInt | None = Field(None, ge=1, le=MAX_NEW_TOKENS)

    @field_validator("input")
    @classmethod
    def _valid_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input must not be blank")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # JSON allows "\ud800" escapes that decode to no character; the tokenizer cannot.
            raise ValueError("input must be valid Unicode text (it holds a lone surrogate escape)") from None
        return value


class PredictResponse(BaseModel):
    output: str
    confidence: float = Field(..., ge=0.0, le=1.0)
    model: str
    latency_ms: float
    placeholder: bool = False
