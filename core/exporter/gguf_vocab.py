"""A Hugging Face byte-level BPE tokenizer as GGUF's ``tokenizer.ggml.*`` metadata.

llama.cpp re-implements the tokenizer from this metadata, so every piece must say what the
trained model saw: the token list and types, the merges, which pre-tokenizer splits the text
before merging (``tokenizer.ggml.pre``), the special ids, whether a BOS is added, and the
chat template. The pre-tokenizer name is read off ``tokenizer.json``'s structure; the export
then checks the result by tokenizing in llama.cpp itself (:mod:`core.exporter.gguf_check`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from core.exporter.errors import ExportError
from core.models.prompting import PromptFormat

logger = logging.getLogger(__name__)

__all__ = ["GgufVocab", "SUPPORTED_TOKENIZERS", "plain_chat_template", "read_vocab"]

SUPPORTED_TOKENIZERS = "byte-level BPE tokenizers (GPT-2, SmolLM and Llama 3 style)"

# gguf.TokenType values (the gguf package is imported only where files are written).
NORMAL, UNUSED, CONTROL, USER_DEFINED = 1, 5, 3, 4

# llama.cpp refuses a gpt2 vocabulary without merges, and a byte tokenizer has none. BPE starts
# from single characters, so a merge of two longer pieces never applies: bytes stay bytes.
_NO_MERGES = "no-merges here"
# Llama 3's split pattern in tokenizer.json; llama.cpp calls its adapted copy "llama-bpe".
_LLAMA3_PATTERN = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)


@dataclass(frozen=True)
class GgufVocab:
    """What the GGUF writer needs to describe the tokenizer (see the module docstring)."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    bos_id: int | None
    eos_id: int
    pad_id: int | None
    unk_id: int | None
    add_bos: bool
    add_eos: bool
    chat_template: str


def read_vocab(tokenizer: Any, fmt: PromptFormat, vocab_size: int) -> GgufVocab:
    """The GGUF tokenizer metadata of a fast HF tokenizer trained with prompt format ``fmt``.

    Raises :class:`ExportError` for a tokenizer llama.cpp's ``gpt2`` tokenizer cannot reproduce.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or spec.get("normalizer") is not None:
        raise ExportError(f"GGUF export supports {SUPPORTED_TOKENIZERS}; this model's tokenizer is "
                          f"{_describe(spec)}")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    pre = _pre_tokenizer(spec.get("pre_tokenizer"), bool(merges))
    tokens, types = _tokens(tokenizer, model.get("vocab") or {}, vocab_size)
    add_bos, add_eos = _added_specials(tokenizer, fmt)
    return GgufVocab(
        tokens=tokens,
        token_types=types,
        merges=merges or [_NO_MERGES],
        pre=pre,
        bos_id=tokenizer.bos_token_id,
        eos_id=fmt.eos_token_id,
        pad_id=fmt.pad_token_id,
        unk_id=tokenizer.unk_token_id,
        add_bos=add_bos,
        add_eos=add_eos,
        chat_template=str(tokenizer.chat_template) if fmt.template == "chat" else plain_chat_template(fmt),
    )


def plain_chat_template(fmt: PromptFormat) -> str:
    """A Jinja chat template that renders a model's plain ``Question:/Answer:`` frame, so a
    runtime that applies the GGUF's template (llama.cpp ``--jinja``, LM Studio) sends the prompt
    the model was trained on."""
    prefix, suffix = json.dumps(fmt.prompt_prefix), json.dumps(fmt.prompt_suffix)
    return (
        "{% for message in messages %}"
        f"{{% if message['role'] == 'user' %}}{{{{ {prefix} + message['content'] + {suffix} }}}}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
        "{% endif %}{% endfor %}"
    )


def _describe(spec: dict[str, Any]) -> str:
    model = spec.get("model") or {}
    if model.get("byte_fallback") or (spec.get("normalizer") or {}).get("type") in ("Sequence", "Replace"):
        return "SentencePiece-style (Llama 2, TinyLlama, Mistral)"
    return f"{model.get('type', 'unknown')} with normalizer {(spec.get('normalizer') or {}).get('type')}"


def _pre_tokenizer(spec: dict[str, Any] | None, has_merges: bool) -> str:
    """llama.cpp's name for the pre-tokenizer in ``tokenizer.json``, or :class:`ExportError`."""
    parts = (spec or {}).get("pretokenizers") if (spec or {}).get("type") == "Sequence" else [spec or {}]
    kinds = [p.get("type") for p in parts or []]
    byte_level = parts[-1] if kinds and kinds[-1] == "ByteLevel" else None
    if byte_level is not None and not byte_level.get("add_prefix_space", False):
        regex = byte_level.get("use_regex", True)
        if kinds == ["ByteLevel"] and (regex or not has_merges):
            return "gpt-2"  # without merges, how the text is split changes nothing
        if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and regex:
            return "smollm"
        if kinds == ["Split", "ByteLevel"] and not regex and _is_llama3_split(parts[0]):
            return "llama-bpe"
    raise ExportError(f"GGUF export supports {SUPPORTED_TOKENIZERS}; this tokenizer pre-splits text "
                      f"as {' + '.join(str(k) for k in kinds) or 'nothing'}, which llama.cpp has no name for")


def _is_llama3_split(part: dict[str, Any]) -> bool:
    pattern = part.get("pattern") or {}
    return pattern.get("Regex") == _LLAMA3_PATTERN and part.get("behavior") == "Isolated" and not part.get("invert")


def _tokens(tokenizer: Any, vocab: dict[str, int], vocab_size: int) -> tuple[list[str], list[int]]:
    """Every id's token text and type; ids the tokenizer lacks (a padded embedding) are UNUSED."""
    by_id = {int(i): str(t) for t, i in vocab.items()}
    added = {int(i): token for i, token in tokenizer.added_tokens_decoder.items()}
    size = max(vocab_size, max([*by_id, *added], default=-1) + 1)
    if size > vocab_size:
        raise ExportError(f"the tokenizer has {size} tokens but the model's embedding only {vocab_size}")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(size):
        if i in added:
            tokens.append(str(added[i].content))
            types.append(CONTROL if added[i].special else USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
    return tokens, types


def _added_specials(tokenizer: Any, fmt: PromptFormat) -> tuple[bool, bool]:
    """Whether encoding a prompt adds BOS / EOS around the text, as training encoded it."""
    text = "a"
    bare = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(text, add_special_tokens=fmt.add_special_tokens)["input_ids"])
    bos, eos = tokenizer.bos_token_id, fmt.eos_token_id
    add_bos = len(full) > len(bare) and bos is not None and full[0] == bos
    add_eos = len(full) > len(bare) + int(add_bos) and full[-1] == eos
    if full != [bos] * add_bos + bare + [eos] * add_eos:
        raise ExportError("the tokenizer adds tokens other than BOS/EOS around a prompt; llama.cpp cannot "
                          "reproduce that")
    return add_bos, add_eos
