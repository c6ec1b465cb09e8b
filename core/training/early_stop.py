"""Train as long as it helps: keep the best weights by the held-out loss, stop when it stalls.

With question variants a fixed step count is either too short or wasted. When the recipe
chose the run's length, the trainer evaluates the held-out phrasings' loss about
:data:`EVALS_PER_RUN` times; the trainable weights at the best loss are kept in memory (a LoRA
adapter is a few MB) and put back at the end when the last loss is clearly worse, and the run
stops once the loss has not improved for :data:`PATIENCE` evaluations in a row (never before
:data:`MIN_FRACTION` of its steps).
"""

from __future__ import annotations

import logging
from typing import Any

from core.events import EventCallback, Log

logger = logging.getLogger(__name__)

__all__ = ["EVALS_PER_RUN", "MIN_FRACTION", "PATIENCE", "make_early_stop"]

EVALS_PER_RUN = 10
PATIENCE = 3
MIN_FRACTION = 0.6  # a stall early in a run is often a plateau before the facts settle
_MIN_IMPROVEMENT = 0.005  # relative: smaller changes are noise on a few dozen phrasings
# The best weights come back only when the last ones are clearly worse: a loss within this
# share of the best is noise, and the later weights have learned the training answers better.
_CLEARLY_WORSE = 1.1


def make_early_stop(model: Any, total_steps: int, split: str, emit: EventCallback) -> Any:
    """A ``TrainerCallback`` keeping the best trainable weights of ``model`` (see the module);
    ``split`` names what the loss is measured on. Defined lazily: importing this module loads
    no transformers."""
    what = {"unseen": "held-out phrasings'", "eval": "held-out records'"}.get(split, split)
    from transformers import TrainerCallback

    class BestWeights(TrainerCallback):
        def __init__(self) -> None:
            self.best_loss: float | None = None
            self.last_loss: float | None = None
            self.best_step = 0
            self.best: dict[str, Any] | None = None
            self.bad = 0
            self.stopped_at: int | None = None
            self.reason = ""

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        **kwargs: Any) -> None:
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            step = int(state.global_step)
            self.last_loss = float(loss)
            if self.best_loss is None or loss < self.best_loss * (1 - _MIN_IMPROVEMENT):
                self.best_loss, self.best_step, self.bad = float(loss), step, 0
                self.best = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()
                             if p.requires_grad}
                return
            self.bad += 1
            if self.bad >= PATIENCE and step >= MIN_FRACTION * total_steps and step < total_steps:
                self.stopped_at = step
                self.reason = (f"stopped at step {step} of {total_steps}: the {what} loss has not "
                               f"improved on {self.best_loss:.3f} (step {self.best_step}) for {self.bad} checks")
                emit(Log(self.reason))
                control.should_training_stop = True

        def restore_best(self, trained: Any) -> None:
            """Put the best weights back when the last ones are clearly worse (said in the log)."""
            if self.best is None or self.best_loss is None or self.last_loss is None:
                return
            last = self.stopped_at or total_steps
            if self.best_step >= last or self.last_loss <= self.best_loss * _CLEARLY_WORSE:
                return
            import torch

            with torch.no_grad():
                for name, param in trained.named_parameters():
                    if name in self.best:
                        param.copy_(self.best[name].to(param.device, param.dtype))
            emit(Log(f"kept the weights of step {self.best_step}, where the {what} loss was lowest "
                     f"({self.best_loss:.3f})"))
            self.best = None

        def record(self) -> dict[str, Any]:
            """``training_report.json``'s ``early_stopping``."""
            return {"split": split, "best_step": self.best_step, "best_loss": self.best_loss, "last_loss": self.last_loss,
                    "stopped_at": self.stopped_at, "total_steps": total_steps,
                    "reason": self.reason or f"ran all {total_steps} steps; kept step {self.best_step}"}

    return BestWeights()
