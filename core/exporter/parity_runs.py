"""How each side of the parity check answers and how fast: torch eager and an ONNX generator.

Both run the same greedy loop with a KV cache, so the comparison is fair: torch eager under
``torch.inference_mode`` (prefill once, then one token per step) versus the service's
:class:`OnnxGenerator`. A :class:`TorchRun` holds either side's answer, the next-token logits
of every step and the timings the latency figures come from.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.run_layout import LatencyResult

__all__ = [
    "TorchRun",
    "latency_figures",
    "onnx_greedy",
    "reference_runs",
    "torch_greedy",
    "torch_latency",
    "torch_logits_along",
    "truncated",
]


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

    forward_kwargs = _model_forward_kwargs(model)
    run = TorchRun(ids=[])
    if max_new_tokens <= 0:
        return run
    with torch.inference_mode():
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        started = time.perf_counter()
        out, next_out = _prefill(model, architecture, ids, decoder_start_id, forward_kwargs)
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


def _prefill(model: Any, architecture: str, ids: Any, decoder_start_id: int | None,
             forward_kwargs: tuple[str, bool]) -> tuple[Any, Callable[[int, Any], Any]]:
    """The model's output on the prompt ``ids`` (a ``[1, n]`` tensor) and the function that
    takes one more token with the cache (the encoder's output kept, for seq2seq);
    ``forward_kwargs`` as :func:`_model_forward_kwargs` gives them."""
    import torch

    cache_name, has_keep = forward_kwargs
    if architecture == "seq2seq":
        encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=torch.ones_like(ids))
        mask = torch.ones_like(ids)
        start = torch.tensor([[decoder_start_id if decoder_start_id is not None else 0]], dtype=torch.long)
        out = model(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=start, use_cache=True)

        def next_decoder_out(token: int, cache: Any) -> Any:
            step_ids = torch.tensor([[token]], dtype=torch.long)
            return model(
                encoder_outputs=encoder_outputs,
                attention_mask=mask,
                decoder_input_ids=step_ids,
                use_cache=True,
                **{cache_name: cache},
            )

        return out, next_decoder_out
    extra = {"logits_to_keep": 1} if has_keep else {}
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, **extra)
    length = ids.shape[1]

    def next_out(token: int, cache: Any) -> Any:
        nonlocal length
        length += 1
        step_ids = torch.tensor([[token]], dtype=torch.long)
        mask = torch.ones((1, length), dtype=torch.long)
        return model(input_ids=step_ids, attention_mask=mask, use_cache=True, **{cache_name: cache}, **extra)

    return out, next_out


def truncated(run: TorchRun, max_new_tokens: int) -> TorchRun:
    """``run`` as a greedy run of at most ``max_new_tokens`` would have been (a prefix of it)."""
    if len(run.ids) < max_new_tokens:
        return run
    return TorchRun(ids=run.ids[:max_new_tokens], step_logits=run.step_logits[:max_new_tokens],
                    prefill_ms=run.prefill_ms, step_ms=run.step_ms[: max(0, max_new_tokens - 1)])


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

