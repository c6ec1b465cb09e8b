"""Answer with a *base* model (before fine-tuning), in the prompt format training would use.

For comparing a fine-tuned model with where it started (the GUI's playground). The base model
is loaded through :mod:`core.models.registry` (``tiny-*`` with the run's seed gives exactly
the weights the run started from) and cached per (name, seed); generation is greedy, like
:func:`core.training.predict.predict`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["base_predict", "clear_cache"]

_CACHE: dict[tuple[str, int, int], tuple[Any, Any, Any]] = {}
_LOCK = threading.Lock()
_CACHE_SIZE = 2


def _load(base_model: str, seed: int, max_length: int) -> tuple[Any, Any, Any]:
    key = (base_model, int(seed), int(max_length))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    from core.models.prompting import build_prompt_format
    from core.models.registry import load_base_model, resolve_base_model

    spec = resolve_base_model(base_model)
    if spec.kind == "tiny":
        import transformers

        transformers.set_seed(seed)  # as the trainer does before building the model
    model, tokenizer = load_base_model(spec, seed=seed)
    model.eval()
    fmt = build_prompt_format(tokenizer, spec.architecture, max_length,
                              getattr(model.config, "decoder_start_token_id", None))
    with _LOCK:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (model, tokenizer, fmt)
    return model, tokenizer, fmt


def clear_cache() -> None:
    """Forget loaded base models."""
    with _LOCK:
        _CACHE.clear()


def base_predict(base_model: str, text: str, max_new_tokens: int | None = None, seed: int = 0,
                 max_length: int = 256) -> str:
    """Greedy answer of the base model ``base_model`` to ``text`` (answer only, stripped)."""
    from core.training.predict import generate_answer

    model, tokenizer, fmt = _load(base_model, seed, max_length)
    return generate_answer(model, tokenizer, fmt, text, max_new_tokens)
