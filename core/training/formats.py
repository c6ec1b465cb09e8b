"""The data shapes people already have, read as one thing: a conversation.

One rule list, written once (the README shows it): every row of a file is matched against it,
keys compared after trimming and case-folding, and must fit exactly one rule.

=================  ==========================================================================
rule               a row
=================  ==========================================================================
``input/output``   ``input`` and ``output`` strings (TinyForgeAI's format; ``metadata`` kept)
``messages``       ``messages``: ``{role, content}`` objects; ``system`` optional and first,
                   then ``user`` and ``assistant`` alternating, ending on ``assistant``
``conversations``  ``conversations`` (ShareGPT): ``{from, value}`` or ``{role, content}``;
                   ``human`` is the user, ``gpt`` the assistant; any other role is an error
``prompt/completion``  ``prompt`` and ``completion`` (TRL): strings, or message lists
``instruction``    ``instruction`` and ``output`` (Alpaca), optional ``input`` (appended to
                   the instruction after a blank line) and ``system``
=================  ==========================================================================

A row that fits two rules with different turns, or a file that mixes rules, is refused with the
line numbers; preference data (``chosen``/``rejected``) and bare ``text`` rows are named as
what they are. A column mapping (``--columns question=Q,answer=A[,system=S]``) renames a file's
own keys (CSV headers, JSON keys) before the rules apply; nothing is guessed.

Only the standard library is imported: the scan workers use this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "FORMAT_LABELS",
    "INPUT_OUTPUT",
    "MESSAGES",
    "Context",
    "Conversation",
    "NO_CONTEXT",
    "Pair",
    "as_record",
    "context_of",
    "FormatProblem",
    "normalize_row",
    "parse_columns",
    "question_row",
]

INPUT_OUTPUT = "input/output"
MESSAGES = "messages"
CONVERSATIONS = "conversations"
PROMPT_COMPLETION = "prompt/completion"
INSTRUCTION = "instruction"
FORMAT_LABELS = {
    INPUT_OUTPUT: "input/output (TinyForgeAI)",
    MESSAGES: "messages (OpenAI / TRL chat)",
    CONVERSATIONS: "conversations (ShareGPT)",
    PROMPT_COMPLETION: "prompt/completion (TRL)",
    INSTRUCTION: "instruction/input/output (Alpaca)",
}
# Problem kinds (see core.training.dataset_scan for the others).
BAD_CONVERSATION = "bad_conversation"
UNKNOWN_FORMAT = "unknown_format"
UNSUPPORTED_FORMAT = "unsupported_format"
AMBIGUOUS_ROW = "ambiguous_row"
MIXED_FORMATS = "mixed_formats"
NUMBER_AS_TEXT = "number_as_text"
NOT_STRING = "not_string"
MISSING_FIELD = "missing_field"

# What each rule reads as which part of the conversation (shown beside the detected format).
ROLE_MAPPINGS = {
    INPUT_OUTPUT: "input → user, output → assistant, system (optional) → system",
    MESSAGES: "messages[].role/content → system, user, assistant",
    CONVERSATIONS: "conversations[].from/value: human → user, gpt → assistant, system → system",
    PROMPT_COMPLETION: "prompt → user, completion → assistant (or their message lists)",
    INSTRUCTION: "instruction + input → user, output → assistant, system → system",
}


def describe_columns(columns: Mapping[str, str]) -> str:
    """A column mapping in words: ``Q → user, A → assistant``."""
    parts = {"question": "user", "answer": "assistant", "system": "system"}
    return ", ".join(f"{column} → {parts[role]}" for role, column in columns.items())


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}
_CHAT_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}
COLUMN_ROLES = ("question", "answer", "system")


class FormatProblem(Exception):
    """Why a row is not a conversation: ``kind`` and a one-line ``message``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message)
        self.kind = kind
        self.message = message


class Context(NamedTuple):
    """What comes before a question in a conversation: a system message and earlier turns."""

    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()


NO_CONTEXT = Context()


class Pair(tuple):  # type: ignore[type-arg]
    """A question and its answer, ``(question, answer)`` like any pair, plus the ``context``
    they were asked in (:data:`NO_CONTEXT` for a single exchange). Rephrasings keep it."""

    context: Context

    def __new__(cls, question: str, answer: str, context: Context = NO_CONTEXT) -> Pair:
        pair = super().__new__(cls, (question, answer))
        pair.context = context
        return pair

    def __getnewargs__(self) -> tuple[str, str, Context]:  # type: ignore[override]
        return self[0], self[1], self.context


def context_of(pair: Any) -> Context:
    """The context of a pair; a plain ``(question, answer)`` tuple has none."""
    return getattr(pair, "context", NO_CONTEXT)


class Conversation(NamedTuple):
    """A row read as a conversation: an optional system message, then (role, content) turns
    alternating user/assistant and ending on the assistant's answer."""

    system: str | None
    turns: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()  # warnings about the row (a number read as text)

    @property
    def question(self) -> str:
        return self.turns[-2][1]

    @property
    def answer(self) -> str:
        return self.turns[-1][1]

    @property
    def history(self) -> tuple[tuple[str, str], ...]:
        """The turns before the last question (empty for one question and its answer)."""
        return self.turns[:-2]

    def pair(self) -> Pair:
        """The last question and answer, with what came before them."""
        return Pair(self.question, self.answer, Context(self.system, self.history))


def parse_columns(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"question=Q,answer=A[,system=S]"`` (or a mapping) as ``{role: column}``; ``ValueError``
    with one line when it names an unknown role or misses the question or the answer."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        pairs = list(spec.items())
    else:
        pairs = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            role, sep, column = part.partition("=")
            if not sep or not column.strip():
                raise ValueError(f"--columns: {part.strip()!r} is not ROLE=COLUMN (e.g. question=Q,answer=A)")
            pairs.append((role, column))
    mapping: dict[str, str] = {}
    for role, column in pairs:
        key = role.strip().casefold()
        if key not in COLUMN_ROLES:
            raise ValueError(f"--columns: unknown role {role.strip()!r}; use question, answer and optionally system")
        mapping[key] = column.strip()
    missing = [r for r in ("question", "answer") if r not in mapping]
    if missing:
        raise ValueError(f"--columns: name the {' and the '.join(missing)} column (e.g. question=Q,answer=A)")
    return mapping


def _folded(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's keys trimmed and case-folded (``" Input "`` is ``input``)."""
    return {str(k).strip().casefold(): v for k, v in row.items()}


def _apply_columns(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """The row renamed by a column mapping: ``input``/``output``/``system`` from the named keys."""
    out: dict[str, Any] = {}
    names = {"question": "input", "answer": "output", "system": "system"}
    for role, column in columns.items():
        key = column.strip().casefold()
        if key not in row:
            raise FormatProblem(UNKNOWN_FORMAT, f"no column {column!r} (mapped to {role}); "
                                                f"the row has {_key_list(row)}")
        out[names[role]] = row[key]
    return out


def _key_list(row: Mapping[str, Any]) -> str:
    keys = [repr(k) for k in list(row)[:8]]
    return ", ".join(keys) + (", ..." if len(row) > 8 else "") if keys else "no keys"


class _Notes(list[str]):
    """A row's warnings, and whether a number may stand for text (CSV cells, JSON arrays)."""

    def __init__(self, numbers_as_text: bool) -> None:
        super().__init__()
        self.numbers_as_text = numbers_as_text


def _text(value: Any, where: str, notes: list[str]) -> str:
    """A text field: a string, or (where allowed) a number taken as its text with a note."""
    if type(value) is str:
        return value
    if getattr(notes, "numbers_as_text", False) and isinstance(value, (int, float)) and not isinstance(value, bool):
        notes.append(f"{where} is a number ({value}); it is trained as the text {str(value)!r}")
        return str(value)
    raise FormatProblem(NOT_STRING, f"{where} must be a string, got {_json_type(value)}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _content(value: Any, where: str, notes: list[str]) -> str:
    """A message's content: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts."""
    if type(value) is list and value and all(type(p) is dict and p.get("type") == "text" for p in value):
        return "".join(_text(p.get("text"), f"{where} part", notes) for p in value)
    return _text(value, where, notes)


def _messages(value: Any, field: str, roles: dict[str, str], notes: list[str]) -> list[tuple[str, str]]:
    """A list of message objects as (role, content); ``role``/``content`` or ``from``/``value``."""
    if type(value) is not list:
        raise FormatProblem(BAD_CONVERSATION, f"'{field}' must be a list of messages, got {_json_type(value)}")
    out: list[tuple[str, str]] = []
    for n, item in enumerate(value, 1):
        where = f"'{field}' message {n}"
        if type(item) is not dict:
            raise FormatProblem(BAD_CONVERSATION, f"{where} must be an object, got {_json_type(item)}")
        msg = _folded(item)
        role_key, content_key = ("role", "content") if "role" in msg or "content" in msg else ("from", "value")
        if role_key not in msg or content_key not in msg:
            raise FormatProblem(BAD_CONVERSATION, f"{where} needs '{role_key}' and '{content_key}'")
        raw_role = msg[role_key]
        role = roles.get(raw_role.strip().casefold()) if type(raw_role) is str else None
        if role is None:
            known = ", ".join(sorted(roles))
            raise FormatProblem(BAD_CONVERSATION, f"{where} has role {raw_role!r}; the roles read are {known}")
        out.append((role, _content(msg[content_key], f"{where}'s {content_key}", notes)))
    return out


def _conversation(messages: list[tuple[str, str]], field: str, notes: list[str]) -> Conversation:
    """Check the turn order and split off the system message."""
    if not messages:
        raise FormatProblem(BAD_CONVERSATION, f"'{field}' is empty")
    system = None
    if messages[0][0] == "system":
        system = messages[0][1]
        messages = messages[1:]
    for n, (role, _) in enumerate(messages):
        if role == "system":
            raise FormatProblem(BAD_CONVERSATION, f"'{field}': a system message may only come first")
        want = "user" if n % 2 == 0 else "assistant"
        if role != want:
            raise FormatProblem(BAD_CONVERSATION, f"'{field}': turn {n + 1} is {role}, expected {want} "
                                                  "(user and assistant alternate, starting with user)")
    if len(messages) < 2 or messages[-1][0] != "assistant":
        raise FormatProblem(BAD_CONVERSATION, f"'{field}' must end with an assistant answer to train on")
    return Conversation(system, tuple(messages), tuple(notes))


def _optional_system(row: dict[str, Any], notes: list[str]) -> str | None:
    value = row.get("system")
    if value is None or value == "":
        return None
    return _text(value, "'system'", notes)


def _read_input_output(row: dict[str, Any], notes: list[str]) -> Conversation:
    meta = row.get("metadata")
    if meta is not None and type(meta) is not dict:
        raise FormatProblem("bad_metadata", f"'metadata' must be an object, got {_json_type(meta)}")
    question = _text(row["input"], "'input'", notes)
    answer = _text(row["output"], "'output'", notes)
    return Conversation(_optional_system(row, notes), (("user", question), ("assistant", answer)), tuple(notes))


def _read_messages(row: dict[str, Any], notes: list[str]) -> Conversation:
    return _conversation(_messages(row["messages"], "messages", _CHAT_ROLES, notes), "messages", notes)


def _read_conversations(row: dict[str, Any], notes: list[str]) -> Conversation:
    return _conversation(_messages(row["conversations"], "conversations", _SHAREGPT_ROLES, notes),
                         "conversations", notes)


def _read_prompt_completion(row: dict[str, Any], notes: list[str]) -> Conversation:
    prompt, completion = row["prompt"], row["completion"]
    if type(prompt) is list or type(completion) is list:
        turns = (_messages(prompt, "prompt", _CHAT_ROLES, notes) + _messages(completion, "completion", _CHAT_ROLES,
                                                                              notes))
        return _conversation(turns, "prompt/completion", notes)
    turns = [("user", _text(prompt, "'prompt'", notes)), ("assistant", _text(completion, "'completion'", notes))]
    system = _optional_system(row, notes)
    return Conversation(system, tuple(turns), tuple(notes))


def _read_instruction(row: dict[str, Any], notes: list[str]) -> Conversation:
    instruction = _text(row["instruction"], "'instruction'", notes)
    extra = row.get("input")
    extra = "" if extra is None else _text(extra, "'input'", notes)
    question = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    answer = _text(row["output"], "'output'", notes)
    return Conversation(_optional_system(row, notes), (("user", question), ("assistant", answer)), tuple(notes))


# (rule, keys that select it, reader); a row is read by every rule whose keys it has.
_RULES = (
    (INPUT_OUTPUT, ("input", "output"), _read_input_output),
    (MESSAGES, ("messages",), _read_messages),
    (CONVERSATIONS, ("conversations",), _read_conversations),
    (PROMPT_COMPLETION, ("prompt", "completion"), _read_prompt_completion),
    (INSTRUCTION, ("instruction", "output"), _read_instruction),
)


def normalize_row(value: Any, columns: dict[str, str] | None = None, *,
                  numbers_as_text: bool = False) -> tuple[str, Conversation]:
    """The rule a parsed row fits and the row as a :class:`Conversation`; ``FormatProblem`` when
    it fits none, fits two with different turns, or is malformed for its rule. A number in a
    text field is a problem, or with ``numbers_as_text`` (tables) its text plus a note."""
    if type(value) is not dict:
        raise FormatProblem("not_object", f"expected a JSON object, got {_json_type(value)}")
    row = _folded(value)
    if columns:
        row = _apply_columns(row, columns)
    fits = [(name, reader) for name, keys, reader in _RULES if all(k in row for k in keys)]
    if INSTRUCTION in (name for name, _ in fits):  # Alpaca's optional 'input' is not the input/output rule
        fits = [(name, reader) for name, reader in fits if name != INPUT_OUTPUT]
    if not fits:
        raise _no_rule(row)
    name, reader = fits[0]
    conversation = reader(row, _Notes(numbers_as_text))
    for other, other_reader in fits[1:]:
        try:
            again = other_reader(row, _Notes(numbers_as_text))
        except FormatProblem:
            again = None
        if again is None or again[:2] != conversation[:2]:
            raise FormatProblem(AMBIGUOUS_ROW, f"the row fits both the {name} and the {other} rule with "
                                               "different turns; keep one of them")
    return name, conversation


def question_row(value: dict[str, Any]) -> dict[str, Any]:
    """A row to answer (``predict --data``): a conversation in any format that may end on the
    question instead of its answer. Returns ``input`` (the question), ``context`` and, when the
    row holds one, ``output`` (the reference answer); ``FormatProblem`` otherwise."""
    row = _folded(value)
    for field in ("messages", "conversations"):
        turns = row.get(field)
        if type(turns) is list and turns and type(turns[-1]) is dict:
            last = _folded(turns[-1])
            role = last.get("role", last.get("from"))
            if type(role) is str and role.strip().casefold() in ("user", "human"):
                roles = _CHAT_ROLES if field == "messages" else _SHAREGPT_ROLES
                notes = _Notes(False)
                asked = _messages(turns, field, roles, notes)
                conversation = _conversation(asked + [("assistant", "")], field, notes)
                return {"input": conversation.question, "context": Context(conversation.system, conversation.history)}
    _, conversation = normalize_row(value)
    return {"input": conversation.question, "output": conversation.answer,
            "context": Context(conversation.system, conversation.history)}


def as_record(rule: str, conversation: Conversation, row: dict[str, Any]) -> dict[str, Any]:
    """A row of any format as a record: an input/output row as it is (extra keys kept), else
    ``input``/``output`` (the last question and answer) with ``system`` and ``history``."""
    if rule == INPUT_OUTPUT and "input" in row and "output" in row and "system" not in row:
        return row
    record: dict[str, Any] = {"input": conversation.question, "output": conversation.answer}
    if conversation.system is not None:
        record["system"] = conversation.system
    if conversation.history:
        record["history"] = [{"role": role, "content": content} for role, content in conversation.history]
    return record


def _no_rule(row: dict[str, Any]) -> FormatProblem:
    if "chosen" in row and "rejected" in row:
        return FormatProblem(UNSUPPORTED_FORMAT, "preference data (chosen/rejected): TinyForge trains "
                                                 "question/answer pairs; give each row messages or input/output")
    if "text" in row and len(row) <= 2:
        return FormatProblem(UNSUPPORTED_FORMAT, "missing keys: 'input' and 'output' (a bare 'text' row is plain "
                                                 "language-model text; TinyForge trains question/answer pairs: "
                                                 "give each row messages or input/output)")
    partial = next((keys for keys in (("instruction", "output"), ("prompt", "completion"))
                    if keys[0] in row or keys[1] in row and keys[1] != "output"), None)
    if partial is None and (not row or "input" in row or "output" in row):
        partial = ("input", "output")
    if partial is not None:
        missing = [k for k in partial if k not in row]
        return FormatProblem(MISSING_FIELD, "missing keys: " + " and ".join(f"'{k}'" for k in missing))
    return FormatProblem(UNKNOWN_FORMAT, f"no rule fits the keys {_key_list(row)}: use input/output, messages, "
                                         "conversations, prompt/completion or instruction/output, or map your "
                                         "columns with --columns question=Q,answer=A")
