"""Request and response bodies of the service.

Types are strict: ``"5"``, ``5.0`` and ``true`` are not a ``max_new_tokens``, and ``input`` must
be a JSON string of valid Unicode text (a lone surrogate such as ``"\\ud800"`` is refused).
``/v1/chat/completions`` takes OpenAI's request shape (fields this service has no use for are
accepted and ignored) and answers in OpenAI's response shape.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

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
        return _unicode_text(value, "input")


class PredictResponse(BaseModel):
    output: str
    confidence: float = Field(..., ge=0.0, le=1.0)
    model: str
    latency_ms: float
    placeholder: bool = False


def _unicode_text(value: str, what: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON allows "\ud800" escapes that decode to no character; the tokenizer cannot.
        raise ValueError(f"{what} must be valid Unicode text (it holds a lone surrogate escape)") from None
    return value


class TextPart(BaseModel):
    """One part of a message's content given as a list; only text parts exist here."""

    type: StrictStr
    text: StrictStr

    @field_validator("type")
    @classmethod
    def _text_only(cls, value: str) -> str:
        if value != "text":
            raise ValueError("only text content parts are supported (type 'text')")
        return value


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: StrictStr | list[TextPart]

    def text(self) -> str:
        """The content as one string (text parts joined by newlines)."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat request. ``model`` is ignored (this folder serves one model), and so is
    ``temperature``: generation is greedy. ``stream`` and ``n`` > 1 are refused by the route."""

    model: StrictStr | None = None
    messages: list[ChatMessage]
    max_tokens: StrictInt | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    max_completion_tokens: StrictInt | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    temperature: StrictFloat | StrictInt | None = None
    stream: StrictBool | None = None
    n: StrictInt | None = None

    @model_validator(mode="after")
    def _a_conversation(self) -> ChatCompletionRequest:
        """An optional system message, then user and assistant turns alternating from a user
        message to a user message, of at most ``MAX_INPUT_CHARS`` characters in all."""
        roles = [message.role for message in self.messages]
        if not roles:
            raise ValueError("messages must not be empty")
        turns = roles[1:] if roles[0] == "system" else roles
        if "system" in turns:
            raise ValueError("a system message may only come first")
        for n, role in enumerate(turns):
            if role != ("user" if n % 2 == 0 else "assistant"):
                raise ValueError("user and assistant messages must alternate, starting with a user message")
        if not turns or turns[-1] != "user":
            raise ValueError("messages must end with a user message")
        texts = [message.text() for message in self.messages]
        if not texts[-1].strip():
            raise ValueError("the last user message must not be blank")
        total = sum(len(text) for text in texts)
        if total > MAX_INPUT_CHARS:
            raise ValueError(f"messages hold {total} characters; at most {MAX_INPUT_CHARS} are accepted")
        for text in texts:
            _unicode_text(text, "message content")
        return self

    def conversation(self) -> list[tuple[str, str]]:
        """``(role, text)`` of every message, in order."""
        return [(message.role, message.text()) for message in self.messages]

    def token_budget(self) -> int | None:
        """The most tokens to generate (``max_completion_tokens``, else ``max_tokens``), or None."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
