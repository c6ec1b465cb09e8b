"""A base model's tokenizer without transformers or torch: for previews in the window.

``tokenizers`` encodes (``tokenizer.json``, post-processor included, so special tokens are
added as transformers adds them) and jinja2 renders the chat template, as transformers does.
It offers just what :func:`core.models.prompting.build_prompt_format` and the encoders use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["LightTokenizer", "light_tokenizer"]


class LightTokenizer:
    """``tokenizer(text, add_special_tokens=...)["input_ids"]``, ``apply_chat_template`` and
    the special ids, over a ``tokenizers.Tokenizer``."""

    def __init__(self, backend: Any, eos_token: str | None, pad_token: str | None = None,
                 bos_token: str | None = None, chat_template: str | None = None) -> None:
        self.backend = backend
        self.eos_token = eos_token
        self.bos_token = bos_token
        self.eos_token_id = backend.token_to_id(eos_token) if eos_token else None
        pad_id = backend.token_to_id(pad_token) if pad_token else None
        self.pad_token_id = pad_id if pad_id is not None else self.eos_token_id
        self.chat_template = chat_template

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)}

    def encode_many(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        """Many texts at once (the Rust side runs them in parallel)."""
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)]

    def convert_ids_to_tokens(self, token_id: int) -> str | None:
        return self.backend.id_to_token(int(token_id))

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        if not self.chat_template:
            raise ValueError("the tokenizer has no chat template")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message: str) -> None:
            raise ValueError(message)

        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "", eos_token=self.eos_token or "")


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<s>", ...} in older tokenizer_config files
        value = value.get("content")
    return value if isinstance(value, str) else None


def light_tokenizer(folder: str | Path) -> LightTokenizer | None:
    """The tokenizer of a model folder (``tokenizer.json`` + ``tokenizer_config.json``), or None
    when the folder has no ``tokenizer.json`` (a slow SentencePiece-only tokenizer)."""
    from tokenizers import Tokenizer

    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        return None
    config: dict[str, Any] = {}
    if (folder / "tokenizer_config.json").is_file():
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = config.get("chat_template")
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    return LightTokenizer(Tokenizer.from_file(str(folder / "tokenizer.json")), _token_text(config.get("eos_token")),
                          _token_text(config.get("pad_token")), _token_text(config.get("bos_token")), template)
