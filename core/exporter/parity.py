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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.run_layout import LatencyReport, LatencyResult, ModelManifest, ParityReport, ParityResult

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
class Comparison:
    """What :func:`compare_generator` found: the figures of the report, and the generator's
    answers and timings (for the latency figures)."""

    result: ParityResult
    answers: list[list[int]]
    prefill_ms: list[float]
    step_ms: list[float]


@dataclass
class TorchRun:
    """Torch's greedy ids for one prompt, the next-token logits at every step, and timings."""

    ids: list[int]
    step_logits: list[Any] = field(default_factory=list)  # numpy float32 vectors
    prefill_ms: float = 0.0
    step_ms: list[float] = field(default_factory=list)


def _model_forward_kwargs(model: Any) -> tuple[str, bool]:
    """The name of the cache argument (``cache`` in transformers 5, formerly
    ``past_key_values``) and whether ``logits_to_keep`` is accepted."""
    import inspect

    params = inspect.signature(model.forward).parameters
    cache_name = "cache" if "cache" in params else "past_key_values"
    return cache_name, "logits_to_keep" in params


def _output_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def torch_greedy(
    model: Any,
    architecture: str,
    prompt_ids: list[int],
    max_new_tokens: int,
    stop_ids: set[int],
    decoder_start_id: int | None = None,
    stop_at_eos: bool = True,
    keep_logits: bool = True,
) -> TorchRun:
    """Greedy decoding with the torch model and its KV cache (the fair eager baseline)."""
    import torch

    cache_name, has_keep = _model_forward_kwargs(model)
    run = TorchRun(ids=[])
    if max_new_tokens <= 0:
        return run
    with torch.inference_mode():
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        started = time.perf_counter()
        if architecture == "seq2seq":
            encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=torch.ones_like(ids))
            mask = torch.ones_like(ids)
            start = torch.tensor([[decoder_start_id if decoder_start_id is not None else 0]], dtype=torch.long)
            out = model(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=start, use_cache=True)

            def next_out(token: int, cache: Any) -> Any:
                step_ids = torch.tensor([[token]], dtype=torch.long)
                return model(
                    encoder_outputs=encoder_outputs,
                    attention_mask=mask,
                    decoder_input_ids=step_ids,
                    use_cache=True,
                    **{cache_name: cache},
                )
        else:
            extra = {"logits_to_keep": 1} if has_keep else {}
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, **extra)
            length = len(prompt_ids)

            def next_out(token: int, cache: Any) -> Any:
                nonlocal length
                length += 1
                step_ids = torch.tensor([[token]], dtype=torch.long)
                mask = torch.ones((1, length), dtype=torch.long)
                return model(input_ids=step_ids, attention_mask=mask, use_cache=True, **{cache_name: cache}, **extra)

        logits = out.logits[0, -1]
        run.prefill_ms = (time.perf_counter() - started) * 1000
        while True:
            if keep_logits:
                run.step_logits.append(logits.float().numpy().copy())
            token = int(torch.argmax(logits))
            if stop_at_eos and token in stop_ids:
                break
            run.ids.append(token)
            if len(run.ids) >= max_new_tokens:
                break
            started = time.perf_counter()
            out = next_out(token, _output_cache(out))
            logits = out.logits[0, -1]
            run.step_ms.append((time.perf_counter() - started) * 1000)
    return run


def token_agreement(reference: list[int], candidate: list[int]) -> float:
    """Fraction of positions (over the longer sequence) where both have the same token."""
    longest = max(len(reference), len(candidate))
    if longest == 0:
        return 1.0
    same = sum(1 for a, b in zip(reference, candidate, strict=False) if a == b)
    return same / longest


def truncated(run: TorchRun, max_new_tokens: int) -> TorchRun:
    """``run`` as a greedy run of at most ``max_new_tokens`` would have been (a prefix of it)."""
    if len(run.ids) < max_new_tokens:
        return run
    return TorchRun(ids=run.ids[:max_new_tokens], step_logits=run.step_logits[:max_new_tokens],
                    prefill_ms=run.prefill_ms, step_ms=run.step_ms[: max(0, max_new_tokens - 1)])


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


def latency_figures(prefill_ms: list[float], step_ms: list[float]) -> LatencyResult:
    """Median milliseconds per generated token (decode steps) and per prefill."""
    return LatencyResult(
        median_ms_per_token=round(statistics.median(step_ms), 3) if step_ms else None,
        median_prefill_ms=round(statistics.median(prefill_ms), 3) if prefill_ms else None,
        n_tokens_timed=len(step_ms),
    )


def onnx_greedy(generator: Any, prompt: list[int], max_new_tokens: int) -> TorchRun:
    """The generator's greedy answer as ``generate_ids`` gives it, with the logits of every step
    (a :class:`TorchRun` of the ONNX side: same fields, same conventions) and its timings."""
    import numpy as np

    stop_ids = {int(i) for i in getattr(generator, "stop_ids", ())}
    context_full = getattr(generator, "_context_full", None)
    run = TorchRun(ids=[])
    if max_new_tokens <= 0:
        return run
    started = time.perf_counter()
    state, logits = generator.start(prompt)
    run.prefill_ms = (time.perf_counter() - started) * 1000
    while True:
        run.step_logits.append(np.asarray(logits, dtype=np.float32))
        token = int(np.argmax(logits))
        if token in stop_ids:
            break
        run.ids.append(token)
        if len(run.ids) >= max_new_tokens or (context_full is not None and context_full(state)):
            break
        started = time.perf_counter()
        logits = generator.step(state, token)
        run.step_ms.append((time.perf_counter() - started) * 1000)
    return run


def torch_logits_along(model: Any, architecture: str, prompt_ids: list[int], ids: list[int], stopped: bool,
                       decoder_start_id: int | None = None) -> list[Any]:
    """Torch's next-token logits after the prompt and each prefix of ``ids``, from one forward
    pass over the whole sequence: ``len(ids) + 1`` rows when the answer ``stopped`` on a stop
    token, else ``len(ids)`` (a :class:`TorchRun`'s ``step_logits`` for that answer)."""
    import torch

    rows = len(ids) + 1 if stopped else len(ids)
    with torch.inference_mode():
        if architecture == "seq2seq":
            source = torch.tensor([prompt_ids], dtype=torch.long)
            start = decoder_start_id if decoder_start_id is not None else 0
            target = torch.tensor([[start, *ids]], dtype=torch.long)
            logits = model(input_ids=source, attention_mask=torch.ones_like(source), decoder_input_ids=target).logits[0]
            first = 0
        else:
            sequence = torch.tensor([[*prompt_ids, *ids]], dtype=torch.long)
            logits = model(input_ids=sequence, attention_mask=torch.ones_like(sequence)).logits[0]
            first = len(prompt_ids) - 1
        return [row.float().numpy().copy() for row in logits[first:first + rows]]


def reference_runs(model: Any, architecture: str, fp32: Any, onnx_prompts: list[list[int]],
                   hf_prompts: list[list[int]], max_new_tokens: int, stop_ids: set[int],
                   decoder_start_id: int | None = None) -> tuple[list[TorchRun], list[TorchRun]]:
    """Torch's greedy run for every prompt, and fp32 ONNX's.

    Decoding token by token in eager torch is slow; the fp32 graph is fast and almost always
    takes torch's path. So fp32 answers first, then one torch forward pass over prompt + answer
    gives torch's logits at every position: where torch's own choice is fp32's token at each
    step (and a stop token where fp32 stopped), that answer *is* torch's greedy answer and those
    logits its steps. Anywhere else (or when the prompts were tokenized differently) torch
    decodes the prompt itself (:func:`torch_greedy`).
    """
    import numpy as np

    torch_runs: list[TorchRun] = []
    fp32_runs: list[TorchRun] = []
    for onnx_ids, hf_ids in zip(onnx_prompts, hf_prompts, strict=True):
        own = onnx_greedy(fp32, onnx_ids, max_new_tokens)
        fp32_runs.append(own)
        stopped = len(own.step_logits) > len(own.ids)
        if onnx_ids == hf_ids:
            rows = torch_logits_along(model, architecture, hf_ids, own.ids, stopped, decoder_start_id)
            choices = [int(np.argmax(row)) for row in rows]
            if choices[: len(own.ids)] == own.ids and (not stopped or choices[-1] in stop_ids):
                torch_runs.append(TorchRun(ids=list(own.ids), step_logits=rows))
                continue
        torch_runs.append(torch_greedy(model, architecture, hf_ids, max_new_tokens, stop_ids, decoder_start_id))
    return torch_runs, fp32_runs


def torch_latency(model: Any, architecture: str, hf_prompts: list[list[int]], max_new_tokens: int,
                  decoder_start_id: int | None = None, tokens: int = 20) -> tuple[int, LatencyResult]:
    """Eager torch's threads and ms per generated token (the baseline of every speed-up):
    ``tokens`` decode steps with the KV cache after the first prompt, stop tokens ignored, the
    first four a warm-up (the median of the rest is steady within a few per cent; torch has
    warmed up on the reference passes before)."""
    import torch

    if not hf_prompts:
        return torch.get_num_threads(), latency_figures([], [])
    run = torch_greedy(model, architecture, hf_prompts[0], min(tokens, max_new_tokens), set(), decoder_start_id,
                       stop_at_eos=False, keep_logits=False)
    return torch.get_num_threads(), latency_figures([run.prefill_ms], run.step_ms[4:] or run.step_ms)


# --------------------------------------------------------------------------- the whole check


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



# --------------------------------------------------------------------------- which inputs

FIXED_PROMPTS = (
    "How do I reset my password?",
    "What is your refund policy?",
    "How can I contact support?",
    "Where can I find my order history?",
)


def parity_texts(
    train_root: Path, manifest: ModelManifest, given: list[str] | None, limit: int = 12
) -> tuple[list[str], str]:
    """Inputs for parity: given ones, else up to half held-out records of the training run and
    the rest training records, else a few fixed prompts. Returns (texts, where from)."""
    from core.jsonio import read_json
    from core.run_layout import TRAINING_REPORT_FILE

    if given:
        return [str(t) for t in given][:limit], "given"
    report: dict[str, Any] = {}
    report_path = train_root / TRAINING_REPORT_FILE
    if report_path.is_file():
        try:
            loaded = read_json(report_path)
            report = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            report = {}
    for key in ("eval_inputs", "heldout_inputs"):
        values = report.get(key)
        if isinstance(values, list) and values:
            return [str(v) for v in values][:limit], f"training_report.{key}"
    data_path = _find_data_path(report, manifest)
    if data_path is not None:
        config = report.get("config") if isinstance(report.get("config"), dict) else {}
        texts = _read_inputs(data_path, columns=config.get("columns") or None)
        # Trained with question variants: every record trained, and the phrasings held out are
        # the questions asked in other words, where a quantized graph drifts first.
        unseen = _unseen_phrasings(train_root)
        held_out = unseen or _held_out(texts, report.get("config") or {})
        # Both kinds matter: held-out inputs (how it generalises) and training inputs (what it learned).
        trained = [t for t in texts if t not in set(held_out)]
        chosen = held_out[: limit // 2] + trained[: limit - min(len(held_out), limit // 2)]
        if chosen:
            kind = "held-out phrasings" if unseen else "held-out"
            return chosen[:limit], f"{min(len(held_out), limit // 2)} {kind} and training records of {data_path}"
    return list(FIXED_PROMPTS), "fixed prompts"


def _unseen_phrasings(train_root: Path) -> list[str]:
    """The phrasings a run with question variants held out (``variants.jsonl``), or []."""
    from core.run_layout import VARIANTS_FILE
    from core.training.variants import read_variants_jsonl

    path = train_root / VARIANTS_FILE
    if not path.is_file():
        return []
    try:
        return [row.input for row in read_variants_jsonl(path) if row.split == "unseen"]
    except (OSError, ValueError):
        return []


def _held_out(texts: list[str], config: dict[str, Any]) -> list[str]:
    """The eval split of the training run, drawn exactly as the trainer draws it."""
    from core.training.evaluate import split_indices

    if not texts or not isinstance(config, dict):
        return []
    _, held = split_indices(len(texts), config.get("eval_split"), int(config.get("seed", 42)))
    return [texts[i] for i in held]


def _find_data_path(report: dict[str, Any], manifest: ModelManifest) -> Path | None:
    config = report.get("config") if isinstance(report.get("config"), dict) else {}
    for value in (report.get("data_path"), config.get("data_path"), manifest.data_path):
        if value and Path(str(value)).is_file():
            return Path(str(value))
    return None


def _read_inputs(path: Path, limit: int = 100_000, columns: dict[str, str] | None = None) -> list[str]:
    """The question of the first ``limit`` records (in file order), of any dataset format; a
    conversation's last question. Rows that fit no format are skipped."""
    from itertools import islice

    from core.training.dataset import iter_conversations

    texts: list[str] = []
    try:
        for _, _, conversation in islice(iter_conversations(path, columns), limit):
            texts.append(conversation.question)
    except (OSError, ValueError):  # a DatasetError past the good rows: keep what was read
        pass
    return texts
