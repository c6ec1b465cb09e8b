"""Check a GGUF file against the trained torch model, and llama.cpp's tokenizer against ours.

The weights: teacher-forced top-1 agreement along torch's greedy path (one batched pass per
input, every position's logits) and free-running greedy answers, the same measures and ties
rule as the ONNX candidates (:func:`core.exporter.parity_compare.compare_generator`). The tokenizer:
llama.cpp must turn the rendered prompts, and text with digits, accents, emoji and code, into
the ids our tokenizer gives, or a runtime that tokenizes text (Ollama, llama-cli) would feed the
model something it was not trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.exporter.gguf_runtime import GgufRuntime, LlamaCppRuntime, llama_cpp_available
from core.exporter.parity_compare import token_agreement
from core.exporter.parity_runs import TorchRun
from core.models.prompting import PromptFormat, encode_prompt
from core.run_layout import GgufFile, GgufTokenization, ParityResult

if TYPE_CHECKING:
    from core.exporter.candidates import Gate

logger = logging.getLogger(__name__)

__all__ = ["TOKENIZER_SAMPLES", "check_file", "check_tokenization"]

TOKENIZER_SAMPLES = (
    "Order #12345 shipped on 2024-03-07; 3 items cost $1,299.99 (10% off) and 0.5 kg.",
    "Café, naïve, façade, Ærøskøbing, São Paulo, Zürich, Ελληνικά, русский, 日本語のテキスト",
    "Thanks!! 😀👍🏽 🇫🇷 ❤️‍🔥 — “quoted” … ok",
    "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # π r²\n\n\tif x != {'a': [1, 2]}:\r\n  pass",
    "   leading spaces, trailing   \n\n\n multiple    blank lines",
)
_MISMATCHES_KEPT = 3


def check_file(runtime: GgufRuntime, prompts: list[list[int]], torch_runs: list[TorchRun], max_new_tokens: int,
               stop_ids: set[int], gate: Gate) -> GgufFile:
    """How one loaded GGUF file answers compared with torch's runs on the same prompts (its
    figures; the caller names the file); it stops once more answers differ than the gate allows
    (``stopped_early``): the verdict is known."""
    allowed = int(len(prompts) * (1.0 - gate.min_greedy_match) + 1e-9)
    agreed = counted = ties = matches = 0
    agreements: list[float] = []
    steps: list[float] = []
    for prompt, ref in zip(prompts, torch_runs, strict=True):
        fed = prompt + ref.ids[: len(ref.step_logits) - 1]
        rows = runtime.logits(fed)[len(prompt) - 1:]
        for ref_logits, row in zip(ref.step_logits, rows, strict=True):
            top2 = np.partition(ref_logits, -2)[-2:]
            if abs(float(top2[1] - top2[0])) < gate.tie_margin:
                ties += 1  # torch itself barely prefers one token: not a disagreement
            else:
                counted += 1
                agreed += int(int(np.argmax(row)) == int(np.argmax(ref_logits)))
        ids, step_s = runtime.greedy(prompt, max_new_tokens, stop_ids)
        steps += step_s
        matches += int(ids == ref.ids)
        agreements.append(token_agreement(ref.ids, ids))
        if len(agreements) - matches > allowed:
            break
    n = len(agreements)
    result = GgufFile(
        agreement=round(agreed / counted, 4) if counted else 1.0,
        exact_match=round(matches / n, 4) if n else 1.0,
        mean_token_agreement=round(sum(agreements) / n, 4) if n else 1.0,
        positions_compared=counted,  # kept as the report's extra keys, after the fields
        ties_skipped=ties,
        tokens_per_s=round(len(steps) / sum(steps), 1) if steps and sum(steps) > 0 else None,
        n_compared=n,
        stopped_early=n < len(prompts),
    )
    figures = ParityResult(teacher_forced_agreement=result.agreement, generation_match_rate=result.exact_match)
    result.passed = not result.stopped_early and gate.passes(figures)
    return result


def check_tokenization(path: Path, tokenizer: Any, fmt: PromptFormat, texts: list[str]) -> GgufTokenization:
    """llama.cpp's tokenizer (from the GGUF at ``path``) against ours: the rendered prompts of
    ``texts`` as a runtime tokenizes them (BOS added when the file says so), and the samples of
    :data:`TOKENIZER_SAMPLES` as plain text. Skipped without ``llama_cpp``."""
    if not llama_cpp_available():
        return GgufTokenization(checked_in=None, passed=None, skipped="llama-cpp-python is not installed")
    runtime = LlamaCppRuntime(path, n_ctx=512)
    try:
        cases = [(fmt.render(t), encode_prompt(tokenizer, fmt, t), True) for t in texts]
        cases += [(t, list(tokenizer(t, add_special_tokens=False)["input_ids"]), False) for t in TOKENIZER_SAMPLES]
        mismatches = []
        for text, ours, add_special in cases:
            theirs = runtime.tokenize(text, add_special)
            if theirs != ours:
                mismatches.append({"text": text, "ours": ours, "llama_cpp": theirs})
    finally:
        runtime.close()
    return GgufTokenization(
        checked_in=runtime.checked_in,
        passed=not mismatches,
        n_checked=len(cases),
        n_matched=len(cases) - len(mismatches),
        mismatches=mismatches[:_MISMATCHES_KEPT],
    )
