"""Fuzz: random bytes and random JSON lines never break the dataset engine."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.training.dataset import (
    DatasetError,
    LineIndex,
    load_jsonl,
    read_head,
    summarize_dataset,
    validate_file,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from(["\u00a0", "\u3000", "\x1c", "\n", " "]),
    max_size=30,
)
records = st.fixed_dictionaries(
    {"input": texts, "output": texts},
    optional={"metadata": st.dictionaries(st.text(max_size=5), json_scalars, max_size=2) | json_values,
              "extra": json_values},
)
lines = st.one_of(
    records.map(lambda r: json.dumps(r, ensure_ascii=False)),
    records.map(json.dumps),
    json_values.map(json.dumps),
    st.sampled_from(["", "   ", "\t", "{", '{"input": "a"', "[]", "\u00a0", "null"]),
    st.text(max_size=20).filter(lambda s: "\n" not in s),
)


def run_all(data: bytes) -> None:
    """The properties every file must satisfy."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        path.write_bytes(data)
        loaded: list[dict[str, Any]] | None = None
        error: DatasetError | None = None
        try:
            loaded = load_jsonl(path)
        except DatasetError as exc:
            error = exc
        report = validate_file(path, workers=1)  # must never raise
        assert report.n_problems >= len(report.problems)
        assert report.n_warnings >= len(report.warnings)
        assert report.valid == (report.n_problems == 0 and report.n_records > 0)
        if error is None:
            assert loaded is not None and report.valid
            assert report.n_records == len(loaded)
            summary = summarize_dataset(loaded)
            assert abs(summary["avg_input_len"] - report.avg_input_len) < 1e-9
            assert abs(summary["avg_output_len"] - report.avg_output_len) < 1e-9
        else:
            assert not report.valid
            if error.kind == "empty_file":
                assert error.line is None and report.n_records == 0
            else:
                assert error.line is not None and error.line >= 1
                first = report.problems[0]
                assert (first.line, first.kind) == (error.line, error.kind)
        index = LineIndex.build(path)
        real_problems = report.n_problems - report.problem_counts.get("empty_file", 0)
        assert len(index) == report.n_records + real_problems
        head = read_head(path, 5)
        assert [line for line, _ in head] == [index.line_number(r) for r in range(min(5, len(index)))]


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    run_all(data)


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from([b"", b"\xef\xbb\xbf"]))
def test_random_bytes_with_json_structure(data: bytes, prefix: bytes) -> None:
    valid = b'{"input": "a b", "output": "c"}\n'
    run_all(prefix + valid + data.replace(b"X", b"\n") + b"\n" + valid)


@SETTINGS
@given(st.lists(lines, max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans(), st.booleans())
def test_random_json_lines(items: list[str], sep: str, bom: bool, final_newline: bool) -> None:
    text = sep.join(items) + (sep if final_newline else "")
    run_all((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))
