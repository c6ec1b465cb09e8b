"""``foremforge predict --model gguf/model-Q8_0.gguf``: answer through llama.cpp, the way
``predict`` answers with the trained model (same prompt format, greedy, same stop ids).

The prompt format travels inside the file (``tinyforge.prompt_format``), so a GGUF copied out
of its service folder still answers like the trained model. llama.cpp tokenizes the rendered
prompt itself, as Ollama and llama-cli do; the export checked that it gives our ids.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.exporter.errors import ExportError
from core.exporter.gguf_runtime import LlamaCppRuntime, require_llama_cpp
from core.exporter.gguf_writer import PROMPT_FORMAT_KEY
from core.exporter.modelfile import MAX_NUM_CTX
from core.models.prompting import PromptFormat

logger = logging.getLogger(__name__)

__all__ = ["gguf_answerer", "read_prompt_format"]


def read_prompt_format(path: Path) -> tuple[PromptFormat, int]:
    """The prompt format stored in a GGUF file of ours and the model's context length."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} is not a readable GGUF file: {exc}") from exc
    field = reader.get_field(PROMPT_FORMAT_KEY)
    if field is None:
        raise ExportError(f"{path} was not exported by TinyForge (it has no {PROMPT_FORMAT_KEY}); "
                          "use llama.cpp or Ollama to run it")
    context = reader.get_field("llama.context_length")
    n_ctx = int(context.contents()) if context is not None else MAX_NUM_CTX
    return PromptFormat.from_dict(json.loads(field.contents())), min(n_ctx, MAX_NUM_CTX)


def gguf_answerer(path: Path, max_new_tokens: int | None = None) -> Callable[..., str]:
    """A function answering one question with the GGUF model at ``path``, loaded once."""
    require_llama_cpp("Answering with a GGUF file")
    fmt, n_ctx = read_prompt_format(path)
    runtime = LlamaCppRuntime(path, n_ctx)
    limit = int(max_new_tokens or fmt.max_new_tokens)
    stop_ids = set(fmt.stop_token_ids)

    def answer(text: str, context: Any = None) -> str:
        if context is None or (context.system is None and not context.history):
            rendered = fmt.render(text)
        else:
            rendered = fmt.render_conversation(context.system, (*context.history, ("user", text)))
        prompt = runtime.tokenize(rendered, add_special=True)
        if len(prompt) >= n_ctx:
            raise ExportError(f"the question is {len(prompt)} tokens long; this model reads at most {n_ctx - 1}")
        ids, _ = runtime.greedy(prompt, min(limit, n_ctx - len(prompt)), stop_ids)
        return runtime.detokenize(ids).strip()

    return answer
