"""A training step in parts: a batch too long for the activation budget runs as row groups.

A training step keeps every layer's activations until its backward pass; on the starter model in
fp32 that is about 1.8 MB a token (measured: 1.44 MB saved for the backward, the rest the
backward's own buffers), so a batch of 8 records of 100 tokens holds 1.4 GB on top of the model.
Here a batch whose padded size exceeds :func:`max_step_tokens` runs as a few groups of rows, with
a backward after each: the loss of each part is divided by the whole batch's answer-token count,
so the gradients add up to the whole batch's and the optimizer still steps once, while peak
memory follows the budget instead of the longest batch. Each part is one more pass over the
weights: a default fp32 run of the starter (every step in two or more parts) trained 10-14% longer.
"""

from __future__ import annotations

import math
import os
from typing import Any

__all__ = ["STEP_TOKENS_ENV", "activation_budget", "activation_bytes_per_token", "max_step_tokens", "run_step_tokens",
           "split_batch", "step_tokens_from_env"]

STEP_TOKENS_ENV = "TINYFORGE_STEP_TOKENS"  # a run's own limit; 0: whole batches (benchmarks' baseline)

# A part's activations get what a run may take besides the weights and everything else: measured
# on the starter model in fp32 (a default LoRA run, 266-token parts), the libraries, optimizer,
# kernels and heap took about 0.95 GiB beside 0.5 GiB of weights and 0.45 GiB of activations.
PEAK_GOAL_BYTES = 2 * 2**30  # a default run of the starter model on a CPU, fp32 or bf16
RUN_OVERHEAD_BYTES = 2**30
MIN_BUDGET_BYTES = 512 * 2**20  # a larger model gets no less (it needs the RAM anyway)
MIN_STEP_TOKENS = 128  # below this a part's matmuls get too small to be worth it on a CPU


def activation_budget(weight_bytes: int) -> int:
    """The bytes one part's activations may take beside ``weight_bytes`` of model weights: the
    starter in fp32 (0.5 GiB of weights) gets 0.5 GiB, in bf16 (half the weights) 0.75 GiB."""
    return max(MIN_BUDGET_BYTES, PEAK_GOAL_BYTES - RUN_OVERHEAD_BYTES - weight_bytes)


def activation_bytes_per_token(model_config: Any, precision: str) -> int:
    """An estimate of the bytes one token keeps through a training step: per layer about ten
    hidden-size and four intermediate-size vectors (norm inputs, q, k, v, attention output and
    weights; the MLP's gate, up, activation and product), plus the log-probabilities and
    gradients of the head for an answer token (fp32 whatever the precision). Checked against
    the starter model: 2.0 MB estimated vs 1.8 MB measured (fp32, LoRA on all projections)."""
    text = getattr(model_config, "text_config", None) or model_config
    hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "d_model", 0) or 0)
    intermediate = int(getattr(text, "intermediate_size", 0) or getattr(text, "d_ff", 0) or 4 * hidden)
    layers = int(getattr(text, "num_hidden_layers", 0) or getattr(text, "num_layers", 0) or 0)
    layers += int(getattr(text, "num_decoder_layers", 0) or 0)
    vocab = int(getattr(text, "vocab_size", 0) or 0)
    width = 2 if precision in ("bf16", "fp16") else 4
    return layers * (10 * hidden + 4 * intermediate) * width + 3 * vocab * 4


def max_step_tokens(model_config: Any, precision: str, weight_bytes: int) -> int:
    """The most padded tokens one forward and backward pass should hold."""
    per_token = activation_bytes_per_token(model_config, precision)
    if per_token <= 0:
        return 0  # unknown architecture: never split
    return max(MIN_STEP_TOKENS, activation_budget(weight_bytes) // per_token)


def step_tokens_from_env() -> int | None:
    """:data:`STEP_TOKENS_ENV` as a limit (negative reads as 0), or None when it is not set;
    a ``ValueError`` (one line) when it is not a whole number. A run reads it in its plan,
    before any model loads, so a malformed value fails at once."""
    wanted = os.environ.get(STEP_TOKENS_ENV, "").strip()
    if not wanted:
        return None
    try:
        return max(0, int(wanted))
    except ValueError:
        raise ValueError(f"{STEP_TOKENS_ENV} must be a whole number of tokens (0: whole batches), "
                         f"not {wanted!r}") from None


def run_step_tokens(model: Any, precision: str, device: str) -> int:
    """The limit for a run of ``model`` (its weights as they train, e.g. a bf16 base):
    :data:`STEP_TOKENS_ENV` when set (:func:`step_tokens_from_env`), else the budget's on a CPU
    (its memory is the machine's RAM) and 0 on a GPU, which keeps whole batches."""
    wanted = step_tokens_from_env()
    if wanted is not None:
        return wanted
    if device != "cpu":
        return 0
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return max_step_tokens(model.config, precision, weight_bytes)


def split_batch(inputs: dict[str, Any], max_tokens: int) -> list[dict[str, Any]]:
    """``inputs`` as consecutive groups of rows of at most ``max_tokens`` padded tokens where a
    row allows it (a single row is never cut); one part, ``inputs`` itself, when the batch fits
    or ``max_tokens`` is 0. Every part keeps the batch's width: cutting each part's padding
    made new matmul shapes for every part and oneDNN rebuilt its kernels (20% slower steps)."""
    ids = inputs["input_ids"]
    rows, width = int(ids.shape[0]), int(ids.shape[1])
    if max_tokens <= 0 or rows < 2 or rows * width <= max_tokens:
        return [inputs]
    parts = min(rows, math.ceil(rows * width / max_tokens))
    size = math.ceil(rows / parts)
    return [{key: _rows(value, start, size, rows) for key, value in inputs.items()} for start in range(0, rows, size)]


def _rows(value: Any, start: int, size: int, rows: int) -> Any:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 0 and int(shape[0]) == rows:
        return value[start:start + size]
    return value
