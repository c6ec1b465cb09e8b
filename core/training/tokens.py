"""Fast whitespace token counting: ``count_tokens(strings) == sum(len(s.split()) for s in strings)``.

``str.split()`` allocates one object per token, which costs as much as parsing the JSON.
Here a batch of strings is joined, encoded to UTF-8 once and the word starts are counted with
numpy. The whitespace set is exactly ``str.isspace()``: the ten ASCII whitespace bytes plus
the multi-byte Unicode spaces (NBSP, U+2000..U+200A, ideographic space, ...), which are found
through their UTF-8 lead bytes and marked as whitespace before counting.
"""

from __future__ import annotations

import logging
import threading
from itertools import compress
from operator import not_
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["UNICODE_SPACE_SEQUENCES", "count_tokens", "count_tokens_pair"]

# Below this many strings the plain loop is faster than the numpy set-up (and numpy stays unloaded).
_NUMPY_MIN_STRINGS = 48
# Strings joined per numpy pass (bounds the memory of one pass).
_SUB_BATCH = 4096
# numpy works in per-thread scratch buffers: fresh large temporaries are new mmap pages on
# every call, and their page faults would cost more than the counting itself.
_SCRATCH_MAX = 16 << 20
_local = threading.local()

# UTF-8 encodings of every non-ASCII character for which str.isspace() is true (Python 3.11+).
UNICODE_SPACE_SEQUENCES: tuple[bytes, ...] = tuple(
    chr(c).encode("utf-8")
    for c in (0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
)


def _split_count(strings: list[str]) -> int:
    total = 0
    for s in strings:
        total += len(s.split())
    return total


def count_tokens(strings: list[str]) -> int:
    """Return ``sum(len(s.split()) for s in strings)``, computed without splitting."""
    if len(strings) < _NUMPY_MIN_STRINGS:
        return _split_count(strings)
    # Joining ASCII and non-ASCII strings together widens the result and makes encoding slow,
    # so the two kinds are counted separately.
    flags = list(map(str.isascii, strings))
    ascii_strings = list(compress(strings, flags))
    total = 0
    step = _SUB_BATCH
    for i in range(0, len(ascii_strings), step):
        data = (" " + " ".join(ascii_strings[i : i + step])).encode("ascii")
        total += _count_encoded(data, True)
    if len(ascii_strings) < len(strings):
        other = list(compress(strings, map(not_, flags)))
        for i in range(0, len(other), step):
            data = (" " + " ".join(other[i : i + step])).encode("utf-8", "surrogatepass")
            total += _count_encoded(data, False)
    return total


def _scratch(np: Any, n: int) -> tuple[Any, Any, Any]:
    """Three reusable length-``n`` buffers (bool, bool, uint8) for this thread."""
    if n > _SCRATCH_MAX:
        return np.empty(n, dtype=bool), np.empty(n, dtype=bool), np.empty(n, dtype=np.uint8)
    bufs = getattr(_local, "bufs", None)
    if bufs is None or bufs[0].shape[0] < n:
        size = max(n, 1 << 16)
        bufs = (np.empty(size, dtype=bool), np.empty(size, dtype=bool), np.empty(size, dtype=np.uint8))
        _local.bufs = bufs
    return bufs[0][:n], bufs[1][:n], bufs[2][:n]


def _count_encoded(data: bytes, ascii_only: bool, split_at: int | None = None) -> Any:
    """Count word starts in UTF-8 ``data`` that begins with a space.

    With ``split_at`` (the offset of a space), returns the counts before and after it.
    """
    import numpy as np

    a = np.frombuffer(data, dtype=np.uint8)
    n = a.shape[0]
    ws, tmp, u8 = _scratch(np, n)
    np.less_equal(a, 0x20, out=ws)
    # Bytes 0x00-0x08 and 0x0E-0x1B are not whitespace but rare: build the exact mask only when
    # one is present ((a - 14) wraps around in uint8, so "< 14" means 14 <= a <= 27).
    if a.min() < 0x09 or np.less(np.subtract(a, 0x0E, out=u8), 0x0E, out=tmp).any():
        ws &= ~((a < 0x09) | ((a - 0x0E) < 0x0E))
    if not ascii_only:
        _mark_unicode_spaces(np, a, ws, tmp, u8)
    # A word starts where a whitespace byte is followed by a non-whitespace one.
    starts = np.greater(ws[:-1], ws[1:], out=tmp[: n - 1])
    if split_at is None:
        return int(np.count_nonzero(starts))
    first = int(np.count_nonzero(starts[:split_at]))
    return first, int(np.count_nonzero(starts[split_at:]))


def count_tokens_pair(first: list[str], second: list[str]) -> tuple[int, int]:
    """``(count_tokens(first), count_tokens(second))`` in one pass (e.g. inputs and outputs)."""
    if len(first) < _NUMPY_MIN_STRINGS or len(first) > _SUB_BATCH or len(second) > _SUB_BATCH:
        return count_tokens(first), count_tokens(second)
    flags1 = list(map(str.isascii, first))
    flags2 = list(map(str.isascii, second))
    totals = [0, 0]
    for ascii_only, pick in ((True, compress), (False, _compress_not)):
        part1 = " ".join(pick(first, flags1)).encode("utf-8", "surrogatepass")
        part2 = " ".join(pick(second, flags2)).encode("utf-8", "surrogatepass")
        if not part1 and not part2:
            continue
        data = b" ".join((b"", part1, part2))  # " " + part1 + " " + part2
        c1, c2 = _count_encoded(data, ascii_only, 1 + len(part1))
        totals[0] += c1
        totals[1] += c2
    return totals[0], totals[1]


def _compress_not(strings: list[str], flags: list[bool]) -> Any:
    return compress(strings, map(not_, flags))


def _mark_unicode_spaces(np: Any, a: Any, ws: Any, tmp: Any, u8: Any) -> None:
    """Set ``ws`` True on every byte of a multi-byte Unicode space (in place)."""
    n = a.shape[0]
    # 2-byte: C2 85, C2 A0
    idx = np.flatnonzero(np.equal(a[: n - 1], 0xC2, out=tmp[: n - 1]))
    if idx.size:
        second = a[idx + 1]
        hit = idx[(second == 0x85) | (second == 0xA0)]
        ws[hit] = True
        ws[hit + 1] = True
    # 3-byte, lead E1..E3: E1 9A 80; E2 80 80..8A, E2 80 A8/A9/AF, E2 81 9F; E3 80 80
    lead = np.bitwise_and(a[: n - 2], 0xFC, out=u8[: n - 2])
    idx = np.flatnonzero(np.equal(lead, 0xE0, out=tmp[: n - 2]))
    if not idx.size:
        return
    b0 = a[idx]
    b1 = a[idx + 1]
    b2 = a[idx + 2]
    m = (
        ((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80))
        | ((b0 == 0xE2) & (b1 == 0x80) & ((b2 <= 0x8A) | (b2 == 0xA8) | (b2 == 0xA9) | (b2 == 0xAF)))
        | ((b0 == 0xE2) & (b1 == 0x81) & (b2 == 0x9F))
        | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80))
    )
    hit = idx[m]
    if hit.size:
        ws[hit] = True
        ws[hit + 1] = True
        ws[hit + 2] = True
