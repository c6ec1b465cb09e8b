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

if TYPE_CHECKING:
    from core.exporter.candidates import Gate

logger = logging.getLogger(__name__)

__all__ = [
    "FIXED_PROMPTS",
    "ParityCheck",
    "TorchRun",
    "check_parity",
    "compare_generator",
    "measure_all_latency",
    "measure_latency",
    "parity_texts",
    "token_agreement",
    "torch_greedy",
]

FP32_LOGIT_TOLERANCE = 1e-3


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


def compare_generator(
    generator: Any,
    prompts: list[list[int]],
    torch_runs: list[TorchRun],
    max_new_tokens: int,
    tie_margin: float = 0.05,
) -> dict[str, Any]:
    """Compare an :class:`OnnxGenerator` with torch: logits along torch's path (teacher forced:
    each position gets torch's prefix), then free-running greedy answers.

    ``teacher_forced_agreement`` is the share of positions where both pick the same next token;
    positions where torch's two best logits are within ``tie_margin`` are ties and not counted.
    """
    import numpy as np

    max_diff = 0.0
    matches = 0
    agreements: list[float] = []
    answers: list[list[int]] = []
    agreed = counted = ties = 0
    for prompt, ref in zip(prompts, torch_runs, strict=True):
        state, logits = generator.start(prompt)
        for index, ref_logits in enumerate(ref.step_logits):
            candidate = np.asarray(logits, dtype=np.float32)
            max_diff = max(max_diff, float(np.max(np.abs(candidate - ref_logits))))
            top2 = np.partition(ref_logits, -2)[-2:]
            if abs(float(top2[1] - top2[0])) < tie_margin:
                ties += 1
            else:
                counted += 1
                agreed += int(int(np.argmax(candidate)) == int(np.argmax(ref_logits)))
            if index < len(ref.ids) and index + 1 < len(ref.step_logits):
                logits = generator.step(state, ref.ids[index])
        ids = generator.generate_ids(prompt, max_new_tokens)
        answers.append(ids)
        matches += int(ids == ref.ids)
        agreements.append(token_agreement(ref.ids, ids))
    n = len(prompts)
    return {
        "n_compared": n,
        "max_abs_logit_diff": max_diff,
        "generation_match_rate": matches / n if n else 1.0,
        "mean_token_agreement": sum(agreements) / n if n else 1.0,
        "teacher_forced_agreement": round(agreed / counted, 4) if counted else 1.0,
        "positions_compared": counted,
        "ties_skipped": ties,
        "answers": answers,
    }


def measure_latency(run_once: Any, prompts: list[list[int]], repeats: int = 1) -> dict[str, Any]:
    """Median milliseconds per generated token (decode steps) and per prefill.

    ``run_once(prompt) -> (prefill_ms, step_ms_list)``; the first prompt is run once more
    beforehand as a warm-up and not counted.
    """
    if prompts:
        run_once(prompts[0])
    steps: list[float] = []
    prefills: list[float] = []
    for _ in range(max(1, repeats)):
        for prompt in prompts:
            prefill_ms, step_ms = run_once(prompt)
            prefills.append(prefill_ms)
            steps.extend(step_ms)
    return {
        "median_ms_per_token": round(statistics.median(steps), 3) if steps else None,
        "median_prefill_ms": round(statistics.median(prefills), 3) if prefills else None,
        "n_tokens_timed": len(steps),
    }


# --------------------------------------------------------------------------- the whole check


@dataclass
class ParityCheck:
    """What :func:`check_parity` found: the report section, answers and warnings."""

    report: dict[str, Any]
    onnx_prompts: list[list[int]]
    torch_answers: list[str]
    onnx_answers: dict[str, list[str]]
    warnings: list[str]


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
) -> ParityCheck:
    """Torch greedy once per input, then every ONNX precision against it.

    fp32 passes with max |logit diff| < 1e-3 and every answer identical; a quantized precision
    passes ``gate`` (teacher-forced agreement and greedy match, see :mod:`core.exporter.candidates`),
    else it gets a warning and is not served.
    """
    from core.exporter.candidates import Gate

    gate = gate or Gate()
    reference = generators["fp32"]
    onnx_prompts = [reference.encode(t) for t in texts]
    torch_runs = [
        torch_greedy(model, architecture, ids, max_new_tokens, set(stop_ids), decoder_start_id) for ids in hf_prompts
    ]
    report: dict[str, Any] = {"max_new_tokens": max_new_tokens, "tokenizer_match": onnx_prompts == hf_prompts}
    warnings: list[str] = []
    if not report["tokenizer_match"]:
        warnings.append("tokenizer.json encodes prompts differently from the transformers tokenizer")
    onnx_answers: dict[str, list[str]] = {}
    for precision, generator in generators.items():
        result = compare_generator(generator, onnx_prompts, torch_runs, max_new_tokens, gate.tie_margin)
        onnx_answers[precision] = [generator.decode(ids) for ids in result.pop("answers")]
        result["max_abs_logit_diff"] = float(f"{result['max_abs_logit_diff']:.6g}")
        if precision == "fp32":
            result["passed"] = (
                result["max_abs_logit_diff"] < FP32_LOGIT_TOLERANCE and result["generation_match_rate"] == 1.0
            )
            if not result["passed"]:
                warnings.append(
                    f"fp32 ONNX differs from torch: max |logit diff| {result['max_abs_logit_diff']:.3g}, "
                    f"match rate {result['generation_match_rate']:.2f}"
                )
        else:
            result["passed"] = gate.passes(result)
            if not result["passed"]:
                warnings.append(
                    f"{precision} answers drift from the trained model: teacher-forced agreement "
                    f"{result['teacher_forced_agreement']:.3f}, greedy match {result['generation_match_rate']:.2f} "
                    f"(gate {gate.min_teacher_forced} / {gate.min_greedy_match}): not served"
                )
        report[precision] = result
    torch_answers = [reference.decode(run.ids) for run in torch_runs]
    return ParityCheck(report, onnx_prompts, torch_answers, onnx_answers, warnings)


def measure_all_latency(
    model: Any,
    architecture: str,
    generators: dict[str, Any],
    onnx_prompts: list[list[int]],
    hf_prompts: list[list[int]],
    stop_ids: list[int],
    decoder_start_id: int | None,
    max_new_tokens: int,
) -> dict[str, Any]:
    """Median ms per generated token for torch eager and each ONNX precision, in this run.

    Every backend generates exactly ``max_new_tokens`` per prompt (stop ids ignored) so they
    time the same number of steps.
    """
    import torch

    def torch_once(ids: list[int]) -> tuple[float, list[float]]:
        run = torch_greedy(
            model, architecture, ids, max_new_tokens, set(stop_ids), decoder_start_id,
            stop_at_eos=False, keep_logits=False,
        )
        return run.prefill_ms, run.step_ms

    def onnx_once(generator: Any) -> Any:
        from core.exporter.onnx_predict import load_runtime_module

        stats_type = load_runtime_module().GenerationStats

        def once(ids: list[int]) -> tuple[float, list[float]]:
            stats = stats_type()
            generator.generate_ids(ids, max_new_tokens, stop_at_eos=False, stats=stats)
            return stats.prefill_ms, stats.step_ms

        return once

    result: dict[str, Any] = {
        "unit": "milliseconds per generated token (median over decode steps)",
        "max_new_tokens": max_new_tokens,
        "torch_threads": torch.get_num_threads(),
        "torch": measure_latency(torch_once, hf_prompts),
    }
    for precision, generator in generators.items():
        result[f"onnx_{precision}"] = measure_latency(onnx_once(generator), onnx_prompts)
    base = result["torch"]["median_ms_per_token"]
    for precision in generators:
        value = result[f"onnx_{precision}"]["median_ms_per_token"]
        if base and value:
            result[f"speedup_{precision}_vs_torch"] = round(base / value, 3)
    return result


# --------------------------------------------------------------------------- which inputs

FIXED_PROMPTS = (
    "How do I reset my password?",
    "What is your refund policy?",
    "How can I contact support?",
    "Where can I find my order history?",
)


def parity_texts(
    train_root: Path, manifest: dict[str, Any], given: list[str] | None, limit: int = 12
) -> tuple[list[str], str]:
    """Inputs for parity: given ones, else up to half held-out records of the training run and
    the rest training records, else a few fixed prompts. Returns (texts, where from)."""
    from core.jsonio import read_json

    if given:
        return [str(t) for t in given][:limit], "given"
    report: dict[str, Any] = {}
    report_path = train_root / "training_report.json"
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
        texts = _read_inputs(data_path)
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
        return [str(row["input"]) for row in read_variants_jsonl(path) if row.get("split") == "unseen"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _held_out(texts: list[str], config: dict[str, Any]) -> list[str]:
    """The eval split of the training run, drawn exactly as the trainer draws it."""
    from core.training.evaluate import split_indices

    if not texts or not isinstance(config, dict):
        return []
    _, held = split_indices(len(texts), config.get("eval_split"), int(config.get("seed", 42)))
    return [texts[i] for i in held]


def _find_data_path(report: dict[str, Any], manifest: dict[str, Any]) -> Path | None:
    config = report.get("config") if isinstance(report.get("config"), dict) else {}
    for value in (report.get("data_path"), config.get("data_path"), manifest.get("data_path")):
        if value and Path(str(value)).is_file():
            return Path(str(value))
    return None


def _read_inputs(path: Path, limit: int = 100_000) -> list[str]:
    """The ``input`` of the first ``limit`` records (in file order), read line by line."""
    import json

    texts: list[str] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if len(texts) >= limit:
                    break
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "input" in record:
                    texts.append(str(record["input"]))
    except OSError:
        return []
    return texts
