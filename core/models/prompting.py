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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "EncodedExample",
    "PromptFormat",
    "build_prompt_format",
    "encode_example",
    "encode_conversation",
    "encode_conversation_prompt",
    "conversation_segments",
    "ChatTurns",
    "Segment",
    "encode_prompt",
    "encode_question",
    "encode_pair",
    "encode_response",
    "load_prompt_format",
]

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
class ChatTurns:
    """The template's texts between a conversation's messages.

    Rendered: ``system_prefix + system + system_to_user`` (or ``prompt_prefix`` when there is no
    system message), then each question followed by ``user_to_assistant`` (the prompt suffix)
    and each answer followed by ``assistant_to_user``.
    """

    system_prefix: str
    system_to_user: str
    user_to_assistant: str
    assistant_to_user: str


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
    # How a conversation is rendered (see ChatTurns); None in files written before conversations.
    turns: dict[str, str] | None = None
    eos_text: str = ""  # the end-of-sequence token as text, where the template writes it

    def render(self, text: str) -> str:
        """The prompt text for ``text`` (before tokenisation)."""
        return f"{self.prompt_prefix}{text}{self.prompt_suffix}"

    def chat_turns(self) -> ChatTurns:
        """The texts around a conversation's messages (a plain frame for older prompt files)."""
        if self.turns:
            return ChatTurns(**self.turns)
        return ChatTurns(system_prefix="", system_to_user="\n" + self.prompt_prefix,
                         user_to_assistant=self.prompt_suffix, assistant_to_user="\n" + self.prompt_prefix)

    def render_conversation(self, system: str | None, turns: Sequence[tuple[str, str]]) -> str:
        """The prompt text for a conversation ending on a user message: an optional system
        message, then (role, content) turns. One question without a system message renders as
        :meth:`render` does."""
        return "".join(piece.text for piece in conversation_segments(self, system, turns))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptFormat:
        version = int(data.get("format_version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            from core.run_layout import PROMPT_FILE

            raise ValueError(f"{PROMPT_FILE} format_version {version} is newer than this TinyForge")
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["stop_token_ids"] = [int(i) for i in values.get("stop_token_ids") or [data["eos_token_id"]]]
        return cls(**values)

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/tinyforge_prompt.json`` atomically."""
        from core.jsonio import write_json_atomic
        from core.run_layout import PROMPT_FILE

        return write_json_atomic(Path(folder) / PROMPT_FILE, self.to_dict())


def load_prompt_format(folder: str | Path) -> PromptFormat:
    """Read ``folder/tinyforge_prompt.json`` (no torch needed)."""
    from core.jsonio import read_json
    from core.run_layout import PROMPT_FILE

    return PromptFormat.from_dict(read_json(Path(folder) / PROMPT_FILE))


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
    turns = _chat_turns(tokenizer, prefix, suffix) if template == "chat" else None
    if turns is None:  # a plain frame: earlier turns on their own lines, a system line first
        turns = ChatTurns(system_prefix="", system_to_user="\n" + prefix, user_to_assistant=suffix,
                          assistant_to_user="\n" + prefix)
        if architecture == "seq2seq":  # the encoder reads the messages one per line
            turns = ChatTurns(system_prefix="", system_to_user="\n", user_to_assistant="", assistant_to_user="\n")
    eos_text = tokenizer.convert_ids_to_tokens(int(eos))
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
        turns=asdict(turns),
        eos_text=eos_text if isinstance(eos_text, str) else "",
    )


def _chat_turns(tokenizer: Any, prefix: str, suffix: str) -> ChatTurns | None:
    """Read the texts between messages off the chat template, rendered around placeholders.

    A template that refuses a system message gets it as the first question's opening paragraph.
    None when the template renders a conversation in a way these four texts cannot describe.
    """
    marks = [f"\u2063TF{n}\u2063" for n in range(4)]  # system, question, answer, question
    roles = ("system", "user", "assistant", "user")

    def render(messages: list[dict[str, str]]) -> list[str] | None:
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:
            return None
        pieces: list[str] = []
        for mark in (m["content"] for m in messages):
            head, sep, text = text.partition(mark)
            if not sep:
                return None
            pieces.append(head)
        return pieces + [text]

    chat = [{"role": r, "content": m} for r, m in zip(roles, marks, strict=True)]
    plain = render(chat[1:])  # no system message: prompt_prefix, then the turns
    if plain is None or plain[0] != prefix or plain[1] != suffix or plain[3] != suffix:
        return None
    full = render(chat)
    if full is not None and full[2] == suffix and full[3] == plain[2] and full[4] == suffix:
        return ChatTurns(full[0], full[1], suffix, plain[2])
    return ChatTurns(prefix, "\n\n", suffix, plain[2])  # no system role: it opens the first question


class Segment(NamedTuple):
    """A piece of a conversation's training text: ``eos`` pieces stand for the end-of-sequence
    token (``text`` is its spelling), ``trained`` ones carry the loss."""

    text: str
    trained: bool
    eos: bool = False


def conversation_segments(fmt: PromptFormat, system: str | None, turns: Sequence[tuple[str, str]],
                          loss_on: str = "all") -> list[Segment]:
    """A conversation's text as :class:`Segment` pieces, in order.

    Trained pieces are the assistant answers (every one, or only the last with ``loss_on``
    "last"). The last answer ends with the end-of-sequence token, as in :func:`encode_example`;
    an earlier one where the template writes it (a chat template's end-of-turn). Turns ending
    on a user message give the generation prompt, with nothing trained.
    """
    t = fmt.chat_turns()
    text = fmt.prompt_prefix if system is None else f"{t.system_prefix}{system}{t.system_to_user}"
    pieces: list[Segment] = []
    answers = [n for n, (role, _) in enumerate(turns) if role == "assistant"]
    for n, (role, content) in enumerate(turns):
        if role != "assistant":
            # A seq2seq encoder has no answer header: an earlier question ends its line.
            after = "\n" if fmt.architecture == "seq2seq" and n < len(turns) - 1 else t.user_to_assistant
            text += content + after
            continue
        pieces.append(Segment(text, False))
        trained = loss_on != "last" or n == answers[-1]
        pieces.append(Segment(content, trained))
        text = t.assistant_to_user
        if n == len(turns) - 1:
            pieces.append(Segment(fmt.eos_text, trained, eos=True))
            text = ""
        elif fmt.eos_text and text.startswith(fmt.eos_text):
            pieces.append(Segment(fmt.eos_text, trained, eos=True))
            text = text[len(fmt.eos_text):]
    if text:
        pieces.append(Segment(text, False))
    return pieces


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


def encode_conversation_prompt(tokenizer: Any, fmt: PromptFormat, system: str | None,
                               turns: Sequence[tuple[str, str]]) -> list[int]:
    """Token ids of the prompt for a conversation ending on a user message."""
    text = fmt.render_conversation(system, turns)
    return list(tokenizer(text, add_special_tokens=fmt.add_special_tokens)["input_ids"])


def encode_question(tokenizer: Any, fmt: PromptFormat, question: str, context: Any = None) -> list[int]:
    """Token ids of the prompt for ``question`` asked after ``context`` (a
    :class:`core.training.formats.Context`; None or empty: a single question)."""
    if context is None or (context.system is None and not context.history):
        return encode_prompt(tokenizer, fmt, question)
    return encode_conversation_prompt(tokenizer, fmt, context.system, (*context.history, ("user", question)))


def encode_pair(tokenizer: Any, fmt: PromptFormat, question: str, answer: str, max_length: int,
                context: Any = None, loss_on: str = "all") -> EncodedExample:
    """One training example for ``question``/``answer`` asked after ``context``: a single
    exchange exactly as :func:`encode_example` encodes it, else :func:`encode_conversation`."""
    if context is None or (context.system is None and not context.history):
        return encode_example(tokenizer, fmt, question, answer, max_length)
    turns = (*context.history, ("user", question), ("assistant", answer))
    return encode_conversation(tokenizer, fmt, context.system, turns, max_length, loss_on)


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


def encode_conversation(tokenizer: Any, fmt: PromptFormat, system: str | None, turns: Sequence[tuple[str, str]],
                        max_length: int, loss_on: str = "all") -> EncodedExample:
    """Encode a conversation ending on an assistant answer, like :func:`encode_example`.

    Causal: the segments of :func:`conversation_segments` tokenized one by one (the template's
    special tokens sit between them, so this is how the whole text tokenizes); labels on the
    trained answers. Too long: the last answer keeps at least half of ``max_length``, the start
    of the conversation goes first. Seq2seq: the encoder reads the conversation up to the last
    question, the decoder produces the last answer. A piece longer than ``max_length *
    CHARS_PER_TOKEN`` characters is cut before tokenizing.
    """
    if fmt.architecture == "seq2seq":
        prompt = fmt.render_conversation(system, turns[:-1])
        # The conversation is rendered already: encode it as a bare prompt.
        return encode_example(tokenizer, replace(fmt, prompt_prefix="", prompt_suffix=""), prompt, turns[-1][1],
                              max_length)
    limit = max_length * CHARS_PER_TOKEN
    ids: list[int] = []
    labels: list[int] = []
    final_start = 0
    pieces = conversation_segments(fmt, system, turns, loss_on)
    for n, piece in enumerate(pieces):
        if piece.eos:
            piece_ids = [fmt.eos_token_id]
        else:
            text = piece.text if len(piece.text) <= limit else (
                piece.text[:limit] if piece.trained else piece.text[-limit:])
            piece_ids = list(tokenizer(text, add_special_tokens=fmt.add_special_tokens and n == 0)["input_ids"])
        if piece.trained and not piece.eos and n == len(pieces) - 2:
            final_start = len(ids)
        ids += piece_ids
        labels += piece_ids if piece.trained else [-100] * len(piece_ids)
    n_tokens = len(ids)
    truncated = n_tokens > max_length
    if truncated:
        answer = n_tokens - final_start
        keep_answer = min(answer, max(max_length // 2, max_length - final_start))
        keep_prompt = max_length - keep_answer
        cut = slice(final_start - keep_prompt, final_start + keep_answer) if keep_prompt > 0 else slice(
            final_start, final_start + keep_answer)
        ids, labels = ids[cut], labels[cut]
    return EncodedExample(ids, labels, truncated, n_tokens)
