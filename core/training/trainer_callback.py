"""The HF Trainer's callback of a real training: trainer hooks as events, and the cancel poll.

After every optimizer step the callback emits ``Progress`` (with an ETA) and polls the cancel
token (under ``torchrun`` the max over ranks, so every rank stops at the same step); a cancel
sets ``control.should_training_stop`` and ``should_save``, so the Trainer ends with a
checkpoint. Logged losses, the learning rate and the token rate become ``Metric`` events.
Importing this module loads no transformers: the class is defined when it is made.
"""

from __future__ import annotations

import time
from typing import Any

from core.events import CancelToken, EventCallback, Log, Metric, Progress

__all__ = ["METRIC_KEYS", "format_seconds", "make_callback", "should_cancel"]

# The trainer log's keys that become Metric events.
METRIC_KEYS = ("loss", "eval_loss", "learning_rate", "epoch", "grad_norm")


def make_callback(emit: EventCallback, token: CancelToken, collator: Any, world_size: int) -> Any:
    """A ``TrainerCallback`` that turns trainer hooks into events and polls the cancel token after
    each optimizer step (``control.should_training_stop`` + a checkpoint); its ``cancelled``
    says whether the run was cancelled. ``collator.train_tokens`` counts the tokens trained."""
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        def __init__(self) -> None:
            self.cancelled = False
            self.t0 = time.time()
            self.first_step = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.t0 = time.time()
            self.first_step = state.global_step
            collator.train_tokens = 0
            emit(Progress("train", state.global_step, state.max_steps, "starting"))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step, total = state.global_step, state.max_steps
            done = step - self.first_step
            eta = (time.time() - self.t0) / done * (total - step) if done > 0 else 0.0
            emit(Progress("train", step, total, f"ETA {format_seconds(eta)}"))
            if should_cancel(token, world_size):
                self.cancelled = True
                control.should_training_stop = True
                control.should_save = True
                emit(Log(f"cancel requested: saving a checkpoint at step {step}", "warning"))

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            values = {k: float(v) for k, v in (logs or {}).items()
                      if k in METRIC_KEYS and isinstance(v, int | float)}
            if "loss" in values:
                elapsed = time.time() - self.t0
                if elapsed > 0:
                    values["tokens_per_second"] = collator.train_tokens * world_size / elapsed
            if set(values) - {"epoch"}:
                emit(Metric(int(state.global_step), values))

    return EventCallback()


def should_cancel(token: CancelToken, world_size: int) -> bool:
    """The token's flag; under torchrun the max over ranks, so every rank stops at the same step."""
    flag = token.cancelled
    if world_size > 1:
        import torch
        import torch.distributed as dist

        if dist.is_initialized():
            tensor = torch.tensor([1 if flag else 0], dtype=torch.long)
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            flag = bool(tensor.item())
    return flag


def format_seconds(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS`` (negative as 0)."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
