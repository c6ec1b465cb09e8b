"""Compare an ONNX generator with torch: logits along torch's greedy path (teacher-forced),
answers token by token, every decode step timed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.exporter.parity_runs import TorchRun
from core.run_layout import ParityResult

__all__ = ["Comparison", "compare_generator", "token_agreement"]


@dataclass
class Comparison:
    """What :func:`compare_generator` found: the figures of the report, and the generator's
    answers and timings (for the latency figures)."""

    result: ParityResult
    answers: list[list[int]]
    prefill_ms: list[float]
    step_ms: list[float]


def token_agreement(reference: list[int], candidate: list[int]) -> float:
    """Fraction of positions (over the longer sequence) where both have the same token."""
    longest = max(len(reference), len(candidate))
    if longest == 0:
        return 1.0
    same = sum(1 for a, b in zip(reference, candidate, strict=False) if a == b)
    return same / longest


def compare_generator(
    generator: Any,
    prompts: list[list[int]],
    torch_runs: list[TorchRun],
    max_new_tokens: int,
    tie_margin: float = 0.05,
    max_mismatches: int | None = None,
    recorded: list[TorchRun] | None = None,
) -> Comparison:
    """Compare an :class:`OnnxGenerator` with torch: logits along torch's path (teacher forced:
    each position gets torch's prefix), and the generator's own greedy answers.

    ``teacher_forced_agreement`` is the share of positions where both pick the same next token;
    positions where torch's two best logits are within ``tie_margin`` are ties and not counted.
    A greedy answer is read off the teacher-forced pass up to the first token the generator
    would choose differently and generated only from there on: the same calls, so the same
    answer, as ``generate_ids`` makes from the start. Every decode step is timed (``step_ms``,
    ``prefill_ms``: the latency figures). With ``max_mismatches``, it stops once more answers
    than that differ from torch's (``stopped_early``): the gate's verdict is known. ``recorded``:
    the generator's own greedy runs (:func:`onnx_greedy`); where one went torch's way, its logits
    are the teacher-forced ones and nothing is run again.
    """
    import numpy as np

    stop_ids = {int(i) for i in getattr(generator, "stop_ids", ())}
    max_diff = 0.0
    matches = agreed = counted = ties = 0
    agreements: list[float] = []
    answers: list[list[int]] = []
    prefill_ms: list[float] = []
    step_ms: list[float] = []
    for number, (prompt, ref) in enumerate(zip(prompts, torch_runs, strict=True)):
        own_run = recorded[number] if recorded is not None else None
        if own_run is not None and own_run.ids == ref.ids and len(own_run.step_logits) == len(ref.step_logits):
            for candidate, ref_logits in zip(own_run.step_logits, ref.step_logits, strict=True):
                max_diff = max(max_diff, float(np.max(np.abs(candidate - ref_logits))))
                top2 = np.partition(ref_logits, -2)[-2:]
                if abs(float(top2[1] - top2[0])) < tie_margin:
                    ties += 1
                else:
                    counted += 1
                    agreed += int(int(np.argmax(candidate)) == int(np.argmax(ref_logits)))
            prefill_ms.append(own_run.prefill_ms)
            step_ms.extend(own_run.step_ms)
            answers.append(list(ref.ids))
            matches += 1
            agreements.append(1.0)
            continue
        started = time.perf_counter()
        state, logits = generator.start(prompt)
        prefill_ms.append((time.perf_counter() - started) * 1000)
        answer: list[int] | None = None  # known once the generator leaves torch's path
        branch: dict[str, Any] | None = None  # the generator's state where it left, to go on from
        for index, ref_logits in enumerate(ref.step_logits):
            candidate = np.asarray(logits, dtype=np.float32)
            max_diff = max(max_diff, float(np.max(np.abs(candidate - ref_logits))))
            top2 = np.partition(ref_logits, -2)[-2:]
            own = int(np.argmax(candidate))
            if abs(float(top2[1] - top2[0])) < tie_margin:
                ties += 1
            else:
                counted += 1
                agreed += int(own == int(np.argmax(ref_logits)))
            if answer is None:
                answer, branch = _own_choice(generator, state, ref.ids, index, own, max_new_tokens, stop_ids)
            if index < len(ref.ids) and index + 1 < len(ref.step_logits):
                started = time.perf_counter()
                logits = generator.step(state, ref.ids[index])
                step_ms.append((time.perf_counter() - started) * 1000)
        ids = list(ref.ids) if answer is None else answer
        if branch is not None:
            ids = _go_on(generator, branch, ids, max_new_tokens, stop_ids, step_ms)
        answers.append(ids)
        matches += int(ids == ref.ids)
        agreements.append(token_agreement(ref.ids, ids))
        if max_mismatches is not None and len(answers) - matches > max_mismatches:
            break
    n = len(answers)
    result = ParityResult(
        n_compared=n,
        max_abs_logit_diff=max_diff,
        generation_match_rate=matches / n if n else 1.0,
        mean_token_agreement=sum(agreements) / n if n else 1.0,
        teacher_forced_agreement=round(agreed / counted, 4) if counted else 1.0,
        positions_compared=counted,
        ties_skipped=ties,
        stopped_early=n < len(prompts),
    )
    return Comparison(result, answers, prefill_ms, step_ms)


def _own_choice(generator: Any, state: dict[str, Any], ref_ids: list[int], index: int, own: int,
                max_new_tokens: int, stop_ids: set[int]) -> tuple[list[int] | None, dict[str, Any] | None]:
    """At position ``index`` of torch's path the generator picks ``own``: ``(None, None)`` while it
    follows torch, else its answer so far and, when that answer goes on, a copy of its state."""
    context_full = getattr(generator, "_context_full", None)
    if index < len(ref_ids) and own == ref_ids[index]:
        if context_full is not None and context_full(state):  # generate_ids stops here
            return ref_ids[: index + 1], None
        return None, None
    if index == len(ref_ids) and own in stop_ids:  # both stop here
        return list(ref_ids), None
    if own in stop_ids:
        return ref_ids[:index], None
    answer = [*ref_ids[:index], own]
    if len(answer) >= max_new_tokens or (context_full is not None and context_full(state)):
        return answer, None
    return answer, dict(state)  # a step replaces the state's arrays: a shallow copy is a snapshot


def _go_on(generator: Any, state: dict[str, Any], ids: list[int], max_new_tokens: int, stop_ids: set[int],
           step_ms: list[float]) -> list[int]:
    """Greedy decoding from ``state`` after ``ids``, as ``generate_ids`` goes on."""
    import numpy as np

    context_full = getattr(generator, "_context_full", None)
    while len(ids) < max_new_tokens:
        started = time.perf_counter()
        logits = generator.step(state, ids[-1])
        step_ms.append((time.perf_counter() - started) * 1000)
        token = int(np.argmax(logits))
        if token in stop_ids:
            break
        ids.append(token)
        if context_full is not None and context_full(state):
            break
    return ids

