"""Loads what the service answers with, described by model_metadata.json beside this file."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


class StubModel:
    """The dry-run placeholder: it does not generate text and says so in every answer."""

    name = "tinyforge_stub"
    placeholder = True

    def predict(self, text: str, max_new_tokens: int | None = None) -> str:
        return f"[dry-run placeholder] no model was trained; this service echoes your input: {text}"


def load_model():
    metadata = json.loads((HERE / "model_metadata.json").read_text(encoding="utf-8"))
    if metadata.get("model_stub", True):
        return StubModel()
    raise RuntimeError("this service folder holds no model this loader understands")
