"""Loads what the service answers with, described by model_metadata.json beside this file.

``"model_stub": true`` (a dry run): :class:`StubModel`, a clearly labelled placeholder.
Otherwise the exported ONNX graphs through ``runtime.py`` (ONNX Runtime + tokenizers, no torch);
the precision is ``$TINYFORGE_PRECISION`` (int8 | fp32), else int8 when it was exported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# The placeholder generates nothing, so it claims no confidence at all: every answer carries 0.0.
PLACEHOLDER_CONFIDENCE = 0.0


class StubModel:
    """The dry-run placeholder: it does not generate text and says so in every answer.

    Its ``confidence`` is always :data:`PLACEHOLDER_CONFIDENCE` (0.0).
    """

    name = "tinyforge_stub"
    placeholder = True
    precision = None
    confidence = PLACEHOLDER_CONFIDENCE
    default_max_new_tokens = None

    def predict(self, text: str, max_new_tokens: int | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[str, float]:
        """``(placeholder answer, PLACEHOLDER_CONFIDENCE)``."""
        return f"[dry-run placeholder] no model was trained; this service echoes your input: {text}", self.confidence

    def complete(self, messages: Sequence[tuple[str, str]], max_new_tokens: int | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Any:
        """A :class:`runtime.Completion` echoing the last message; no tokens counted (none were
        generated)."""
        from runtime import Completion

        text, confidence = self.predict(messages[-1][1], max_new_tokens, should_stop)
        return Completion(text, confidence, "stop", 0, 0)


class OnnxModel:
    """The exported model: greedy generation with ONNX Runtime."""

    placeholder = False

    def __init__(self, folder: Path, metadata: dict) -> None:
        from runtime import OnnxGenerator, default_precision

        self.precision = default_precision(folder)
        self.generator = OnnxGenerator(folder, precision=self.precision)
        base = str(metadata.get("base_model") or "model")
        if base.startswith(("/", "~", ".")) or ":\\" in base:  # a local folder (older exports): its name only
            base = Path(base).name or "model"
        self.name = f"{base} (onnx {self.precision})"
        # The model's own answer length (tinyforge_prompt.json), as `foremforge predict` uses it.
        override = os.environ.get("TINYFORGE_MAX_NEW_TOKENS", "").strip()
        self.default_max_new_tokens = int(override) if override else self.generator.max_new_tokens

    def predict(self, text: str, max_new_tokens: int | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[str, float]:
        """``(answer, confidence)``: the greedy answer and the geometric mean probability of its
        tokens; ``should_stop`` is asked before every token (a client that went away)."""
        return self.generator.generate_with_confidence(
            text, max_new_tokens=max_new_tokens or self.default_max_new_tokens, should_stop=should_stop
        )

    def complete(self, messages: Sequence[tuple[str, str]], max_new_tokens: int | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Any:
        """A :class:`runtime.Completion`: the greedy answer to ``(role, content)`` messages."""
        return self.generator.complete(
            messages, max_new_tokens=max_new_tokens or self.default_max_new_tokens, should_stop=should_stop
        )


def load_model(folder: Path = HERE):
    metadata = json.loads((folder / "model_metadata.json").read_text(encoding="utf-8"))
    if metadata.get("model_stub", True):
        return StubModel()
    if not (folder / "onnx" / "model.onnx.meta.json").is_file():
        raise RuntimeError(f"{folder} says it holds a real model but has no exported ONNX graphs")
    return OnnxModel(folder, metadata)
