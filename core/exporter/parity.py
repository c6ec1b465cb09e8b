"""Parity and latency of an ONNX export against the torch model it came from: the whole check.

Both sides run the same greedy loop with a KV cache, so the comparison is fair: torch eager
under ``torch.inference_mode`` (prefill once, then one token per step) versus the service's
:class:`OnnxGenerator`. Logits are compared step by step along torch's greedy path
(teacher-forced), answers token by token. :func:`check_parity` runs the steps; the runs and
their timings are in :mod:`core.exporter.parity_runs`, one precision's comparison in
:mod:`core.exporter.parity_compare`, the choice of inputs in :mod:`core.exporter.parity_inputs`.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.exporter.parity_compare import compare_generator
from core.exporter.parity_runs import (
    TorchRun,
    latency_figures,
    reference_runs,
    torch_latency,
    truncated,
)
from core.run_layout import LatencyReport, ParityReport, ParityResult

if TYPE_CHECKING:
    from core.exporter.candidates import Gate

logger = logging.getLogger(__name__)

__all__ = ["FP32_LOGIT_TOLERANCE", "LazySessions", "ParityCheck", "check_parity"]

FP32_LOGIT_TOLERANCE = 1e-3


@dataclass
class ParityCheck:
    """What :func:`check_parity` found: the report's sections, answers and warnings."""

    report: ParityReport
    onnx_prompts: list[list[int]]
    torch_answers: list[str]
    onnx_answers: dict[str, list[str]]
    warnings: list[str]
    latency: LatencyReport = field(default_factory=LatencyReport)
    torch_runs: list[TorchRun] = field(default_factory=list)
    speeds: dict[str, float] = field(default_factory=dict)  # ms per token of each quantized precision timed


def check_parity(
    model: Any,
    architecture: str,
    generators: dict[str, Any],
    texts: list[str],
    hf_prompts: list[list[int]],
    stop_ids: list[int],
    decoder_start_id: int | None,
    max_new_tokens: int,
    gate: Gate | None = None,
    reference_tokens: int | None = None,
    speed_order: list[str] | None = None,
) -> ParityCheck:
    """Torch's greedy answer to every input, then fp32 and the quantized precisions against it,
    the latency of each timed on the same runs.

    ``generators`` maps every precision to its generator (a :class:`LazySessions` opens each
    only when it is first used). ``speed_order``: the quantized precisions, fastest first, as an
    earlier export of this base model on this machine measured them; without it a short timed
    probe of each orders them.

    Torch's runs come from :func:`reference_runs` (``reference_tokens`` long, default
    ``max_new_tokens``: longer when the GGUF check reuses them; see ``ParityCheck.torch_runs``).
    fp32 passes with max |logit diff| < 1e-3 and every answer identical; a quantized precision
    passes ``gate`` (teacher-forced agreement and greedy match, see :mod:`core.exporter.candidates`),
    else it gets a warning and is not served. The candidates are checked fastest first (a short
    timed probe orders them); one that cannot pass any more stops early, and once one passes the
    slower ones are not checked (``checked: False``): the fastest passing one is served either way.
    """
    from core.exporter.candidates import Gate

    gate = gate or Gate()
    reference = generators["fp32"]
    onnx_prompts = [reference.encode(t) for t in texts]
    laps = _Laps()
    full_runs, fp32_runs = reference_runs(model, architecture, reference, onnx_prompts, hf_prompts,
                                          max(max_new_tokens, reference_tokens or 0), set(stop_ids),
                                          decoder_start_id)
    against = _Against(onnx_prompts, [truncated(run, max_new_tokens) for run in full_runs], max_new_tokens, gate,
                       len(texts))
    report = ParityReport(max_new_tokens=max_new_tokens, tokenizer_match=onnx_prompts == hf_prompts)
    warnings = _tokenizer_warnings(report)
    laps.lap("reference answers (fp32 graph, one torch pass per input)")
    latency = _torch_latency_report(model, architecture, hf_prompts, max_new_tokens, decoder_start_id)
    laps.lap("torch latency")
    quantized, probe_ms = _candidate_order(generators, onnx_prompts, speed_order)
    laps.lap("ordering the candidates")
    fp32_recorded = [truncated(run, max_new_tokens) for run in fp32_runs]
    onnx_answers = _check_precisions(["fp32", *quantized], generators, against, fp32_recorded, latency, report,
                                     warnings, laps)
    report.seconds = laps.seconds
    _add_speedups(latency, onnx_answers)
    torch_answers = [reference.decode(run.ids) for run in against.torch_runs]
    speeds = _measured_speeds(probe_ms, latency, onnx_answers)
    return ParityCheck(report, onnx_prompts, torch_answers, onnx_answers, warnings, latency, full_runs, speeds)


@dataclass(frozen=True)
class _Against:
    """What every precision is compared with: the prompts, torch's runs (answer length), the gate."""

    prompts: list[list[int]]
    torch_runs: list[TorchRun]
    max_new_tokens: int
    gate: Gate
    n_texts: int


class _Laps:
    """Seconds of each stage of the check, in order (the report's ``seconds``)."""

    def __init__(self) -> None:
        self.clock = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        """Book the time since the last lap to ``name``."""
        now = time.perf_counter()
        self.seconds[name] = round(now - self.clock, 3)
        self.clock = now


def _tokenizer_warnings(report: ParityReport) -> list[str]:
    """The warning when the service's tokenizer encodes the prompts unlike transformers'."""
    from core.run_layout import TOKENIZER_FILE

    if report.tokenizer_match:
        return []
    return [f"{TOKENIZER_FILE} encodes prompts differently from the transformers tokenizer"]


def _torch_latency_report(model: Any, architecture: str, hf_prompts: list[list[int]], max_new_tokens: int,
                          decoder_start_id: int | None) -> LatencyReport:
    """The latency section with eager torch's figures (the baseline every speed-up is against)."""
    threads, torch_figures = torch_latency(model, architecture, hf_prompts, max_new_tokens, decoder_start_id)
    return LatencyReport(unit="milliseconds per generated token (median over decode steps)",
                         max_new_tokens=max_new_tokens, torch_threads=threads, backends={"torch": torch_figures})


def _candidate_order(generators: dict[str, Any], onnx_prompts: list[list[int]],
                     speed_order: list[str] | None) -> tuple[list[str], dict[str, float]]:
    """The quantized precisions fastest first, as measured before or by a short timed probe now,
    and the probe's ms per step (empty when the earlier order was used)."""
    candidates = [p for p in generators if p != "fp32"]
    if speed_order is not None and set(speed_order) == set(candidates):
        return list(speed_order), {}
    probe_ms = {p: _probe_ms(generators[p], onnx_prompts) * 1000 for p in candidates}
    return sorted(candidates, key=lambda p: probe_ms[p]), probe_ms


def _check_precisions(precisions: list[str], generators: dict[str, Any], against: _Against,
                      fp32_recorded: list[TorchRun], latency: LatencyReport, report: ParityReport,
                      warnings: list[str], laps: _Laps) -> dict[str, list[str]]:
    """Check each precision in turn into ``report`` and ``latency``; once a quantized one passes
    and is faster than fp32, the slower ones are not checked. Returns each checked one's answers."""
    gate = against.gate
    allowed = int(against.n_texts * (1.0 - gate.min_greedy_match) + 1e-9)  # answers that may differ
    onnx_answers: dict[str, list[str]] = {}
    fastest_passing: str | None = None
    for precision in precisions:
        if fastest_passing is not None:
            report.results[precision] = ParityResult(
                checked=False, passed=None,
                note=f"not checked: {fastest_passing} is faster and answers like the trained model")
            continue
        fp32 = precision == "fp32"
        result, onnx_answers[precision] = _compare(precision, generators[precision], against,
                                                   None if fp32 else allowed, fp32_recorded if fp32 else None,
                                                   latency)
        if fp32:
            warnings.extend(_judge_fp32(result))
        else:
            warnings.extend(_judge_quantized(precision, result, against))
            if result.passed and _faster_than_fp32(precision, latency):
                fastest_passing = precision
        report.results[precision] = result
        laps.lap(precision)
    return onnx_answers


def _compare(precision: str, generator: Any, against: _Against, max_mismatches: int | None,
             recorded: list[TorchRun] | None, latency: LatencyReport) -> tuple[ParityResult, list[str]]:
    """One precision against torch: its result (checked, logit diff to 6 digits) and its answers
    as text; its latency figures go into ``latency``."""
    comparison = compare_generator(generator, against.prompts, against.torch_runs, against.max_new_tokens,
                                   against.gate.tie_margin, max_mismatches=max_mismatches, recorded=recorded)
    result = comparison.result
    answers = [generator.decode(ids) for ids in comparison.answers]
    latency.backends[f"onnx_{precision}"] = latency_figures(comparison.prefill_ms, comparison.step_ms)
    result.max_abs_logit_diff = float(f"{result.max_abs_logit_diff:.6g}")
    result.checked = True
    return result, answers


def _judge_fp32(result: ParityResult) -> list[str]:
    """fp32 passes with max |logit diff| under :data:`FP32_LOGIT_TOLERANCE` and every answer
    identical; the warning when it does not."""
    result.passed = result.max_abs_logit_diff < FP32_LOGIT_TOLERANCE and result.generation_match_rate == 1.0
    if result.passed:
        return []
    return [f"fp32 ONNX differs from torch: max |logit diff| {result.max_abs_logit_diff:.3g}, "
            f"match rate {result.generation_match_rate:.2f}"]


def _judge_quantized(precision: str, result: ParityResult, against: _Against) -> list[str]:
    """A quantized precision passes the gate when it answered every input; the warning when it does not."""
    gate = against.gate
    result.passed = not result.stopped_early and gate.passes(result)
    if result.passed:
        return []
    after = f" (stopped after {result.n_compared} of {against.n_texts} inputs)" if result.stopped_early else ""
    return [f"{precision} answers drift from the trained model: teacher-forced agreement "
            f"{result.teacher_forced_agreement or 0.0:.3f}, greedy match {result.generation_match_rate or 0.0:.2f}"
            f"{after} (gate {gate.min_teacher_forced} / {gate.min_greedy_match}): not served"]


def _faster_than_fp32(precision: str, latency: LatencyReport) -> bool:
    """Whether ``precision`` decodes faster than fp32 (only then is it worth serving)."""
    return (latency.backends[f"onnx_{precision}"].median_ms_per_token or float("inf")) < (
        latency.backends["onnx_fp32"].median_ms_per_token or 0.0)


def _add_speedups(latency: LatencyReport, onnx_answers: dict[str, list[str]]) -> None:
    """Each checked precision's speed-up over eager torch, where both were timed."""
    base = latency.backends["torch"].median_ms_per_token
    for precision in onnx_answers:
        value = latency.backends[f"onnx_{precision}"].median_ms_per_token
        if base and value:
            latency.speedups[f"speedup_{precision}_vs_torch"] = round(base / value, 3)


def _measured_speeds(probe_ms: dict[str, float], latency: LatencyReport,
                     onnx_answers: dict[str, list[str]]) -> dict[str, float]:
    """ms per token of each quantized precision: the probe's, replaced by the check's where timed."""
    speeds = dict(probe_ms)
    for p in onnx_answers:
        ms = latency.backends[f"onnx_{p}"].median_ms_per_token
        if p != "fp32" and ms:
            speeds[p] = ms
    return speeds


class LazySessions(dict[str, Any]):
    """Generators by precision, each opened (an ONNX Runtime session: a second or two) the first
    time it is asked for; iterating lists every precision, opened or not."""

    def __init__(self, precisions: list[str], open_session: Any) -> None:
        super().__init__()
        self.precisions = list(precisions)
        self.open_session = open_session

    def __missing__(self, precision: str) -> Any:
        if precision not in self.precisions:
            raise KeyError(precision)
        generator = self[precision] = self.open_session(precision)
        return generator

    def __iter__(self) -> Any:
        return iter(list(self.precisions))

    def __contains__(self, precision: object) -> bool:
        return precision in self.precisions

    def __delitem__(self, precision: str) -> None:
        self.precisions.remove(precision)
        super().pop(precision, None)

    def clear(self) -> None:
        self.precisions.clear()
        super().clear()


def _probe_ms(generator: Any, prompts: list[list[int]], steps: int = 6) -> float:
    """A quick median ms per decode step of ``generator`` (orders the candidates, fastest first)."""
    if not prompts:
        return 0.0
    state, logits = generator.start(prompts[0])
    timings = []
    for _ in range(steps):
        started = time.perf_counter()
        logits = generator.step(state, int(logits.argmax()))
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)

