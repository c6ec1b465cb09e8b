"""Ollama's ``Modelfile`` and the ``README.md`` of a ``gguf/`` folder.

The Modelfile's ``TEMPLATE`` must render exactly the prompt training and ``predict`` use
(:class:`core.models.prompting.PromptFormat`), for one question and for a conversation
(``.Messages``), including a default system line that the chat template adds when no system
message is given (SmolLM2's "You are a helpful AI assistant named SmolLM ..."): that line
becomes the Modelfile's ``SYSTEM``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from core.exporter.errors import ExportError
from core.models.prompting import PromptFormat
from core.run_layout import GgufFile

logger = logging.getLogger(__name__)

__all__ = ["OllamaTemplate", "modelfile_text", "ollama_template", "readme_text"]

MAX_NUM_CTX = 8192  # a KV cache for a model's full context (128k for Llama 3) would not fit most machines


@dataclass(frozen=True)
class OllamaTemplate:
    """A Go template for Ollama (``.System`` and ``.Messages``) and the default system line, if any."""

    template: str
    system: str | None


def ollama_template(tokenizer: Any, fmt: PromptFormat) -> OllamaTemplate:
    """The Ollama template that renders ``fmt``'s conversations: ``.Messages`` (user and assistant
    turns) as training renders them (:meth:`PromptFormat.render_conversation`), after the system
    message where the template puts one. A chat template's default system line (used when no
    system message is given) becomes the Modelfile's ``SYSTEM``; one question renders exactly
    the training prompt. ``tokenizer`` is kept for callers; the texts come from ``fmt``."""
    turns = fmt.chat_turns()
    prefix = fmt.prompt_prefix
    default: str | None = None
    head, tail = turns.system_prefix, turns.system_to_user
    if fmt.template == "chat" and len(prefix) >= len(head) + len(tail) and prefix.startswith(head) \
            and prefix.endswith(tail) and head:
        default = prefix[len(head):len(prefix) - len(tail)] or None
    opening = (f"{{{{ if .System }}}}{_go_text(head)}{{{{ .System }}}}{_go_text(tail)}"
               f"{{{{ else }}}}{_go_text(prefix)}{{{{ end }}}}")
    messages = ('{{ range .Messages }}{{ if eq .Role "user" }}{{ .Content }}' + _go_text(turns.user_to_assistant)
                + '{{ else if eq .Role "assistant" }}{{ .Content }}' + _go_text(turns.assistant_to_user)
                + "{{ end }}{{ end }}")
    return OllamaTemplate(opening + messages, default)


def _go_text(text: str) -> str:
    """Literal text inside a Go template: ``{{`` would open an action, so it is written as one."""
    return text.replace("{{", '{{ "{{" }}')


def modelfile_text(file_name: str, template: OllamaTemplate, stop_words: list[str], num_ctx: int,
                   max_new_tokens: int) -> str:
    """The Modelfile: the GGUF file, the template, greedy decoding and where an answer stops."""
    for part in (template.template, template.system or ""):
        if '"""' in part:
            raise ExportError('the chat template contains """, which a Modelfile cannot quote')
    lines = [f"FROM ./{file_name}", f'TEMPLATE """{template.template}"""']
    if template.system:
        lines.append(f'SYSTEM """{template.system}"""')
    lines += [f"PARAMETER stop {json.dumps(word, ensure_ascii=False)}" for word in stop_words]
    lines += [
        f"PARAMETER num_ctx {min(num_ctx, MAX_NUM_CTX)}",
        f"PARAMETER num_predict {max_new_tokens}",
        "PARAMETER temperature 0",
        # Ollama penalises repeats by default (1.1): the trained model's greedy answer has none.
        "PARAMETER repeat_penalty 1",
    ]
    return "\n".join(lines) + "\n"


def readme_text(rows: list[GgufFile], recommended: str, num_ctx: int, max_new_tokens: int,
                checked_in: str) -> str:
    """``gguf/README.md``: how to run the recommended file in Ollama and llama.cpp, and how every
    file compared with the trained model."""
    table = "\n".join(
        f"| {row.file} | {row.size_mb} | {row.agreement} | {row.exact_match} | "
        f"{'yes' if row.passed else 'no: answers drift'}{' (recommended)' if row.recommended else ''} |"
        if row.checked else f"| {row.file} | {row.size_mb} | – | – | {row.note or 'not checked'} |"
        for row in rows
    )
    return f"""# GGUF files for llama.cpp and Ollama

`{recommended}` is the smallest file that answers like the trained model (checked in {checked_in}).

## Ollama

```
ollama create my-model -f Modelfile
ollama run my-model
```

The Modelfile's template renders the prompt the model was trained on; decoding is greedy.

## llama.cpp

```
llama-cli -m {recommended} --jinja -c {min(num_ctx, MAX_NUM_CTX)} -n {max_new_tokens} --temp 0 --repeat-penalty 1
```

`--jinja` applies the chat template stored in the file, which renders the same prompt.

## How each file compares with the trained model

Teacher-forced top-1 agreement and greedy exact match on the export's parity questions.

| file | size (MB) | agreement | exact match | passed |
|---|---|---|---|---|
{table}
"""
