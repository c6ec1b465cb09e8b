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
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "TorchRun",
    "compare_generator",
    "measure_latency",
    "token_agreement",
    "torch_greedy",
]

FP32_LOGIT_TOLERANCE = 1e-3
INT8_MIN_MATCH_RATE = 0.9


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
) -> dict[str, Any]:
    """Compare an :class:`OnnxGenerator` with torch: logits along torch's path, then answers."""
    import numpy as np

    max_diff = 0.0
    matches = 0
    agreements: list[float] = []
    answers: list[list[int]] = []
    for prompt, ref in zip(prompts, torch_runs, strict=True):
        state, logits = generator.start(prompt)
        for index, ref_logits in enumerate(ref.step_logits):
            max_diff = max(max_diff, float(np.max(np.abs(np.asarray(logits, dtype=np.float32) - ref_logits))))
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
