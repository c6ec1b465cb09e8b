"""Ollama's ``Modelfile`` and the ``README.md`` of a ``gguf/`` folder.

The Modelfile's ``TEMPLATE`` must render exactly the prompt training and ``predict`` use
(:class:`core.models.prompting.PromptFormat`), including a default system line that the chat
template adds when no system message is given (SmolLM2's "You are a helpful AI assistant named
SmolLM ..."): that line becomes the Modelfile's ``SYSTEM``, and the template's system block is
recovered by rendering the chat template once with and once without a system message.
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

_SYSTEM_MARK = "\u2063TINYFORGE_SYSTEM\u2063"
_USER_MARK = "\u2063TINYFORGE_USER\u2063"
MAX_NUM_CTX = 8192  # a KV cache for a model's full context (128k for Llama 3) would not fit most machines


@dataclass(frozen=True)
class OllamaTemplate:
    """A Go template for Ollama (``.System`` and ``.Prompt``) and the default system line, if any."""

    template: str
    system: str | None


def ollama_template(tokenizer: Any, fmt: PromptFormat) -> OllamaTemplate:
    """The Ollama template that renders ``fmt``'s prompt; a system message is supported where the
    chat template's system block can be told apart, else the prompt is fixed text."""
    fixed = OllamaTemplate(_go_text(fmt.prompt_prefix) + "{{ .Prompt }}" + _go_text(fmt.prompt_suffix), None)
    if fmt.template != "chat":
        return fixed
    try:
        with_system = tokenizer.apply_chat_template(
            [{"role": "system", "content": _SYSTEM_MARK}, {"role": "user", "content": _USER_MARK}],
            tokenize=False, add_generation_prompt=True,
        )
    except Exception:  # a template that refuses system messages (Mistral's): no system support
        return fixed
    if not isinstance(with_system, str) or with_system.count(_SYSTEM_MARK) != 1 or with_system.count(_USER_MARK) != 1:
        return fixed
    before, rest = with_system.split(_SYSTEM_MARK)
    middle, suffix = rest.split(_USER_MARK)
    if suffix != fmt.prompt_suffix or _USER_MARK in before:
        return fixed
    # fmt.prompt_prefix = head + X + tail, with a system message: head + B + system + C + tail.
    prefix = fmt.prompt_prefix
    head = _common_prefix(before, prefix)
    tail = _common_suffix(middle, prefix[len(head):])
    block_start, block_end = before[len(head):], middle[:len(middle) - len(tail)]
    default = prefix[len(head):len(prefix) - len(tail)]
    if default and not (default.startswith(block_start) and default.endswith(block_end)
                        and len(default) >= len(block_start) + len(block_end)):
        return fixed
    system = default[len(block_start):len(default) - len(block_end)] if default else None
    template = (_go_text(head) + "{{ if .System }}" + _go_text(block_start) + "{{ .System }}" + _go_text(block_end)
                + "{{ end }}" + _go_text(tail) + "{{ .Prompt }}" + _go_text(fmt.prompt_suffix))
    return OllamaTemplate(template, system or None)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _common_suffix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n:]


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
