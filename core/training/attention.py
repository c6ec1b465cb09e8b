"""Which attention kernel a CPU training run uses: plain (eager) attention for short records.

Profiled on the starter model (LoRA, batch 8, bf16, 2 cores): with records of about 80 tokens
the backward of torch's fused CPU attention (SDPA) took 16% of a step and eager attention made
the step 17% faster; at about 190 tokens the two were equal and eager held 0.5 GB more (it
keeps each layer's T x T attention weights for the backward). Generation and export keep the
model's own kernel: this applies to the training loop only.
"""

from __future__ import annotations

__all__ = ["EAGER_MAX_TOKENS", "training_attention"]

EAGER_MAX_TOKENS = 128  # the longest record (prompt + answer) for which eager attention wins


def training_attention(device: str, architecture: str, longest_tokens: int) -> str | None:
    """``"eager"`` where it trains faster (a CPU, a causal model, records up to
    :data:`EAGER_MAX_TOKENS` tokens), else None: keep the model's default kernel."""
    if device == "cpu" and architecture == "causal" and 0 < longest_tokens <= EAGER_MAX_TOKENS:
        return "eager"
    return None
