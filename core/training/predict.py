"""Answer a question with a trained model, greedily, in the prompt format it was trained with.

``model_dir`` is a training output folder (``OUT/``) or its ``model/`` subfolder; the prompt
format comes from ``model/tinyforge_prompt.json`` (see :mod:`core.models.prompting`). Loaded
models are cached per folder (and modification time), so repeated questions are fast.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.models.prompting import (
    PromptFormat,
    encode_prompt,
    encode_question,
    load_prompt_format,
)
from core.run_layout import MODEL_DIR, PROMPT_FILE

logger = logging.getLogger(__name__)

__all__ = ["generate_answer", "generate_answers", "load_for_predict", "predict", "resolve_model_dir"]

_CACHE: dict[tuple[str, float], tuple[Any, Any, PromptFormat]] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2


def resolve_model_dir(model_dir: str | Path) -> Path:
    """The folder holding the model and ``tinyforge_prompt.json`` (``OUT/model`` or the folder)."""
    folder = Path(model_dir).expanduser()
    for candidate in (folder, folder / MODEL_DIR):
        if (candidate / PROMPT_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"{folder} holds no trained TinyForge model ({PROMPT_FILE} not found there or in {MODEL_DIR}/)"
    )


def load_for_predict(model_dir: str | Path) -> tuple[Any, Any, PromptFormat]:
    """``(model, tokenizer, prompt_format)`` for ``model_dir``, cached; the model is in eval mode."""
    folder = resolve_model_dir(model_dir)
    key = (str(folder.resolve()), (folder / PROMPT_FILE).stat().st_mtime)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    fmt = load_prompt_format(folder)
    auto = AutoModelForSeq2SeqLM if fmt.architecture == "seq2seq" else AutoModelForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    model = auto.from_pretrained(str(folder), trust_remote_code=False, use_safetensors=True)
    model.eval()
    with _CACHE_LOCK:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (model, tokenizer, fmt)
    return model, tokenizer, fmt


def predict(model_dir: str | Path, text: str, max_new_tokens: int | None = None) -> str:
    """Greedy answer to ``text``: only the generated answer, special tokens removed, stripped.
    ``max_new_tokens`` defaults to the model's saved answer length (``fmt.max_new_tokens``)."""
    model, tokenizer, fmt = load_for_predict(model_dir)
    return generate_answer(model, tokenizer, fmt, text, max_new_tokens)


def generate_answer(model: Any, tokenizer: Any, fmt: Any, text: str, max_new_tokens: int | None = None,
                    context: Any = None) -> str:
    """Greedy answer of a loaded ``model`` in prompt format ``fmt`` (answer only, stripped), to
    ``text`` asked after ``context`` (:class:`core.training.formats.Context`) when given."""
    import torch

    prompt = encode_question(tokenizer, fmt, text, context)
    ids = torch.tensor([prompt], dtype=torch.long)
    kwargs: dict[str, Any] = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "max_new_tokens": int(max_new_tokens or fmt.max_new_tokens),
        "do_sample": False,
        "num_beams": 1,
        "eos_token_id": list(fmt.stop_token_ids),
        "pad_token_id": fmt.pad_token_id,
    }
    if fmt.architecture == "seq2seq":
        kwargs["decoder_start_token_id"] = fmt.decoder_start_token_id
    with torch.inference_mode():
        out = model.generate(**kwargs)
    new = out[0] if fmt.architecture == "seq2seq" else out[0, ids.shape[1]:]
    return tokenizer.decode(new.tolist(), skip_special_tokens=True).strip()


def generate_answers(model: Any, tokenizer: Any, fmt: Any, texts: list[str], max_new_tokens: int | None = None,
                     batch_size: int = 32, on_batch: Any = None, contexts: Sequence[Any] | None = None) -> list[str]:
    """Greedy answers to many ``texts``, several at a time (prompts of similar length batched
    together, causal prompts padded on the left); same answers as :func:`generate_answer` up to
    float rounding. On a CPU a decode step of 32 rows costs about twice one of 8 (small-batch
    steps are bound by reading the weights), so big batches make an evaluation several times
    faster. ``on_batch(done, total)`` is called after each batch (progress, cancel).
    ``contexts`` gives each text the conversation it is asked in (:class:`core.training.formats.Context`)."""
    import torch

    from core.memory import trim_heap

    limit = int(max_new_tokens or fmt.max_new_tokens)
    if contexts is None:
        prompts = [encode_prompt(tokenizer, fmt, text) for text in texts]
    else:
        prompts = [encode_question(tokenizer, fmt, text, context) for text, context in zip(texts, contexts, strict=True)]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers = [""] * len(prompts)
    seq2seq = fmt.architecture == "seq2seq"
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        ids = torch.full((len(rows), width), fmt.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(rows):
            n = len(prompts[i])
            cols = slice(0, n) if seq2seq else slice(width - n, width)
            ids[r, cols] = torch.tensor(prompts[i], dtype=torch.long)
            mask[r, cols] = 1
        kwargs: dict[str, Any] = {
            "input_ids": ids, "attention_mask": mask, "max_new_tokens": limit, "do_sample": False,
            "num_beams": 1, "eos_token_id": list(fmt.stop_token_ids), "pad_token_id": fmt.pad_token_id,
        }
        if seq2seq:
            kwargs["decoder_start_token_id"] = fmt.decoder_start_token_id
        with torch.inference_mode():
            out = model.generate(**kwargs)
        new = out if seq2seq else out[:, width:]
        for r, i in enumerate(rows):
            answers[i] = tokenizer.decode(new[r].tolist(), skip_special_tokens=True).strip()
        del out, new
        trim_heap()  # each batch's growing key/value cache fragments the heap: peak RSS would creep up
        if on_batch is not None:
            on_batch(min(start + batch_size, len(order)), len(order))
    return answers
