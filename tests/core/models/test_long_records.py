"""A huge record costs what a short one does: its text is cut before tokenizing, not after.

Before, ``encode_example`` tokenized the whole record and then kept ``max_length`` tokens (5 MB
took ~30 s and ~1 GB here; 50 MB took 5.5 GB). The cut must keep exactly the ids a full
tokenization followed by truncation keeps.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.models import prompting
from core.models.prompting import build_prompt_format, encode_example

REPO = Path(__file__).resolve().parents[3]


class SpyTokenizer:
    """A real tokenizer that records the length of every text it is given."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.lengths: list[int] = []

    def __call__(self, text: str, **kwargs: Any) -> Any:
        self.lengths.append(len(text))
        return self._tokenizer(text, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


@pytest.fixture(scope="module", params=["causal", "seq2seq"])
def tiny(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    from core.models.tiny import build_byte_tokenizer

    tokenizer = build_byte_tokenizer(request.param)
    return tokenizer, build_prompt_format(tokenizer, request.param, 64)


def test_tokenizer_never_sees_more_than_the_bound(tiny: tuple[Any, Any]) -> None:
    tokenizer, fmt = tiny
    spy = SpyTokenizer(tokenizer)
    big = "lorem ipsum " * 40_000  # 480 000 characters
    example = encode_example(spy, fmt, big, big, 64)
    assert example.truncated and len(example.input_ids) <= 64 and len(example.labels) <= 64
    assert max(spy.lengths) <= 64 * 8 + 200, max(spy.lengths)  # max_length * CHARS_PER_TOKEN + the template


def _full(tokenizer: Any, fmt: Any, prompt: str, response: str, max_length: int, monkeypatch: Any) -> Any:
    """The old behaviour: tokenize everything, then truncate (the cut disabled)."""
    with monkeypatch.context() as m:
        m.setattr(prompting, "CHARS_PER_TOKEN", 10**9, raising=False)
        return encode_example(tokenizer, fmt, prompt, response, max_length)


def test_cut_keeps_the_same_ids_as_full_tokenization(tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer, fmt = tiny
    rng = random.Random(0)
    words = ["café", "東京", "😀", "a", "the", "     ", "\n", "tokenization", "=" * 30, "x"]
    for _ in range(40):
        prompt = " ".join(rng.choices(words, k=rng.randint(0, 400)))
        response = " ".join(rng.choices(words, k=rng.randint(0, 400)))
        for max_length in (16, 64):
            cut = encode_example(tokenizer, fmt, prompt, response, max_length)
            full = _full(tokenizer, fmt, prompt, response, max_length, monkeypatch)
            assert (cut.input_ids, cut.labels, cut.truncated) == (full.input_ids, full.labels, full.truncated)


def test_few_tokens_per_character_widen_the_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tokenizer whose tokens span many characters: the cut widens until enough tokens remain."""
    from core.models.tiny import build_byte_tokenizer

    tokenizer = build_byte_tokenizer("causal")
    fmt = build_prompt_format(tokenizer, "causal", 32)

    class WordTokenizer(SpyTokenizer):  # one token per 50-character chunk
        def __call__(self, text: str, **kwargs: Any) -> Any:
            self.lengths.append(len(text))
            return {"input_ids": [5 + (hash(text[i:i + 50]) % 200) for i in range(0, len(text), 50)]}

    spy = WordTokenizer(tokenizer)
    text = "".join(chr(97 + i % 26) for i in range(100_000))
    cut = encode_example(spy, fmt, "q", text, 32)
    full = _full(spy, fmt, "q", text, 32, monkeypatch)
    assert cut.input_ids == full.input_ids and cut.truncated


def test_a_huge_record_stays_within_time_and_memory() -> None:
    """20 MB of one record through the real byte tokenizer: well under a second and 200 MB."""
    code = r"""
import json, resource, sys, time
from core.models.tiny import build_byte_tokenizer
from core.models.prompting import build_prompt_format, encode_example
tok = build_byte_tokenizer("causal")
fmt = build_prompt_format(tok, "causal", 256)
big = "word " * 4_000_000
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
ex = encode_example(tok, fmt, big, big, 256)
seconds = time.perf_counter() - start
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps({"seconds": seconds, "grown_mb": grown, "n": len(ex.input_ids), "truncated": ex.truncated}))
"""
    try:
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("encoding one 20 MB record took over 60 s (the whole text was tokenized)")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["n"] == 256 and figures["truncated"]
    assert figures["seconds"] < 2.0, figures
    assert figures["grown_mb"] < 200, figures
