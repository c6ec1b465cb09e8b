"""Compare an ONNX generator with torch: logits along torch's greedy path (teacher-forced),
answers token by token, every decode step timed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
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
    stop_ids = {int(i) for i in getattr(generator, "stop_ids", ())}
    tally = _Tally(tie_margin)
    for number, (prompt, ref) in enumerate(zip(prompts, torch_runs, strict=True)):
        own_run = recorded[number] if recorded is not None else None
        if own_run is not None and own_run.ids == ref.ids and len(own_run.step_logits) == len(ref.step_logits):
            tally.add_recorded(own_run, ref)  # it went torch's way: its logits are the teacher-forced ones
            continue
        ids = _teacher_forced(generator, prompt, ref, max_new_tokens, stop_ids, tally)
        tally.add_answer(ref.ids, ids)
        if max_mismatches is not None and len(tally.answers) - tally.matches > max_mismatches:
            break
    return Comparison(tally.result(len(prompts)), tally.answers, tally.prefill_ms, tally.step_ms)


@dataclass
class _Tally:
    """The running figures of a comparison: logit differences, agreed and tied positions,
    the generator's answers and how many match torch's, and its timings."""

    tie_margin: float
    max_diff: float = 0.0
    agreed: int = 0
    counted: int = 0
    ties: int = 0
    matches: int = 0
    agreements: list[float] = field(default_factory=list)
    answers: list[list[int]] = field(default_factory=list)
    prefill_ms: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)

    def position(self, candidate: Any, ref_logits: Any) -> int:
        """Count one position of torch's path (a tie when torch's two best logits are within the
        margin); return the token the generator picks there."""
        import numpy as np

        self.max_diff = max(self.max_diff, float(np.max(np.abs(candidate - ref_logits))))
        top2 = np.partition(ref_logits, -2)[-2:]
        own = int(np.argmax(candidate))
        if abs(float(top2[1] - top2[0])) < self.tie_margin:
            self.ties += 1
        else:
            self.counted += 1
            self.agreed += int(own == int(np.argmax(ref_logits)))
        return own

    def add_recorded(self, own_run: TorchRun, ref: TorchRun) -> None:
        """Count a recorded run of the generator that took torch's path: torch's answer, nothing run again."""
        for candidate, ref_logits in zip(own_run.step_logits, ref.step_logits, strict=True):
            self.position(candidate, ref_logits)
        self.prefill_ms.append(own_run.prefill_ms)
        self.step_ms.extend(own_run.step_ms)
        self.answers.append(list(ref.ids))
        self.matches += 1
        self.agreements.append(1.0)

    def add_answer(self, ref_ids: list[int], ids: list[int]) -> None:
        """Count the generator's greedy answer against torch's."""
        self.answers.append(ids)
        self.matches += int(ids == ref_ids)
        self.agreements.append(token_agreement(ref_ids, ids))

    def result(self, n_prompts: int) -> ParityResult:
        """The report's figures (``stopped_early`` when fewer than ``n_prompts`` answers were compared)."""
        n = len(self.answers)
        return ParityResult(
            n_compared=n,
            max_abs_logit_diff=self.max_diff,
            generation_match_rate=self.matches / n if n else 1.0,
            mean_token_agreement=sum(self.agreements) / n if n else 1.0,
            teacher_forced_agreement=round(self.agreed / self.counted, 4) if self.counted else 1.0,
            positions_compared=self.counted,
            ties_skipped=self.ties,
            stopped_early=n < n_prompts,
        )


def _teacher_forced(generator: Any, prompt: list[int], ref: TorchRun, max_new_tokens: int, stop_ids: set[int],
                    tally: _Tally) -> list[int]:
    """Feed the generator torch's path, counting every position, and return its own greedy
    answer: read off that pass up to where it leaves torch's path, generated from there on."""
    import numpy as np

    started = time.perf_counter()
    state, logits = generator.start(prompt)
    tally.prefill_ms.append((time.perf_counter() - started) * 1000)
    answer: list[int] | None = None  # known once the generator leaves torch's path
    branch: dict[str, Any] | None = None  # the generator's state where it left, to go on from
    for index, ref_logits in enumerate(ref.step_logits):
        own = tally.position(np.asarray(logits, dtype=np.float32), ref_logits)
        if answer is None:
            answer, branch = _own_choice(generator, state, ref.ids, index, own, max_new_tokens, stop_ids)
        if index < len(ref.ids) and index + 1 < len(ref.step_logits):
            started = time.perf_counter()
            logits = generator.step(state, ref.ids[index])
            tally.step_ms.append((time.perf_counter() - started) * 1000)
    ids = list(ref.ids) if answer is None else answer
    if branch is not None:
        ids = _go_on(generator, branch, ids, max_new_tokens, stop_ids, tally.step_ms)
    return ids


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

