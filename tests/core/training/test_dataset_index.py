"""LineIndex and read_head against a naive reference: BOM, CRLF, blank lines, block boundaries."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from core.events import Cancelled, CancelToken, Event, Progress
from core.training import line_index as li
from core.training.dataset import DatasetError, LineIndex, read_head


def naive_rows(data: bytes) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line, by the documented rules."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    rows = []
    for i, raw in enumerate(parts, start=1):
        try:
            blank = not raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            blank = False
        if not blank:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            rows.append((i, raw.decode("utf-8", "replace")))
    return rows


def make_bytes(seed: int, n: int = 200) -> bytes:
    rng = random.Random(seed)
    pieces = [
        json.dumps({"input": f"q{rng.random()}", "output": "ä ü 東京 😀"}, ensure_ascii=False).encode(),
        json.dumps({"input": "x", "output": "y", "metadata": {"k": 1}}).encode(),
        b"", b"   ", b"\t", b"\r", b"\xc2\xa0", b"\xe3\x80\x80 ", b"\x1c", b" {\"input\": \"lead\", \"output\": \"sp\"}",
        b"\xff\xfe bad utf8", b"{broken", b"\xe2\x80\x94 dash", b"\xc2\xa0x",
    ]
    out = [rng.choice(pieces) for _ in range(n)]
    sep = rng.choice([b"\n", b"\r\n"])
    data = sep.join(out)
    if rng.random() < 0.5:
        data += sep
    if rng.random() < 0.3:
        data = b"\xef\xbb\xbf" + data
    return data


def check_index(path: Path, data: bytes) -> LineIndex:
    expected = naive_rows(data)
    index = LineIndex.build(path)
    assert len(index) == len(expected)
    assert [index.line_number(r) for r in range(len(index))] == [line for line, _ in expected]
    assert [index.read_raw(r) for r in range(len(index))] == [text for _, text in expected]
    assert index.read_rows(0, len(index)) == [text for _, text in expected]
    return index


@pytest.mark.parametrize("seed", range(8))
def test_index_matches_naive(tmp_path: Path, seed: int) -> None:
    data = make_bytes(seed)
    path = tmp_path / "f.jsonl"
    path.write_bytes(data)
    check_index(path, data)
    assert read_head(path, 10) == naive_rows(data)[:10]
    assert read_head(path, 10_000) == naive_rows(data)


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 64])
def test_index_block_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(li, "_INDEX_BLOCK", block)
    monkeypatch.setattr(li, "_READ_PIECE", max(2, block))
    for seed in range(3):
        data = make_bytes(100 + seed, n=40)
        path = tmp_path / f"b{seed}.jsonl"
        path.write_bytes(data)
        check_index(path, data)
        assert read_head(path, 1000) == naive_rows(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n", b"\r\n\r\n", b"x", b"\xef\xbb\xbfx", b"a\nb", b"\n\nz\n",
     b"  \n\xc2\xa0\n\xe3\x80\x80\n\xef\xbb\xbf\n"],
)
def test_index_edge_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(data)
    check_index(path, data)
    assert read_head(path, 5) == naive_rows(data)[:5]


def test_read_record_and_errors(tmp_path: Path) -> None:
    lines = ['{"input": "a", "output": "b", "extra": 1}', "", "{bad", '{"input": "c"}', '{"input": "d", "output": "e"}']
    path = tmp_path / "r.jsonl"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    index = LineIndex.build(path)
    assert len(index) == 4
    assert index.read_record(0) == {"input": "a", "output": "b", "extra": 1}
    with pytest.raises(DatasetError) as info:
        index.read_record(1)
    assert (info.value.line, info.value.kind) == (3, "invalid_json")
    with pytest.raises(DatasetError) as info:
        index.read_record(2)
    assert (info.value.line, info.value.kind) == (4, "missing_field")
    assert index.read_record(-1) == {"input": "d", "output": "e"}
    assert index.line_number(-1) == 5
    with pytest.raises(IndexError):
        index.read_raw(4)
    assert index.read_raw(0, max_bytes=5) == '{"inp'
    assert index.offset(1) == len(lines[0]) + 2 + 2


def test_index_progress_and_cancel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(li, "_INDEX_BLOCK", 4096)
    row = json.dumps({"input": "q", "output": "a"}).encode() + b"\n"
    path = tmp_path / "p.jsonl"
    path.write_bytes(row * 5000)
    events: list[Event] = []
    index = LineIndex.build(path, on_event=events.append)
    assert len(index) == 5000 and index.nbytes == 5000 * 8
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[0].stage == "index" and progress[-1].step == path.stat().st_size
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        LineIndex.build(path, cancel=token)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LineIndex.build(tmp_path / "none.jsonl")
    with pytest.raises(FileNotFoundError):
        read_head(tmp_path / "none.jsonl", 3)


def test_read_head_reads_only_the_beginning(tmp_path: Path) -> None:
    """A 4 GiB sparse tail (never read) does not slow the head down."""
    path = tmp_path / "huge.jsonl"
    head = b"".join(json.dumps({"input": f"q{i}", "output": "a"}).encode() + b"\r\n" for i in range(100))
    with open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + head)
        f.truncate(4 << 30)
    t0 = time.perf_counter()
    rows = read_head(path, 50)
    elapsed = time.perf_counter() - t0
    assert len(rows) == 50 and rows[0][0] == 1 and rows[-1][0] == 50
    assert rows[0][1] == '{"input": "q0", "output": "a"}'
    assert elapsed < 0.1


def test_read_head_truncates_at_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_bytes(b'{"input": "' + b"x" * 100_000 + b'", "output": "y"}\n{"input": "b", "output": "c"}\n')
    rows = read_head(path, 2, max_bytes=1000)
    assert len(rows) == 1 and rows[0][0] == 1 and len(rows[0][1]) == 1000
    assert [line for line, _ in read_head(path, 2)] == [1, 2]
