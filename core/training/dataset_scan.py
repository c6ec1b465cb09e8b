"""Low-level JSONL scanning shared by the dataset API, the line index and the scan workers.

Only the standard library and orjson are imported here (numpy inside one function), so a
spawned scan worker starts fast. Every reader of a dataset opens it through
:func:`open_dataset`: regular files only, checked with ``stat`` before opening, so a folder, a
FIFO (``open`` would block), a device (``/dev/zero`` never ends) or a link loop is refused at
once with a :class:`DatasetFileError` naming the cause. Lines are ``\\n``-separated (a trailing ``\\r`` is JSON whitespace); a UTF-8 BOM is accepted at
the start of the file; a line is blank when its decoded text is empty after ``str.strip()``.
orjson parses the common case; a line it rejects is re-read with the standard library, so
everything ``json.loads`` accepts is accepted, and errors carry a 1-based column; a UTF-16 line
or lone-CR line endings get a problem naming that cause. Duplicate keys (orjson keeps the last
silently) are warned: a block whose ``"key":`` marks outnumber its parsed keys is re-parsed
line by line with ``object_pairs_hook``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from core.events import EventCallback, Progress
from core.training.formats import (
    INPUT_OUTPUT,
    MESSAGES,
    NUMBER_AS_TEXT,
    Conversation,
    FormatProblem,
    normalize_row,
)
from core.training.tokens import count_tokens_pair

log = logging.getLogger(__name__)

__all__ = [
    "BLANK",
    "RangeResult",
    "BOM",
    "DatasetError",
    "LineProblem",
    "ProgressThrottle",
    "DatasetFileError",
    "DatasetNotFoundError",
    "check_dataset_path",
    "iter_line_blocks",
    "open_dataset",
    "parse_line",
    "scan_range",
]

BOM = b"\xef\xbb\xbf"
PROGRESS_INTERVAL_S = 0.05  # at most ~20 progress events a second
BLOCK_SIZE = 1 << 20
MAX_KEPT = 1000  # problems and warnings kept per list (all are counted)
FORMAT_LINES_KEPT = 5  # first lines kept per format rule, to name them when a file mixes rules
LONG_RECORD_CHARS = 20_000  # input + output characters above which a record is "very long"
KNOWN_KEYS = frozenset(("input", "output", "metadata"))
_SCRATCH_MAX = 16 << 20  # blocks up to this size reuse one per-thread buffer for the key test
_local = threading.local()

# Problem kinds (a line that is not a usable record) and warning kinds (usable, but suspicious).
INVALID_JSON = "invalid_json"
INVALID_UTF8 = "invalid_utf8"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
NOT_STRING = "not_string"
BAD_METADATA = "bad_metadata"
EMPTY_FILE = "empty_file"
EMPTY_STRING = "empty_string"
DUPLICATE_INPUT = "duplicate_input"
DUPLICATE_RECORD = "duplicate_record"
UNKNOWN_KEY = "unknown_key"
LONG_RECORD = "long_record"
DUPLICATE_KEY = "duplicate_key"
UTF16 = "utf16"
LONE_CR = "lone_cr"
# Whole-file problems of the path itself (raised as DatasetFileError, never in a report).
NOT_FOUND = "not_found"
NOT_A_FILE = "not_a_file"
UNREADABLE = "unreadable"

BLANK: Any = object()  # returned by parse_line for a blank line


class DatasetError(ValueError):
    """A dataset problem naming the file, the 1-based line (None for the whole file) and why."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, kind: str, reason: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.kind = kind
        self.reason = reason
        super().__init__(self.path, line, kind, reason)

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path}, line {self.line}: {self.reason}"

    @classmethod
    def from_report(cls, path: str | os.PathLike[str], report: Any) -> DatasetError:
        """The first problem of a ``ValidationReport`` (or "no records") as an exception."""
        if report.problems:
            first = report.problems[0]
            more = report.n_problems - 1
            reason = first.message + (f" (and {more} more problems)" if more > 0 else "")
            return cls(path, first.line, first.kind, reason)
        return cls(path, None, EMPTY_FILE, "the file holds no records")


class DatasetFileError(DatasetError):
    """The dataset path is not a readable regular file (a folder, FIFO, device, loop, ...)."""


class DatasetNotFoundError(DatasetFileError, FileNotFoundError):
    """No file at the dataset path; also a ``FileNotFoundError`` (``filename`` is the path)."""

    def __init__(self, path: str | os.PathLike[str], line: int | None = None, kind: str = NOT_FOUND,
                 reason: str = "file not found") -> None:
        DatasetFileError.__init__(self, path, line, kind, reason)
        self.errno = errno.ENOENT
        self.strerror = reason
        self.filename = self.path


_FILE_KINDS = (
    (stat.S_ISDIR, "is a folder, not a file; choose a .jsonl file (one JSON object per line)"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not a regular file; TinyForge reads regular .jsonl files only"),
    (stat.S_ISCHR, "is a device, not a regular file; TinyForge reads regular .jsonl files only"),
    (stat.S_ISBLK, "is a block device, not a regular file; TinyForge reads regular .jsonl files only"),
    (stat.S_ISSOCK, "is a socket, not a regular file; TinyForge reads regular .jsonl files only"),
)


def _not_regular(path: str, mode: int) -> DatasetFileError:
    for test, reason in _FILE_KINDS:
        if test(mode):
            return DatasetFileError(path, None, NOT_A_FILE, reason)
    return DatasetFileError(path, None, NOT_A_FILE, "is not a regular file; TinyForge reads regular .jsonl files only")


def _os_error(path: str, exc: OSError) -> DatasetFileError:
    """The one-line reason for an ``OSError`` from stat or open of a dataset path."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return DatasetNotFoundError(path)
    if exc.errno == errno.ELOOP:
        return DatasetFileError(path, None, NOT_A_FILE, "is a symbolic link loop (the link points back to itself)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DatasetFileError(path, None, UNREADABLE, "cannot read the file: permission denied")
    if exc.errno == errno.EISDIR:
        return _not_regular(path, stat.S_IFDIR)
    return DatasetFileError(path, None, UNREADABLE, f"cannot open the file: {exc.strerror or exc}")


def check_dataset_path(path: str | os.PathLike[str]) -> os.stat_result:
    """Stat ``path`` (following links) and accept regular files only; raise ``DatasetFileError``.

    A missing file raises :class:`DatasetNotFoundError` (a ``FileNotFoundError`` too). Never
    opens the path, so a FIFO or a device is rejected without blocking or reading it.
    """
    path_s = os.fspath(path)
    try:
        st = os.stat(path_s)
    except OSError as exc:
        raise _os_error(path_s, exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path_s, st.st_mode)
    if not os.access(path_s, os.R_OK):  # say so before any progress starts; open() checks again
        raise DatasetFileError(path_s, None, UNREADABLE, "cannot read the file: permission denied")
    return st


def open_dataset(path: str | os.PathLike[str], buffering: int = -1) -> IO[bytes]:
    """Open a dataset for binary reading: the only way TinyForge opens a dataset file.

    The path is checked with :func:`check_dataset_path` first, then opened non-blocking (a path
    swapped for a FIFO in between does not hang ``open``) and the open file checked again.
    """
    path_s = os.fspath(path)
    check_dataset_path(path_s)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path_s, flags)
    except OSError as exc:
        raise _os_error(path_s, exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path_s, mode)
        return open(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


class ProgressThrottle:
    """Emits ``Progress(stage, step, total)`` at most every ``PROGRESS_INTERVAL_S`` seconds."""

    def __init__(self, emit: EventCallback | None, stage: str, total: int) -> None:
        self.emit = emit
        self.stage = stage
        self.total = total
        self.last = 0.0
        self.last_step = -1

    def __call__(self, step: int, force: bool = False) -> None:
        if self.emit is None or step == self.last_step:
            return
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_INTERVAL_S:
            self.last = now
            self.last_step = step
            self.emit(Progress(self.stage, step, self.total, f"{step / 1e6:.1f} of {self.total / 1e6:.1f} MB"))


class LineProblem(Exception):
    """Internal: why one line is not a usable record (``kind``, ``message``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message)
        self.kind = kind
        self.message = message


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
UTF16_MESSAGE = "the file is UTF-16; save it as UTF-8"
LONE_CR_MESSAGE = ("lines end with a lone CR (old Mac line endings); save the file with LF (Unix) "
                   "or CRLF line endings")


def looks_utf16(raw: bytes) -> str:
    """Why ``raw`` (a line, or the start of a file) is UTF-16 text, or "" when it is not.

    A UTF-16 byte order mark (never valid UTF-8), or NUL bytes making up a quarter of the bytes,
    nearly all at even or all at odd offsets (the high bytes of ASCII characters).
    """
    if raw.startswith(UTF16_BOMS):
        return f"{UTF16_MESSAGE} (it starts with a UTF-16 byte order mark)"
    nuls = raw.count(0)
    if not nuls or nuls * 4 < len(raw):
        return ""
    if max(raw[0::2].count(0), raw[1::2].count(0)) * 10 >= nuls * 9:
        return f"{UTF16_MESSAGE} (NUL bytes between the characters)"
    return ""


def _lone_cr(stripped: str) -> bool:
    """True when the text before a CR inside the line is already a JSON value (CR line ends)."""
    pieces = stripped.split("\r")
    first = next((p for p in pieces if p.strip()), "")
    if len(pieces) < 2 or not first:
        return False
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        return False
    return True


def parse_slow(raw: bytes) -> Any:
    """Parse a line orjson rejected: return the value or ``BLANK``; raise ``LineProblem``.

    UTF-16 text and lone-CR line endings get a problem that names the cause.
    """
    utf16 = looks_utf16(raw)
    if utf16:
        raise LineProblem(UTF16, utf16)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineProblem(INVALID_UTF8, f"invalid UTF-8 at byte {exc.start + 1} of the line") from None
    stripped = text.strip()
    if not stripped:
        return BLANK
    lead = len(text) - len(text.lstrip())
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        if "\r" in stripped and _lone_cr(stripped):
            raise LineProblem(LONE_CR, LONE_CR_MESSAGE) from None
        raise LineProblem(INVALID_JSON, f"invalid JSON at column {lead + exc.pos + 1}: {exc.msg}") from None
    except RecursionError:
        raise LineProblem(INVALID_JSON, "invalid JSON: nested too deeply") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # Python's own advice means nothing to a user
            raise LineProblem(INVALID_JSON, "invalid JSON: a number with more than 4300 digits; "
                                            "write it as a string") from None
        raise LineProblem(INVALID_JSON, f"invalid JSON: {exc}") from None


def parse_line(raw: bytes) -> Any:
    """Parse one line (no newline, BOM removed): the JSON value or ``BLANK``; raise ``LineProblem``."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return parse_slow(raw)


def iter_line_blocks(f: IO[bytes], start: int = 0, end: int | None = None,
                     block_size: int = BLOCK_SIZE) -> Iterator[tuple[list[bytes], int]]:
    """Yield ``(lines, bytes_done)`` for the ``\\n``-separated lines of ``f[start:end]``.

    ``start`` must be 0 or just after a newline. Lines exclude the ``\\n``; a BOM at offset 0
    is removed; the last line is yielded even without a final newline. Every line of the
    range is yielded (blank ones too), so a caller counts line numbers exactly.
    """
    f.seek(start)
    pos = start
    carry: list[bytes] = []
    first = start == 0
    while end is None or pos < end:
        want = block_size if end is None else min(block_size, end - pos)
        data = f.read(want)
        if not data:
            break
        pos += len(data)
        if first:
            first = False
            if data.startswith(BOM):
                data = data[3:]
            elif len(data) < 3 and BOM.startswith(data):  # tiny reads: gather the BOM first
                more = f.read(3 - len(data))
                pos += len(more)
                data += more
                if data.startswith(BOM):
                    data = data[3:]
        if b"\n" not in data:
            carry.append(data)
            continue
        lines = data.split(b"\n")
        if carry:  # only the line cut by the previous block is joined, not the whole block
            carry.append(lines[0])
            lines[0] = b"".join(carry)
            carry = []
        tail = lines.pop()
        if tail:
            carry.append(tail)
        yield lines, pos - start
    if carry:
        yield [b"".join(carry)], pos - start


def _empty_message(inp: str, out: str) -> str:
    empty = [k for k, v in (("input", inp), ("output", out)) if not v.strip()]
    return " and ".join(f"'{k}'" for k in empty) + (" are" if len(empty) > 1 else " is") + " empty"


class _Issues:
    """Keeps the first ``MAX_KEPT`` (line, kind, message) tuples and counts all of them by kind."""

    __slots__ = ("kept", "counts", "total")

    def __init__(self) -> None:
        self.kept: list[tuple[int, str, str]] = []
        self.counts: dict[str, int] = {}
        self.total = 0

    def add(self, line: int, kind: str, message: str) -> None:
        self.count(kind)
        if len(self.kept) < MAX_KEPT:
            self.kept.append((line, kind, message))

    def count(self, kind: str) -> None:
        """Count one more of ``kind`` without keeping its line."""
        self.total += 1
        self.counts[kind] = self.counts.get(kind, 0) + 1


def _check_block(ins: list[str], outs: list[str], lines: list[int],
                 found: list[tuple[int, str, str]]) -> None:
    """Append empty-string and very-long warnings for one block of records to ``found``."""
    if not (all(ins) and all(outs)) or any(map(str.isspace, ins)) or any(map(str.isspace, outs)):
        for inp, out, line in zip(ins, outs, lines, strict=True):
            if not inp or not out or inp.isspace() or out.isspace():
                found.append((line, EMPTY_STRING, _empty_message(inp, out)))
    if max(map(len, ins)) + max(map(len, outs)) > LONG_RECORD_CHARS:
        for inp, out, line in zip(ins, outs, lines, strict=True):
            n = len(inp) + len(out)
            if n > LONG_RECORD_CHARS:
                found.append((line, LONG_RECORD, f"very long record: {n} characters"))


def scan_range(path: str, start: int = 0, end: int | None = None, *,
               progress: Callable[[int], None] | None = None,
               cancelled: Callable[[], bool] | None = None,
               hasher: Any = None, columns: dict[str, str] | None = None) -> RangeResult:
    """Scan the lines of ``path[start:end]`` without stopping at problems.

    Line numbers in the result are relative to ``start`` (1 = first line of the range).
    ``progress(bytes_done)`` is called after each block; ``cancelled()`` is polled there and
    stops the scan early (the result then has ``cancelled`` True). ``hasher`` (e.g. sha256)
    is fed every byte of the range when given. Duplicates are reported by the caller from the
    returned digests, so they work across ranges.
    """
    scan = _RangeScan(start, columns)
    with open_dataset(path) as f:
        if hasher is not None:
            f = _HashingReader(f, hasher)  # type: ignore[assignment]
        for lines, done in iter_line_blocks(f, start, end):
            # The per-line loop only sorts lines into records and problems; the per-record
            # checks, digests and token counts run once per block over whole lists (C loops).
            block = _sort_lines(scan, lines)
            _add_block(scan, lines, block)
            if progress is not None:
                progress(done)
            if cancelled is not None and cancelled():
                scan.cancelled = True
                break
    return scan.result()


@dataclass(frozen=True)
class RangeResult:
    """What :func:`scan_range` found in one range of a file (a scan worker sends it pickled):
    line numbers relative to the range, the first problems and warnings kept and every one
    counted, the 64-bit digests of each record's input and output and the record's line (as
    ``array("q")`` bytes: the caller finds duplicates across ranges), and the format rules used
    (rule -> [rows, first lines])."""

    start: int
    n_lines: int
    n_records: int
    in_tokens: int
    out_tokens: int
    problems: list[tuple[int, str, str]]
    n_problems: int
    problem_counts: dict[str, int]
    warnings: list[tuple[int, str, str]]
    n_warnings: int
    warning_counts: dict[str, int]
    in_digests: bytes
    out_digests: bytes
    rec_lines: bytes
    cancelled: bool
    formats: dict[str, list[Any]] = field(default_factory=dict)


class _RangeScan:
    """The running totals of one :func:`scan_range`."""

    def __init__(self, start: int, columns: dict[str, str] | None = None) -> None:
        self.start = start
        self.columns = columns or None
        # rule -> [rows, first lines (up to FORMAT_LINES_KEPT)]: a file must keep to one rule
        self.formats: dict[str, list[Any]] = {}
        self.problems = _Issues()
        self.warnings = _Issues()
        # 64-bit SipHash digests (Python's hash) of each input and output; the caller combines
        # them into pair digests. They only compare within one process or across workers
        # started with the same PYTHONHASHSEED.
        self.in_digests = array("q")
        self.out_digests = array("q")
        self.rec_lines = array("q")
        self.n_records = 0
        self.in_tokens = 0
        self.out_tokens = 0
        self.lineno = 0
        self.cancelled = False
        self.utf16_file = False  # line 1 of the file is UTF-16: report that once, not on every line

    def result(self) -> RangeResult:
        """The scan's result, as :func:`scan_range` returns it."""
        problems, warnings = self.problems, self.warnings
        return RangeResult(
            start=self.start,
            n_lines=self.lineno,
            n_records=self.n_records,
            in_tokens=self.in_tokens,
            out_tokens=self.out_tokens,
            problems=problems.kept,
            n_problems=problems.total,
            problem_counts=problems.counts,
            warnings=warnings.kept,
            n_warnings=warnings.total,
            warning_counts=warnings.counts,
            in_digests=self.in_digests.tobytes(),
            out_digests=self.out_digests.tobytes(),
            rec_lines=self.rec_lines.tobytes(),
            cancelled=self.cancelled,
            formats=self.formats,
        )

    def count_formats(self, block: _Block, fast: tuple[tuple[str, int, list[int]], ...] = ()) -> None:
        """Add a block's rows to the per-rule counts: ``fast`` (rule, rows, first lines) for the
        rows the fast paths took, ``block.rules`` for the others."""
        for rule, n, lines in fast:
            if n:
                self._count(rule, n, lines)
        for line, rule in block.rules.items():
            self._count(rule, 1, (line,))

    def _count(self, rule: str, n: int, lines: Any) -> None:
        entry = self.formats.setdefault(rule, [0, []])
        entry[0] += n
        entry[1].extend(ln for ln in lines if len(entry[1]) < FORMAT_LINES_KEPT)


class _Block:
    """One block's well-formed records (inputs, outputs, line numbers) and their warnings."""

    def __init__(self, first_line: int, problems_before: int) -> None:
        self.first_line = first_line
        self.problems_before = problems_before
        self.ins: list[str] = []
        self.outs: list[str] = []
        self.rlines: list[int] = []
        self.warnings: list[tuple[int, str, str]] = []
        self.extra_keys = 0  # object keys beyond input/output (the record's and its metadata's)
        self.key_counts: dict[int, int] = {}  # line -> its keys, for records with more than two
        self.rules: dict[int, str] = {}  # line -> format rule, for rows the fast test did not take


def _sort_lines(scan: _RangeScan, lines: list[bytes]) -> _Block:
    """Sort one block's lines into records and problems (the hot loop: locals, no calls per record
    for the input/output rows; the other formats go through :func:`_add_other`)."""
    block = _Block(scan.lineno + 1, scan.problems.total)
    columns = scan.columns
    io_n = chat_n = 0  # rows the two fast paths took, and their first lines
    io_lines: list[int] = []
    chat_lines: list[int] = []
    ins_append = block.ins.append
    outs_append = block.outs.append
    rlines_append = block.rlines.append
    problems = scan.problems
    lineno = scan.lineno
    extra_keys = 0
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    for raw in lines:
        lineno += 1
        try:
            rec = loads(raw)
        except decode_error:
            rec = _parse_rest(scan, raw, lineno)
            if rec is BLANK:
                continue
        if type(rec) is dict and columns is None:
            inp = rec.get("input")
            out = rec.get("output")
            if type(inp) is str and type(out) is str and (
                len(rec) == 2 or (len(rec) == 3 and type(rec.get("metadata")) is dict)
            ):
                if len(rec) == 3:
                    n_keys = 3 + len(rec["metadata"])
                    block.key_counts[lineno] = n_keys
                    extra_keys += n_keys - 2
                ins_append(inp)
                outs_append(out)
                rlines_append(lineno)
                io_n += 1
                if io_n <= FORMAT_LINES_KEPT:
                    io_lines.append(lineno)
                continue
            if len(rec) == 1:
                msgs = rec.get("messages")
                texts = _plain_messages(msgs) if type(msgs) is list else None
                if texts is not None:
                    ins_append(texts[0])
                    outs_append(texts[1])
                    rlines_append(lineno)
                    n_keys = 1 + 2 * len(msgs)
                    block.key_counts[lineno] = n_keys
                    extra_keys += n_keys - 2
                    chat_n += 1
                    if chat_n <= FORMAT_LINES_KEPT:
                        chat_lines.append(lineno)
                    continue
        _add_other(block, rec, lineno, problems, columns)
    scan.lineno = lineno
    block.extra_keys += extra_keys
    scan.count_formats(block, ((INPUT_OUTPUT, io_n, io_lines), (MESSAGES, chat_n, chat_lines)))
    return block


def _parse_rest(scan: _RangeScan, raw: bytes, lineno: int) -> Any:
    """A line orjson refused, parsed the slow way; :data:`BLANK` for a blank line and for a line
    that is a problem (added to the scan's problems; a UTF-16 file's is listed once, on line 1)."""
    try:
        return parse_slow(raw)
    except LineProblem as p:
        if p.kind == UTF16:
            if scan.utf16_file:  # counted, but listed once (on line 1)
                scan.problems.count(p.kind)
                return BLANK
            scan.utf16_file = scan.start == 0 and lineno == 1
        scan.problems.add(lineno, p.kind, p.message)
        return BLANK


def _plain_messages(msgs: list[Any]) -> tuple[str, str] | None:
    """The common ``messages`` row, checked in one pass: ``role``/``content`` objects with string
    contents, an optional system message, then user and assistant alternating and ending on the
    assistant. Returns the texts :func:`conversation_texts` gives, or None for the exact rules
    (:func:`core.training.formats.normalize_row`) to decide and explain."""
    try:
        roles = tuple([m["role"] for m in msgs])
        contents = [m["content"] for m in msgs]
    except (TypeError, KeyError):  # not objects, or other keys: the exact rules say why
        return None
    if roles != _ROLE_ORDERS[roles[:1] == ("system",)].get(len(roles)) or {*map(type, contents)} != _STR_ONLY:
        return None
    if len(contents) == 2:
        return contents[0], contents[1]
    return "\n".join(contents[:-1]), contents[-1]


_STR_ONLY = {str}


def _role_orders(system: bool) -> dict[int, tuple[str, ...]]:
    """The roles of every well-formed conversation of up to 64 messages, by its length."""
    head = ("system",) if system else ()
    return {len(head) + 2 * k: head + ("user", "assistant") * k for k in range(1, 33)}


_ROLE_ORDERS = {True: _role_orders(True), False: _role_orders(False)}


def conversation_texts(conversation: Conversation) -> tuple[str, str]:
    """What a conversation's question and answer count as for lengths and duplicates: the
    question with everything before it (system message and earlier turns), and the answer."""
    if conversation.system is None and len(conversation.turns) == 2:
        return conversation.turns[0][1], conversation.turns[1][1]
    before = [conversation.system] if conversation.system is not None else []
    before += [content for _, content in conversation.turns[:-1]]
    return "\n".join(before), conversation.answer


def _count_keys(value: Any) -> int:
    """Every object key in a parsed value, nested ones too (for the duplicate-key test)."""
    if type(value) is dict:
        return len(value) + sum(_count_keys(v) for v in value.values())
    if type(value) is list:
        return sum(_count_keys(v) for v in value)
    return 0


def _add_other(block: _Block, rec: Any, lineno: int, problems: _Issues, columns: dict[str, str] | None) -> None:
    """A row the fast input/output test did not take: read it by the format rules and add it
    to the block, or add its problem."""
    try:
        rule, conversation = normalize_row(rec, columns)
    except FormatProblem as p:
        problems.add(lineno, p.kind, p.message)
        return
    if rule == INPUT_OUTPUT and columns is None:
        extra = [k for k in rec if str(k).strip().casefold() not in KNOWN_KEYS and k != "system"]
        if extra:
            names = ", ".join(repr(k) for k in extra[:10])
            block.warnings.append((lineno, UNKNOWN_KEY, f"unknown keys kept: {names}"))
    block.warnings.extend((lineno, NUMBER_AS_TEXT, note) for note in conversation.notes)
    n_keys = _count_keys(rec)
    block.key_counts[lineno] = n_keys
    block.extra_keys += n_keys - 2
    block.rules[lineno] = rule
    question, answer = conversation_texts(conversation)
    block.ins.append(question)
    block.outs.append(answer)
    block.rlines.append(lineno)


def _add_block(scan: _RangeScan, lines: list[bytes], block: _Block) -> None:
    """Check a block's records together (C loops over lists) and add them to the scan's totals."""
    if block.ins:
        _check_block(block.ins, block.outs, block.rlines, block.warnings)
        if scan.problems.total != block.problems_before or not _key_marks_match(
            lines, 2 * len(block.ins) + block.extra_keys
        ):
            _duplicate_key_warnings(lines, block.first_line, block.rlines, block.key_counts, block.warnings)
        scan.in_digests.extend(map(hash, block.ins))
        scan.out_digests.extend(map(hash, block.outs))
        scan.rec_lines.extend(block.rlines)
        scan.n_records += len(block.ins)
        counted = count_tokens_pair(block.ins, block.outs)
        scan.in_tokens += counted[0]
        scan.out_tokens += counted[1]
    if block.warnings:
        block.warnings.sort()
        for line, kind, message in block.warnings:
            scan.warnings.add(line, kind, message)


def _key_marks(raw: bytes) -> int:
    """How many ``"key":`` (or ``"key" :``) marks a line holds: one per object key, unless a
    string holds an escaped ``\":`` or a key has unusual spacing before its colon."""
    return raw.count(b'":') + raw.count(b'" :')


def _key_marks_match(lines: list[bytes], expected: int) -> bool:
    """The fast test for duplicate keys in a block: as many key marks as parsed keys.

    orjson keeps the last of duplicate keys silently, so a line with one has more key marks
    than its parsed objects have keys. Only a block that fails this test is checked per line.
    numpy finds the colons and looks at the byte before (``bytes.count(b'":')`` is 4x slower
    here: the quote is the most common byte of a JSONL file).
    """
    import numpy as np

    data = b"\n".join(lines)
    a = np.frombuffer(data, dtype=np.uint8)
    n = a.shape[0]
    if n > _SCRATCH_MAX:
        colon = a == 58
    else:  # a reused buffer: a fresh 1 MiB array costs a page fault per 4 KiB
        buf = getattr(_local, "colon", None)
        if buf is None or buf.shape[0] < n:
            buf = np.empty(max(n, BLOCK_SIZE + (1 << 16)), dtype=bool)
            _local.colon = buf
        colon = np.equal(a, 58, out=buf[:n])
    idx = np.flatnonzero(colon)
    idx = idx[idx >= 2]  # a key mark needs at least '"' before its colon
    before = a[idx - 1]
    marks = int(np.count_nonzero(before == 34))
    spaced = idx[before == 32]
    if spaced.size:
        marks += int(np.count_nonzero(a[spaced - 2] == 34))
    return marks == expected


def _duplicate_keys(raw: bytes) -> list[str]:
    """The keys that occur more than once in one object of the line (slow: the json module)."""
    found: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key not in found:
                found.append(key)
            seen.add(key)
        return dict(pairs)

    try:
        json.loads(raw.decode("utf-8"), object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return []
    return found


def _duplicate_key_warnings(lines: list[bytes], first_line: int, rlines: list[int], key_counts: dict[int, int],
                            found: list[tuple[int, str, str]]) -> None:
    """Per record of a block that failed the fast test: parse again where the marks disagree."""
    for line in rlines:
        raw = lines[line - first_line]
        if _key_marks(raw) == key_counts.get(line, 2):
            continue
        dups = _duplicate_keys(raw)
        if dups:
            names = ", ".join(repr(k) for k in dups[:10])
            plural = "s" if len(dups) > 1 else ""
            found.append((line, DUPLICATE_KEY, f"duplicate key{plural} {names}: only the last value is kept"))


class _HashingReader:
    """A read-only file wrapper that feeds every byte read to ``hasher``."""

    def __init__(self, f: IO[bytes], hasher: Any) -> None:
        self._f = f
        self._hasher = hasher

    def seek(self, pos: int) -> int:
        return self._f.seek(pos)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._hasher.update(data)
        return data
