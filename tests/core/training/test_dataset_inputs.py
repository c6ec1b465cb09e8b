"""Paths that are not datasets, and files that are not UTF-8 JSONL: one clear line, at once.

Every reader of a dataset (the loaders, the scan, the line index, the head preview, the run's
hash, real training's loader, the dry run) refuses a folder, a link loop, an unreadable file, a
FIFO, a device and a missing path with a ``DatasetFileError`` before opening it; the command
lines print one ``error:`` line and exit 1. The checks run in child processes with a memory cap
and a timeout, so a reader that blocks on a FIFO or reads ``/dev/zero`` fails the test instead
of hanging the suite or eating the machine's memory.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.training.dataset import DatasetError, load_jsonl, validate_file

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "examples" / "sample_qna.jsonl"
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0
SETPRIV = shutil.which("setpriv")

# What each bad path must be called, in every message.
REASONS = {
    "folder": "is a folder, not a file",
    "loop": "symbolic link loop",
    "fifo": "named pipe (FIFO)",
    "device": "is a device",
    "missing": "not found",
    "unreadable": "permission denied",
}

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and modes are POSIX")


def make_bad_path(tmp_path: Path, kind: str) -> Path:
    """A dataset path of the given kind, named like a dataset so only the file check can refuse it."""
    if kind == "folder":
        path = tmp_path / "folder.jsonl"
        path.mkdir()
    elif kind == "loop":
        path = tmp_path / "loop.jsonl"
        other = tmp_path / "loop2.jsonl"
        path.symlink_to(other)
        other.symlink_to(path)
    elif kind == "fifo":
        path = tmp_path / "pipe.jsonl"
        os.mkfifo(path)
    elif kind == "device":
        path = tmp_path / "zero.jsonl"
        path.symlink_to("/dev/zero")
    elif kind == "missing":
        path = tmp_path / "missing.jsonl"
    elif kind == "unreadable":
        path = tmp_path / "secret.jsonl"
        path.write_text('{"input": "a", "output": "b"}\n', encoding="utf-8")
        path.chmod(0)
    else:
        raise AssertionError(kind)
    return path


def as_plain_user(cmd: list[str]) -> list[str]:
    """``cmd`` without root's power to read any file (file modes then apply), or skip."""
    if not ROOT_USER:
        return cmd
    if SETPRIV is None:
        pytest.skip("running as root without setpriv: file modes cannot be enforced")
    return [SETPRIV, "--bounding-set=-dac_override,-dac_read_search", *cmd]


def _limit_memory() -> None:  # runs in the child: a reader of /dev/zero fails instead of swapping
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def run_bounded(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with a memory cap; a hang (a reader blocked on a FIFO) fails the test."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env,
                              preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s (blocked on the path?)")


def unblock_fifo(path: Path) -> None:
    """Give a reader stuck in ``open()`` of a FIFO its end of file (no-op without a reader)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


# Every dataset reader, called on one path in a child process; prints one JSON line per reader.
READERS = r"""
import json, sys, time
from pathlib import Path
path = sys.argv[1]
calls = {
    "load_jsonl": lambda: __import__("core.training.dataset", fromlist=["x"]).load_jsonl(path),
    "validate_file": lambda: __import__("core.training.dataset", fromlist=["x"]).validate_file(path, workers=1),
    "validate_file_parallel": lambda: __import__("core.training.dataset", fromlist=["x"]).validate_file(path, workers=2),
    "scan_range": lambda: __import__("core.training.dataset_scan", fromlist=["x"]).scan_range(path),
    "LineIndex.build": lambda: __import__("core.training.line_index", fromlist=["x"]).LineIndex.build(path),
    "read_head": lambda: __import__("core.training.line_index", fromlist=["x"]).read_head(path, 5),
    "runs._file_sha256": lambda: __import__("core.runs", fromlist=["x"])._file_sha256(Path(path)),
    "records.load_records": lambda: __import__("core.training.records", fromlist=["x"]).load_records(path, print),
    "run_training(dry_run)": lambda: __import__("core.training.train", fromlist=["x"]).run_training(
        path, sys.argv[2], dry_run=True),
}
for name, call in calls.items():
    start = time.monotonic()
    try:
        call()
        outcome = ["no error", ""]
    except Exception as exc:
        outcome = [type(exc).__name__, str(exc), isinstance(exc, FileNotFoundError)]
    print(json.dumps([name, time.monotonic() - start, *outcome]), flush=True)
"""


@pytest.mark.parametrize("kind", list(REASONS))
def test_every_reader_refuses_a_bad_path_at_once(tmp_path: Path, kind: str) -> None:
    path = make_bad_path(tmp_path, kind)
    cmd = [sys.executable, "-c", READERS, str(path), str(tmp_path / "out")]
    if kind == "unreadable":
        cmd = as_plain_user(cmd)
    try:
        result = run_bounded(cmd, timeout=90)
    finally:
        if kind == "fifo":
            unblock_fifo(path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 9, result.stdout
    for name, seconds, exc_type, message, *rest in rows:
        expected = "TrainingError" if name == "records.load_records" else (
            "DatasetNotFoundError" if kind == "missing" else "DatasetFileError")
        assert exc_type == expected, (name, exc_type, message)
        assert REASONS[kind] in message, (name, message)
        assert str(path) in message or path.name in message, (name, message)
        assert seconds < 1.0, (name, seconds)
        if kind == "missing" and name != "records.load_records":
            assert rest == [True], "a missing file stays a FileNotFoundError for old callers"
    assert not (tmp_path / "out").exists(), "nothing is written for a bad dataset"


@pytest.mark.parametrize("kind", list(REASONS))
@pytest.mark.parametrize("entry", [["-m", "core.cli", "validate", "--data"],
                                   ["core/training/train.py", "--dry-run", "--out", "OUT", "--data"]])
def test_command_lines_print_one_error_line(tmp_path: Path, kind: str, entry: list[str]) -> None:
    path = make_bad_path(tmp_path, kind)
    args = [a.replace("OUT", str(tmp_path / "out")) for a in entry]
    cmd = [sys.executable, *args, str(path)]
    if kind == "unreadable":
        cmd = as_plain_user(cmd)
    try:
        result = run_bounded(cmd)
    finally:
        if kind == "fifo":
            unblock_fifo(path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert REASONS[kind] in errors[0] and path.name in errors[0]  # "error:" or "Error:" prefix
    assert not (tmp_path / "out").exists()


def test_real_training_refuses_a_fifo_in_one_line(tmp_path: Path) -> None:
    """``foremforge train`` (real, not dry) says it once: the Failed event and the exit line agree."""
    path = make_bad_path(tmp_path, "fifo")
    try:
        result = run_bounded([sys.executable, "-m", "core.cli", "train", "--data", str(path), "--out",
                              str(tmp_path / "out"), "--base-model", "tiny-causal"])
    finally:
        unblock_fifo(path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1 and REASONS["fifo"] in errors[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_gate_accepts_regular_files_and_links_to_them(tmp_path: Path) -> None:
    from core.training.dataset_scan import (
        DatasetFileError,
        DatasetNotFoundError,
        check_dataset_path,
        open_dataset,
    )

    link = tmp_path / "link.jsonl"
    link.symlink_to(SAMPLE)
    assert check_dataset_path(link).st_size == SAMPLE.stat().st_size
    with open_dataset(link) as f:
        assert f.read() == SAMPLE.read_bytes()
    assert len(load_jsonl(link)) == 3
    with pytest.raises(DatasetNotFoundError) as info:
        check_dataset_path(tmp_path / "nope.jsonl")
    assert isinstance(info.value, FileNotFoundError) and info.value.filename == str(tmp_path / "nope.jsonl")
    assert isinstance(info.value, DatasetFileError) and isinstance(info.value, DatasetError)


# ----------------------------------------------------------------------------- the output folder


@pytest.mark.parametrize("case", ["file", "under_file", "read_only"])
def test_bad_output_folder_is_one_line_before_any_work(tmp_path: Path, case: str) -> None:
    target = {"file": tmp_path / "taken", "under_file": tmp_path / "taken" / "out",
              "read_only": tmp_path / "locked" / "out"}[case]
    (tmp_path / "taken").write_text("mine", encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    messages = {"file": "is not a folder", "under_file": "is a file, not a folder", "read_only": "read-only"}
    try:
        for entry in (["-m", "core.cli", "train", "--dry-run"], ["core/training/train.py", "--dry-run"],
                      ["-m", "core.cli", "train", "--base-model", "tiny-causal"]):
            cmd = [sys.executable, *entry, "--data", str(SAMPLE), "--out", str(target)]
            if case == "read_only":
                cmd = as_plain_user(cmd)
            start = time.monotonic()
            result = run_bounded(cmd)
            assert result.returncode == 1, (entry, result.stderr)
            assert "Traceback" not in result.stderr
            errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
            assert len(errors) == 1 and messages[case] in errors[0], (entry, result.stderr)
            assert "scan:" not in result.stderr, "the output folder is checked before the dataset scan"
            assert time.monotonic() - start < 30
        assert (tmp_path / "taken").read_text(encoding="utf-8") == "mine"
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


# ----------------------------------------------------------------------------- encodings and line ends

RECORDS = [{"input": f"question {i}", "output": f"answer {i}"} for i in range(5)]
TEXT = "".join(json.dumps(r) + "\n" for r in RECORDS)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("workers", [1, 2])
def test_utf16_file_is_named_once(tmp_path: Path, encoding: str, workers: int) -> None:
    path = tmp_path / "wide.jsonl"
    path.write_bytes(TEXT.encode(encoding))
    report = validate_file(path, workers=workers)
    assert not report.valid
    assert [(p.line, p.kind) for p in report.problems] == [(1, "utf16")]
    assert "the file is UTF-16; save it as UTF-8" in report.problems[0].message
    with pytest.raises(DatasetError, match="line 1: the file is UTF-16; save it as UTF-8"):
        load_jsonl(path)


def test_utf16_hint_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "wide.jsonl"
    path.write_bytes(TEXT.encode("utf-16"))
    result = run_bounded([sys.executable, "-m", "core.cli", "validate", "--data", str(path)])
    assert result.returncode == 1
    assert "line 1: the file is UTF-16; save it as UTF-8" in result.stdout


def test_lone_cr_line_ends_are_named(tmp_path: Path) -> None:
    path = tmp_path / "mac.jsonl"
    path.write_bytes(TEXT.replace("\n", "\r").encode("utf-8"))
    report = validate_file(path)
    assert [(p.line, p.kind) for p in report.problems] == [(1, "lone_cr")]
    assert "lines end with a lone CR (old Mac line endings)" in report.problems[0].message
    with pytest.raises(DatasetError, match=r"lone CR \(old Mac line endings\)"):
        load_jsonl(path)
    # CRLF stays valid, and a raw CR inside a broken string is an ordinary JSON error.
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(TEXT.replace("\n", "\r\n").encode("utf-8"))
    assert validate_file(crlf).valid
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b'{"input": "a\rb", "output": "c"}\n')
    assert [p.kind for p in validate_file(broken).problems] == ["invalid_json"]


def test_a_few_nul_bytes_are_not_called_utf16(tmp_path: Path) -> None:
    path = tmp_path / "nul.jsonl"
    path.write_bytes(b'{"input": "a", "output": "b"}\n{"input": "a\x00b", "output": "some longer text"}\n')
    assert [p.kind for p in validate_file(path).problems] == ["invalid_json"]


# ----------------------------------------------------------------------------- duplicate keys


def test_duplicate_keys_are_warned_with_their_line(tmp_path: Path) -> None:
    lines = [
        '{"input": "a", "output": "b"}',
        '{"input":"a","output":"b","input":"c"}',  # compact style
        '{"input" : "q", "output" : "r", "output" : "s"}',  # spaced before the colon
        '{"input": "x", "output": "y", "metadata": {"k": 1, "k": 2}}',  # nested
        '{"input": "say \\"k\\": v", "output": "z"}',  # an escaped quote and colon in a string
        '{"input": "m", "output": "n", "metadata": {"deep": {"a": 1}, "list": [{"b": 2}]}}',
    ]
    path = tmp_path / "dups.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for workers in (1, 2):
        report = validate_file(path, workers=workers)
        assert report.valid
        dups = [(w.line, w.message) for w in report.warnings if w.kind == "duplicate_key"]
        assert dups == [
            (2, "duplicate key 'input': only the last value is kept"),
            (3, "duplicate key 'output': only the last value is kept"),
            (4, "duplicate key 'k': only the last value is kept"),
        ]
        assert report.warning_counts["duplicate_key"] == 3


def test_no_duplicate_key_warning_on_ordinary_files(tmp_path: Path) -> None:
    from tests.core.training.test_dataset import generated_file

    report = validate_file(generated_file(tmp_path, n=2000))
    assert "duplicate_key" not in report.warning_counts
    assert "duplicate_key" not in validate_file(SAMPLE).warning_counts


def test_validate_says_plainly_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty file has no "line None:", a huge integer no Python advice, and a capped warning
    list says it is capped (reliability round two, item 8)."""
    from core.cli import main

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["validate", "--data", str(empty)]) == 1
    out = capsys.readouterr().out
    assert "line None" not in out and "holds no records" in out and "invalid: 1 problem\n" in out
    huge = tmp_path / "huge.jsonl"
    huge.write_text('{"input": "a", "output": "b", "metadata": {"n": ' + "9" * 5000 + "}}\n")
    assert main(["validate", "--data", str(huge)]) == 1
    out = capsys.readouterr().out
    assert "line 1: invalid JSON: a number with more than 4300 digits" in out and "set_int_max_str_digits" not in out
    many = tmp_path / "extra.jsonl"
    many.write_text("".join(f'{{"input": "q{i}", "output": "a", "x{i}": 1}}\n' for i in range(1200)))
    assert main(["validate", "--data", str(many)]) == 0
    out = capsys.readouterr().out
    assert "1200 warnings" in out and "the first 1000 are listed" in out
