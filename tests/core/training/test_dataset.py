"""Dataset engine: the loaders, errors with line numbers, whole-file validation, progress, cancel."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.events import Cancelled, CancelToken, Event, Progress
from core.training import dataset as ds
from core.training.dataset import (
    DatasetError,
    Record,
    ValidationReport,
    load_jsonl,
    stream_jsonl,
    summarize_dataset,
    validate_file,
)
from core.training.dataset_scan import LONG_RECORD_CHARS, MAX_KEPT, ProgressThrottle, scan_range
from core.training.tokens import UNICODE_SPACE_SEQUENCES, count_tokens, count_tokens_pair

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "examples" / "sample_qna.jsonl"


def write(tmp_path: Path, content: str | bytes, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def rec(inp: str, out: str, **extra: Any) -> str:
    return json.dumps({"input": inp, "output": out, **extra}, ensure_ascii=False)


def reference_summary(path: Path) -> dict[str, Any]:
    """A plain line-by-line summary (how TinyForgeAI computed it), for comparing figures."""
    n = ti = to = 0
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            n += 1
            ti += len(r["input"].split())
            to += len(r["output"].split())
    return {"n_records": n, "avg_input_len": ti / n if n else 0.0, "avg_output_len": to / n if n else 0.0}


def generated_file(tmp_path: Path, n: int = 3000, seed: int = 0, name: str = "gen.jsonl") -> Path:
    """Records with ASCII, non-ASCII, Unicode spaces, escaped newlines, metadata, blank lines."""
    rng = random.Random(seed)
    words = ["order", "refund", "café", "naïve", "東京", "заказ", "😀", "a\u00a0b", "x\u3000y", "tab\there",
             "nl\nnl", "\x1c", "ctl\x01x", "", "  ", "ship"]
    lines = []
    for i in range(n):
        r: dict[str, Any] = {
            "input": f"q{i} " + " ".join(rng.choices(words, k=rng.randint(0, 12))),
            "output": " ".join(rng.choices(words, k=rng.randint(0, 20))),
        }
        if rng.random() < 0.3:
            r["metadata"] = {"category": rng.choice(["billing", "shipping"])}
        lines.append(json.dumps(r, ensure_ascii=rng.random() < 0.5))
        if rng.random() < 0.05:
            lines.append(rng.choice(["", "   ", "\t", "\r"]))
    return write(tmp_path, "\n".join(lines) + "\n", name)


# ----------------------------------------------------------------------------- loaders (TinyForgeAI's API)


def test_seed_api_on_sample() -> None:
    records = load_jsonl(SAMPLE)
    assert len(records) == 3
    assert records[0]["input"] == "How do I reset my password?"
    streamed = stream_jsonl(SAMPLE)
    assert iter(streamed) is streamed  # a generator
    assert list(streamed) == records
    summary = summarize_dataset(records)
    assert summary == reference_summary(SAMPLE)
    assert set(summary) == {"n_records", "avg_input_len", "avg_output_len"}


def test_summarize_empty_and_generator() -> None:
    assert summarize_dataset([]) == {"n_records": 0, "avg_input_len": 0.0, "avg_output_len": 0.0}
    recs = ({"input": "a b c", "output": "d"} for _ in range(10))
    assert summarize_dataset(recs) == {"n_records": 10, "avg_input_len": 3.0, "avg_output_len": 1.0}


def test_summarize_matches_reference_on_generated(tmp_path: Path) -> None:
    path = generated_file(tmp_path, n=5000)
    ref = reference_summary(path)
    ours = summarize_dataset(stream_jsonl(path))
    assert ours["n_records"] == ref["n_records"]
    assert ours["avg_input_len"] == pytest.approx(ref["avg_input_len"], abs=1e-9)
    assert ours["avg_output_len"] == pytest.approx(ref["avg_output_len"], abs=1e-9)
    report = validate_file(path, workers=1)
    assert report.n_records == ref["n_records"]
    assert report.avg_input_len == pytest.approx(ref["avg_input_len"], abs=1e-9)
    assert report.avg_output_len == pytest.approx(ref["avg_output_len"], abs=1e-9)


def test_count_tokens_equals_str_split_for_every_space() -> None:
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    non_ascii = {s.encode("utf-8") for s in spaces if ord(s) > 127}
    assert non_ascii == set(UNICODE_SPACE_SEQUENCES)
    rng = random.Random(1)
    alphabet = spaces + [chr(c) for c in range(0, 0x30)] + ["a", "é", "東", "😀", "\u2000x", "\ud800"]
    for _ in range(200):
        strings = ["".join(rng.choices(alphabet, k=rng.randint(0, 25))) for _ in range(rng.randint(0, 150))]
        assert count_tokens(strings) == sum(len(s.split()) for s in strings)
        other = ["".join(rng.choices(alphabet, k=rng.randint(0, 25))) for _ in strings]
        assert count_tokens_pair(strings, other) == (
            sum(len(s.split()) for s in strings),
            sum(len(s.split()) for s in other),
        )


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError):
        load_jsonl(missing)
    with pytest.raises(FileNotFoundError):
        list(stream_jsonl(missing))
    with pytest.raises(FileNotFoundError):
        validate_file(missing)


# ----------------------------------------------------------------------------- errors

ERROR_CASES = [
    # (file content, line, kind, text in the reason)
    (rec("a", "b") + '\n{"input": "a" "output": "b"}\n', 2, "invalid_json", "column 15"),
    (rec("a", "b") + '\n\n   {"input": }\n', 3, "invalid_json", "column 14"),
    ('{"input": "a", "output": "b"\n', 1, "invalid_json", "column"),
    ("[1, 2]\n", 1, "not_object", "array"),
    ('"just a string"\n', 1, "not_object", "string"),
    (rec("a", "b") + '\n{"output": "b"}\n', 2, "missing_field", "'input'"),
    ('{"input": "a"}\n', 1, "missing_field", "'output'"),
    ("{}\n", 1, "missing_field", "'input' and 'output'"),
    ('{"input": 5, "output": "b"}\n', 1, "not_string", "'input' must be a string"),
    ('{"input": "a", "output": null}\n', 1, "not_string", "'output'"),
    ('{"input": "a", "output": "b", "metadata": [1]}\n', 1, "bad_metadata", "'metadata' must be an object"),
]


@pytest.mark.parametrize(("content", "line", "kind", "reason"), ERROR_CASES)
def test_errors_name_path_line_and_reason(tmp_path: Path, content: str, line: int, kind: str, reason: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DatasetError) as info:
        load_jsonl(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.line, err.kind) == (line, kind)
    assert reason in err.reason
    assert err.path == str(path)
    assert str(path) in str(err) and f"line {line}" in str(err) and err.reason in str(err)
    with pytest.raises(DatasetError) as info2:
        list(stream_jsonl(path))
    assert (info2.value.line, info2.value.kind) == (line, kind)
    report = validate_file(path)
    assert not report.valid
    assert (report.problems[0].line, report.problems[0].kind) == (line, kind)


def test_json_error_column_matches_json_module(tmp_path: Path) -> None:
    bad = '  {"input": "a", "output": "b",}'
    path = write(tmp_path, rec("x", "y") + "\n" + bad + "\n")
    with pytest.raises(DatasetError) as info:
        load_jsonl(path)
    try:
        json.loads(bad)
    except json.JSONDecodeError as exc:
        assert f"column {exc.colno}" in info.value.reason


def test_invalid_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, rec("a", "b").encode() + b'\n{"input": "\xff\xfe", "output": "b"}\n')
    with pytest.raises(DatasetError) as info:
        load_jsonl(path)
    assert (info.value.line, info.value.kind) == (2, "invalid_utf8")
    report = validate_file(path)
    assert [(p.line, p.kind) for p in report.problems] == [(2, "invalid_utf8")]
    assert report.n_records == 1


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \r\n\t\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DatasetError) as info:
        load_jsonl(path)
    assert info.value.kind == "empty_file"
    assert info.value.line is None
    assert str(path) in str(info.value)
    report = validate_file(path)
    assert not report.valid and report.n_records == 0
    assert [(p.line, p.kind) for p in report.problems] == [(None, "empty_file")]
    assert DatasetError.from_report(path, report).kind == "empty_file"


def test_dataset_error_pickles_and_from_report(tmp_path: Path) -> None:
    err = DatasetError("f.jsonl", 3, "invalid_json", "invalid JSON at column 2: x")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.line, back.kind, back.reason) == ("f.jsonl", 3, "invalid_json", err.reason)
    assert str(back) == "f.jsonl, line 3: invalid JSON at column 2: x"
    path = write(tmp_path, '{"input": "a"}\n[1]\n' + rec("a", "b") + "\n")
    from_report = DatasetError.from_report(path, validate_file(path))
    assert (from_report.line, from_report.kind) == (1, "missing_field")
    assert "1 more" in from_report.reason


def test_bom_crlf_blank_lines_accepted(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbf" + rec("a b", "c").encode() + b"\r\n\r\n   \n\t\r\n" + rec("d", "e f").encode() + b"\r\n"
    path = write(tmp_path, content)
    assert load_jsonl(path) == [{"input": "a b", "output": "c"}, {"input": "d", "output": "e f"}]
    report = validate_file(path)
    assert report.valid and report.n_records == 2 and report.n_lines == 5
    assert report.problems == [] and report.warnings == []
    # a problem after blank lines keeps its true line number
    path2 = write(tmp_path, content + b"\r\n{oops}\r\n", "b.jsonl")
    report2 = validate_file(path2)
    assert [(p.line, p.kind) for p in report2.problems] == [(7, "invalid_json")]


def test_final_line_without_newline(tmp_path: Path) -> None:
    path = write(tmp_path, rec("a", "b") + "\n" + rec("c", "d"))
    assert len(load_jsonl(path)) == 2
    assert validate_file(path).n_records == 2
    bad = write(tmp_path, rec("a", "b") + "\n{bad", "bad.jsonl")
    assert validate_file(bad).problems[0].line == 2


def test_extra_keys_kept_and_warned(tmp_path: Path) -> None:
    path = write(tmp_path, rec("a", "b", id=7, source="faq") + "\n" + rec("c", "d", metadata={"k": 1}) + "\n")
    records = load_jsonl(path)
    assert records[0] == {"input": "a", "output": "b", "id": 7, "source": "faq"}
    assert records[1]["metadata"] == {"k": 1}
    report = validate_file(path)
    assert report.valid
    assert [(w.line, w.kind) for w in report.warnings] == [(1, "unknown_key")]
    assert "'id'" in report.warnings[0].message and "'source'" in report.warnings[0].message


def test_record_model() -> None:
    r = Record.model_validate({"input": "a", "output": "b", "metadata": {"c": 1}, "extra": [1]})
    assert r.metadata == {"c": 1}
    assert r.model_dump()["extra"] == [1]
    assert Record(input="a", output="b").metadata is None
    with pytest.raises(ValueError):
        Record.model_validate({"input": 1, "output": "b"})
    with pytest.raises(ValueError):
        Record.model_validate({"input": "a", "output": "b", "metadata": [1]})


# ----------------------------------------------------------------------------- validation


def test_validation_report_fields_and_warnings(tmp_path: Path) -> None:
    long_text = "word " * (LONG_RECORD_CHARS // 5 + 10)
    lines = [
        rec("same question", "answer one"),  # 1
        rec("", "empty input"),  # 2
        rec("q3", "   "),  # 3: whitespace-only output
        rec("same question", "answer two"),  # 4: duplicate input
        rec("same question", "answer one"),  # 5: duplicate record
        "",  # 6 blank
        "not json",  # 7
        rec("long", long_text),  # 8
        rec("x", "y", extra=1),  # 9
    ]
    path = write(tmp_path, "\n".join(lines) + "\n")
    report = validate_file(path)
    assert isinstance(report, ValidationReport)
    data = path.read_bytes()
    assert report.file_size == len(data)
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.n_records == 7 and report.n_lines == 9
    assert not report.valid
    assert [(p.line, p.kind) for p in report.problems] == [(7, "invalid_json")]
    assert report.n_problems == 1 and report.problem_counts == {"invalid_json": 1}
    got = [(w.line, w.kind) for w in report.warnings]
    assert got == [
        (2, "empty_string"),
        (3, "empty_string"),
        (4, "duplicate_input"),
        (5, "duplicate_record"),
        (8, "long_record"),
        (9, "unknown_key"),
    ]
    assert "line 1" in report.warnings[2].message and "line 1" in report.warnings[3].message
    assert report.n_warnings == 6
    assert sum(report.warning_counts.values()) == 6
    dumped = report.model_dump()
    assert json.loads(json.dumps(dumped))["problems"][0]["line"] == 7


def test_problem_and_warning_caps(tmp_path: Path) -> None:
    n = MAX_KEPT + 700
    lines = ["{bad" if i % 2 == 0 else rec("dup", "same") for i in range(2 * n)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    report = validate_file(path)
    assert report.n_problems == n and len(report.problems) == MAX_KEPT
    assert [p.line for p in report.problems] == list(range(1, 2 * MAX_KEPT, 2))
    assert report.n_warnings == n - 1 and len(report.warnings) == MAX_KEPT
    assert report.warnings[0].line == 4 and report.warning_counts == {"duplicate_record": n - 1}
    assert [w.line for w in report.warnings] == sorted(w.line for w in report.warnings)


def _report_key(r: ValidationReport) -> dict[str, Any]:
    return r.model_dump()


def test_chunked_scan_matches_whole_file(tmp_path: Path) -> None:
    """Byte ranges at awkward places merge into the same report as one sequential scan."""
    base = generated_file(tmp_path, n=400, seed=3)
    text = base.read_bytes()
    # duplicates far apart, problems late in the file, a BOM, no final newline
    extra = (rec("q0 dup", "a") + "\n{bad\n" + rec("q0 dup", "a") + "\n[1]\n" + rec("q0 dup", "b")).encode()
    path = write(tmp_path, b"\xef\xbb\xbf" + text + extra, "chunks.jsonl")
    size = path.stat().st_size
    whole = scan_range(str(path))
    expected = ds._merge(str(path), size, "x", [whole])
    for n_chunks in (2, 3, 5, 11, 40):
        ranges = ds.split_points(str(path), size, n_chunks)
        assert ranges[0][0] == 0 and ranges[-1][1] == size
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        results = [scan_range(str(path), s, e) for s, e in ranges]
        merged = ds._merge(str(path), size, "x", results)
        assert _report_key(merged) == _report_key(expected), n_chunks
    assert expected.problem_counts == {"invalid_json": 1, "not_object": 1}
    assert expected.warning_counts.get("duplicate_record") == 1
    assert expected.warning_counts.get("duplicate_input", 0) >= 1


def test_every_split_position_of_a_small_file(tmp_path: Path) -> None:
    lines = [rec("a", "b"), "", rec("a", "b"), "{x", rec("c", "d e"), "  ", rec("a", "z"), rec("é", "ü")]
    path = write(tmp_path, "\r\n".join(lines))
    data = path.read_bytes()
    expected = ds._merge(str(path), len(data), "", [scan_range(str(path))])
    for cut in [i + 1 for i, b in enumerate(data) if b == 10]:
        results = [scan_range(str(path), 0, cut), scan_range(str(path), cut, len(data))]
        assert _report_key(ds._merge(str(path), len(data), "", results)) == _report_key(expected)


@pytest.mark.slow
def test_parallel_workers_match_sequential(tmp_path: Path) -> None:
    path = generated_file(tmp_path, n=3000, seed=5)
    with open(path, "ab") as f:
        f.write(("{bad\n" + rec("q1 dup", "x") + "\n" + rec("q1 dup", "x") + "\n").encode())
    events: list[Event] = []
    sequential = validate_file(path, workers=1)
    parallel = validate_file(path, on_event=events.append, workers=2)
    assert parallel.model_dump() == sequential.model_dump()
    assert parallel.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert parallel.warning_counts.get("duplicate_record") == 1
    assert events and isinstance(events[-1], Progress) and events[-1].step == events[-1].total
    # the workers really ran (validate_file would silently fall back to one process)
    size = path.stat().st_size
    results, sha = ds._scan_parallel(str(path), size, 2, ProgressThrottle(None, "scan", size), None)
    assert len(results) == 2 and sha == parallel.sha256
    assert sum(r.n_records for r in results) == sequential.n_records


def test_parallel_failure_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, rec("a", "b") + "\n")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("cannot start")

    monkeypatch.setattr(ds, "_scan_parallel", broken)
    assert validate_file(path, workers=2).n_records == 1


def _ran_alone(test: Any) -> bool:
    """Run ``test`` in a fresh interpreter when this process may not fork (True: it passed there).

    Forked scan workers need a process with no other thread (``ds._can_fork``); once an earlier
    test of the suite has started one (a model load, a served stub), this process has some, so
    the test runs again on its own, where it really forks.
    """
    if ds._can_fork():
        return False
    assert not os.environ.get("TINYFORGE_TEST_ALONE"), "a fresh test process still has other threads"
    node = f"{Path(__file__).resolve()}::{test.__name__}"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
                          env={**os.environ, "TINYFORGE_TEST_ALONE": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_forked_workers_match_sequential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if _ran_alone(test_forked_workers_match_sequential):
        return
    path = generated_file(tmp_path, n=3000, seed=7)
    with open(path, "ab") as f:
        f.write(("{bad\n" + rec("q1 dup", "x") + "\n" + rec("q1 dup", "x") + "\n").encode())
    forks: list[int] = []
    real_fork = os.fork

    def counted_fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counted_fork)
    sequential = validate_file(path, workers=1)
    forked = validate_file(path, workers=3, fork_workers=True)
    assert len(forks) == 3  # the workers really were forked (no silent fallback to one process)
    assert forked.model_dump() == sequential.model_dump()
    # many more ranges than workers: each worker scans several, in whatever order they come
    monkeypatch.setattr(ds, "_RANGE_BYTES", 20_000)
    size = path.stat().st_size
    results, _ = ds._scan_parallel(str(path), size, 3, ProgressThrottle(None, "scan", size), None, fork=True)
    assert len(results) == size // 20_000 > 10
    assert validate_file(path, workers=3, fork_workers=True).model_dump() == sequential.model_dump()
    assert validate_file(path, workers=2).model_dump() == sequential.model_dump()  # started, not forked
    assert forked.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert forked.warning_counts.get("duplicate_record") == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_forked_worker_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if _ran_alone(test_forked_worker_failure_is_reported):
        return
    path = generated_file(tmp_path, n=500, seed=8)
    size = path.stat().st_size

    def broken(*args: Any) -> None:
        raise ValueError("boom in the worker")

    monkeypatch.setattr("core.training.scan_worker.run", broken)
    with pytest.raises(RuntimeError, match="boom in the worker"):
        ds._scan_parallel(str(path), size, 2, ProgressThrottle(None, "scan", size), None, fork=True)
    assert validate_file(path, workers=2, fork_workers=True).n_records == 500  # falls back to one process


def test_progress_events_throttled(tmp_path: Path) -> None:
    path = generated_file(tmp_path, n=20000, seed=2)
    size = path.stat().st_size
    events: list[Event] = []
    t0 = time.monotonic()
    validate_file(path, on_event=events.append, workers=1)
    elapsed = time.monotonic() - t0
    assert events and all(isinstance(e, Progress) and e.stage == "scan" for e in events)
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps[0] == 0 and steps[-1] == size
    assert steps == sorted(steps)
    assert all(e.total == size for e in events if isinstance(e, Progress))
    assert len(events) <= elapsed * 20 + 3


def test_cancel_before_and_during(tmp_path: Path) -> None:
    path = generated_file(tmp_path, n=12000, seed=4)  # several 1 MiB blocks
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        validate_file(path, cancel=token, workers=1)
    token2 = CancelToken()

    def on_event(event: Event) -> None:
        token2.cancel()

    with pytest.raises(Cancelled):
        validate_file(path, on_event=on_event, cancel=token2, workers=1)


@pytest.mark.slow
def test_cancel_parallel(tmp_path: Path) -> None:
    path = generated_file(tmp_path, n=3000, seed=6)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        validate_file(path, cancel=token, workers=2)


# ----------------------------------------------------------------------------- examples


def test_examples() -> None:
    support = validate_file(REPO / "examples" / "customer_support.jsonl")
    assert support.valid and 35 <= support.n_records <= 60 and support.n_warnings == 0
    records = load_jsonl(REPO / "examples" / "customer_support.jsonl")
    cats = {r["metadata"]["category"] for r in records if "metadata" in r}
    assert {"billing", "shipping", "account", "returns", "orders"} <= cats
    problems = validate_file(REPO / "examples" / "with_problems.jsonl")
    assert not problems.valid
    assert {"invalid_json", "missing_field", "not_string"} <= set(problems.problem_counts)
    assert {"duplicate_input", "empty_string"} <= set(problems.warning_counts)


def test_frozen_app_scans_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, rec("a", "b") + "\n")

    def must_not_run(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no worker processes from a frozen app")

    monkeypatch.setattr(ds, "_scan_parallel", must_not_run)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert validate_file(path, workers=4).n_records == 1
