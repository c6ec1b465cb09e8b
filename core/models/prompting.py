"""How an ``input`` becomes model input ids, and how an answer stops: the prompt format.

Training, ``predict`` and the ONNX service must format prompts identically, so the format is
decided once at training time and saved as ``model/tinyforge_prompt.json``. That file is plain
JSON, readable without torch; with the ``tokenizers`` library and ``model/tokenizer.json`` it is
all a service needs to encode a question and stop decoding.

``tinyforge_prompt.json`` (format_version 1)::

    {
      "format_version": 1,
      "architecture": "causal" | "seq2seq",
      "template": "chat" | "plain",      # chat: the tokenizer's chat template, rendered once
      "prompt_prefix": str,              # text placed before the user's input
      "prompt_suffix": str,              # text placed after it (e.g. the assistant header)
      "add_special_tokens": bool,        # pass to tokenizer encode() for the prompt text
      "eos_token_id": int,               # appended to every training answer; generation stops here
      "stop_token_ids": [int, ...],      # every id that ends generation (includes eos_token_id)
      "pad_token_id": int,
      "decoder_start_token_id": int | null,  # seq2seq: first decoder id; causal: null
      "max_length": int,                 # the training max_length (prompt + answer tokens)
      "max_new_tokens": int              # the default answer length everywhere (predict, service,
    }                                    # playground, evaluation); 128 when absent

Encoding rules (the contract):

* prompt ids = ``tokenizer.encode(prompt_prefix + input + prompt_suffix,
  add_special_tokens=add_special_tokens)``;
* answer ids = ``tokenizer.encode(output, add_special_tokens=False) + [eos_token_id]``;
* causal: the model sees ``prompt ids + answer ids`` and generates after the prompt ids; the
  training loss covers only the answer ids;
* seq2seq: the encoder sees the prompt ids; the decoder starts from ``decoder_start_token_id``
  and produces the answer ids;
* generation is greedy and stops at any id in ``stop_token_ids``; the answer is the generated
  ids decoded with special tokens skipped, stripped of surrounding whitespace.

Training cuts a very long text *before* tokenizing it (:func:`encode_example`): it keeps
``max_length * CHARS_PER_TOKEN`` characters (the end of a causal prompt, the start otherwise),
widening the cut in the rare case that yields too few tokens, so a 50 MB record costs what a
short one does instead of gigabytes of token ids that truncation would throw away.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "PROMPT_FILENAME",
    "EncodedExample",
    "PromptFormat",
    "build_prompt_format",
    "encode_example",
    "encode_prompt",
    "encode_response",
    "load_prompt_format",
]

PROMPT_FILENAME = "tinyforge_prompt.json"
FORMAT_VERSION = 1
# One answer length for every path that answers (byte-level tiny models spend a token per character).
DEFAULT_MAX_NEW_TOKENS = 128
_PLACEHOLDER = "\u2063TINYFORGE_INPUT\u2063"
# Characters kept per token of max_length when a text is cut before tokenizing. A token rarely
# spans more than 4 characters of prose, so 8 leaves a wide margin; a text whose cut still gives
# too few tokens (long runs of spaces or symbols) is cut again 4x wider, so the ids truncation
# keeps are the ones a full tokenization would give.
CHARS_PER_TOKEN = 8
# Tokens beyond max_length a cut text must still give: the word cut in half tokenizes
# differently, and it must lie outside what truncation keeps.
_CUT_MARGIN_TOKENS = 16
# Plain (non-chat) causal models: a short, unambiguous question/answer frame.
PLAIN_CAUSAL_PREFIX = "Question: "
PLAIN_CAUSAL_SUFFIX = "\nAnswer: "


@dataclass(frozen=True)
class PromptFormat:
    """The saved prompt format; see the module docstring for the meaning of each field."""

    architecture: str
    template: str
    prompt_prefix: str
    prompt_suffix: str
    add_special_tokens: bool
    eos_token_id: int
    pad_token_id: int
    decoder_start_token_id: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    max_length: int = 256
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    format_version: int = FORMAT_VERSION

    def render(self, text: str) -> str:
        """The prompt text for ``text`` (before tokenisation)."""
        return f"{self.prompt_prefix}{text}{self.prompt_suffix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptFormat:
        version = int(data.get("format_version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            raise ValueError(f"{PROMPT_FILENAME} format_version {version} is newer than this TinyForge")
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["stop_token_ids"] = [int(i) for i in values.get("stop_token_ids") or [data["eos_token_id"]]]
        return cls(**values)

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/tinyforge_prompt.json`` atomically."""
        from core.jsonio import write_json_atomic

        return write_json_atomic(Path(folder) / PROMPT_FILENAME, self.to_dict())


def load_prompt_format(folder: str | Path) -> PromptFormat:
    """Read ``folder/tinyforge_prompt.json`` (no torch needed)."""
    from core.jsonio import read_json

    return PromptFormat.from_dict(read_json(Path(folder) / PROMPT_FILENAME))


def build_prompt_format(
    tokenizer: Any, architecture: str, max_length: int = 256, decoder_start_token_id: int | None = None
) -> PromptFormat:
    """Decide the prompt format for a tokenizer: its chat template when it has one (causal),
    else a plain ``Question:/Answer:`` frame (causal) or the bare input (seq2seq).

    ``decoder_start_token_id`` (seq2seq) comes from the model config; the pad id when None.
    """
    if architecture not in ("causal", "seq2seq"):
        raise ValueError(f"architecture must be 'causal' or 'seq2seq', not {architecture!r}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no end-of-sequence token; generation could not stop")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    template, prefix, suffix, add_special = "plain", "", "", True
    if architecture == "causal":
        prefix, suffix = PLAIN_CAUSAL_PREFIX, PLAIN_CAUSAL_SUFFIX
        chat = _split_chat_template(tokenizer)
        if chat is not None:
            template, (prefix, suffix), add_special = "chat", chat, False
    decoder_start = None
    if architecture == "seq2seq":
        decoder_start = pad if decoder_start_token_id is None else decoder_start_token_id
    return PromptFormat(
        architecture=architecture,
        template=template,
        prompt_prefix=prefix,
        prompt_suffix=suffix,
        add_special_tokens=add_special,
        eos_token_id=int(eos),
        pad_token_id=int(pad),
        decoder_start_token_id=None if decoder_start is None else int(decoder_start),
        stop_token_ids=[int(eos)],
        max_length=int(max_length),
    )


def _split_chat_template(tokenizer: Any) -> tuple[str, str] | None:
    """Render the chat template around a placeholder and return (prefix, suffix), or None."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": _PLACEHOLDER}], tokenize=False, add_generation_prompt=True
        )
    except Exception as error:  # a template that needs more than one user turn: use plain
        logger.warning("chat template not usable (%s); using the plain prompt format", error)
        return None
    if not isinstance(text, str) or text.count(_PLACEHOLDER) != 1:
        return None
    prefix, suffix = text.split(_PLACEHOLDER)
    return prefix, suffix


def encode_prompt(tokenizer: Any, fmt: PromptFormat, text: str) -> list[int]:
    """Token ids of the prompt for ``text`` (encoder input for seq2seq)."""
    return list(tokenizer(fmt.render(text), add_special_tokens=fmt.add_special_tokens)["input_ids"])


def encode_response(tokenizer: Any, fmt: PromptFormat, text: str) -> list[int]:
    """Token ids of an answer, ending with ``eos_token_id`` so generation learns to stop."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [fmt.eos_token_id]


def _encode_bounded(encode: Any, text: str, max_length: int, keep_end: bool) -> list[int]:
    """``encode(text)``, but a text far longer than ``max_length`` tokens is cut first.

    The cut keeps the end (``keep_end``) or the start of the text and always yields more than
    ``max_length`` tokens of the text itself (beyond what ``encode`` adds around it), so
    truncation to ``max_length`` keeps the same ids a full encode would give.
    """
    limit = max_length * CHARS_PER_TOKEN
    if len(text) <= limit:
        return encode(text)
    need = max_length + len(encode("")) + _CUT_MARGIN_TOKENS  # template or EOS ids around the text do not count
    while len(text) > limit:
        ids = encode(text[-limit:] if keep_end else text[:limit])
        if len(ids) > need:
            return ids
        limit *= 4
    return encode(text)


@dataclass(frozen=True)
class EncodedExample:
    """One training example: model inputs, labels (-100 = no loss) and whether it was cut."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    n_tokens: int  # prompt + answer tokens before truncation


def encode_example(
    tokenizer: Any, fmt: PromptFormat, prompt: str, response: str, max_length: int
) -> EncodedExample:
    """Encode one record per the contract; sequences longer than ``max_length`` are cut.

    Causal: one sequence ``prompt + answer`` of at most ``max_length`` tokens, labels masked on
    the prompt. When too long, the answer keeps at least half of ``max_length`` (so every record
    still teaches something) and the prompt loses tokens from its start (the end, where the
    answer begins, matters most). Seq2seq: the encoder input and the labels are each cut at
    ``max_length``. A text longer than ``max_length * CHARS_PER_TOKEN`` characters is cut
    before tokenizing (see the module docstring); ``n_tokens`` then counts the cut text.
    """
    keep_prompt_end = fmt.architecture != "seq2seq"
    p_ids = _encode_bounded(lambda text: encode_prompt(tokenizer, fmt, text), prompt, max_length, keep_prompt_end)
    r_ids = _encode_bounded(lambda text: encode_response(tokenizer, fmt, text), response, max_length, False)
    if fmt.architecture == "seq2seq":
        truncated = len(p_ids) > max_length or len(r_ids) > max_length
        return EncodedExample(p_ids[:max_length], r_ids[:max_length], truncated, len(p_ids) + len(r_ids))
    n_tokens = len(p_ids) + len(r_ids)
    truncated = n_tokens > max_length
    if truncated:
        keep_answer = min(len(r_ids), max(max_length // 2, max_length - len(p_ids)))
        keep_prompt = max_length - keep_answer
        p_ids = p_ids[len(p_ids) - keep_prompt:] if keep_prompt > 0 else []
        r_ids = r_ids[:keep_answer]
    return EncodedExample(p_ids + r_ids, [-100] * len(p_ids) + r_ids, truncated, n_tokens)
