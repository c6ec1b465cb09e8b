"""Parity and latency of an ONNX export against the torch model it came from.

Both sides run the same greedy loop with a KV cache, so the comparison is fair: torch eager
under ``torch.inference_mode`` (prefill once, then one token per step) versus the service's
:class:`OnnxGenerator`. Logits are compared step by step along torch's greedy path
(teacher-forced), answers token by token.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.exporter.parity_compare import Comparison, compare_generator, token_agreement
from core.exporter.parity_inputs import FIXED_PROMPTS, parity_texts
from core.exporter.parity_runs import (
    TorchRun,
    latency_figures,
    onnx_greedy,
    reference_runs,
    torch_greedy,
    torch_latency,
    torch_logits_along,
    truncated,
)
from core.run_layout import LatencyReport, ParityReport, ParityResult

if TYPE_CHECKING:
    from core.exporter.candidates import Gate

logger = logging.getLogger(__name__)

__all__ = [
    "FIXED_PROMPTS",
    "Comparison",
    "LazySessions",
    "ParityCheck",
    "TorchRun",
    "check_parity",
    "compare_generator",
    "latency_figures",
    "onnx_greedy",
    "reference_runs",
    "torch_latency",
    "torch_logits_along",
    "parity_texts",
    "token_agreement",
    "torch_greedy",
    "truncated",
]

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
    from core.run_layout import TOKENIZER_FILE

    gate = gate or Gate()
    reference = generators["fp32"]
    onnx_prompts = [reference.encode(t) for t in texts]
    longest = max(max_new_tokens, reference_tokens or 0)
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    full_runs, fp32_runs = reference_runs(model, architecture, reference, onnx_prompts, hf_prompts, longest,
                                          set(stop_ids), decoder_start_id)
    torch_runs = [truncated(run, max_new_tokens) for run in full_runs]
    recorded = {"fp32": [truncated(run, max_new_tokens) for run in fp32_runs]}
    report = ParityReport(max_new_tokens=max_new_tokens, tokenizer_match=onnx_prompts == hf_prompts)
    warnings: list[str] = []
    if not report.tokenizer_match:
        warnings.append(f"{TOKENIZER_FILE} encodes prompts differently from the transformers tokenizer")
    lap("reference answers (fp32 graph, one torch pass per input)")
    threads, torch_figures = torch_latency(model, architecture, hf_prompts, max_new_tokens, decoder_start_id)
    latency = LatencyReport(unit="milliseconds per generated token (median over decode steps)",
                            max_new_tokens=max_new_tokens, torch_threads=threads, backends={"torch": torch_figures})
    lap("torch latency")
    onnx_answers: dict[str, list[str]] = {}
    allowed = int(len(texts) * (1.0 - gate.min_greedy_match) + 1e-9)  # answers that may differ
    candidates = [p for p in generators if p != "fp32"]
    probe_ms: dict[str, float] = {}
    if speed_order is not None and set(speed_order) == set(candidates):
        quantized = list(speed_order)
    else:
        probe_ms = {p: _probe_ms(generators[p], onnx_prompts) * 1000 for p in candidates}
        quantized = sorted(candidates, key=lambda p: probe_ms[p])
    lap("ordering the candidates")
    fastest_passing: str | None = None
    for precision in ["fp32", *quantized]:
        if fastest_passing is not None:
            report.results[precision] = ParityResult(
                checked=False, passed=None,
                note=f"not checked: {fastest_passing} is faster and answers like the trained model")
            continue
        generator = generators[precision]
        comparison = compare_generator(generator, onnx_prompts, torch_runs, max_new_tokens, gate.tie_margin,
                                       max_mismatches=None if precision == "fp32" else allowed,
                                       recorded=recorded.get(precision))
        result = comparison.result
        onnx_answers[precision] = [generator.decode(ids) for ids in comparison.answers]
        figures = latency.backends[f"onnx_{precision}"] = latency_figures(comparison.prefill_ms, comparison.step_ms)
        result.max_abs_logit_diff = float(f"{result.max_abs_logit_diff:.6g}")
        result.checked = True
        if precision == "fp32":
            result.passed = result.max_abs_logit_diff < FP32_LOGIT_TOLERANCE and result.generation_match_rate == 1.0
            if not result.passed:
                warnings.append(
                    f"fp32 ONNX differs from torch: max |logit diff| {result.max_abs_logit_diff:.3g}, "
                    f"match rate {result.generation_match_rate:.2f}"
                )
        else:
            result.passed = not result.stopped_early and gate.passes(result)
            faster_than_fp32 = (figures.median_ms_per_token or float("inf")) < (
                latency.backends["onnx_fp32"].median_ms_per_token or 0.0)
            if result.passed and faster_than_fp32:
                fastest_passing = precision
            if not result.passed:
                after = f" (stopped after {result.n_compared} of {len(texts)} inputs)" if result.stopped_early else ""
                warnings.append(
                    f"{precision} answers drift from the trained model: teacher-forced agreement "
                    f"{result.teacher_forced_agreement or 0.0:.3f}, greedy match {result.generation_match_rate or 0.0:.2f}"
                    f"{after} (gate {gate.min_teacher_forced} / {gate.min_greedy_match}): not served"
                )
        report.results[precision] = result
        lap(precision)
    report.seconds = seconds
    base = latency.backends["torch"].median_ms_per_token
    for precision in onnx_answers:
        value = latency.backends[f"onnx_{precision}"].median_ms_per_token
        if base and value:
            latency.speedups[f"speedup_{precision}_vs_torch"] = round(base / value, 3)
    torch_answers = [reference.decode(run.ids) for run in torch_runs]
    speeds = {p: probe_ms[p] for p in probe_ms}
    for p in onnx_answers:
        ms = latency.backends[f"onnx_{p}"].median_ms_per_token
        if p != "fp32" and ms:
            speeds[p] = ms
    return ParityCheck(report, onnx_prompts, torch_answers, onnx_answers, warnings, latency, full_runs, speeds)


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

