"""The defaults and limits of :class:`core.options.TrainConfig`'s fields, as plain data.

Written once, here: ``TrainConfig`` builds its pydantic ``Field``s from these, ``foremforge train``'s
flags read ``TrainConfig.model_fields``, and the window's options form reads this module, which
imports nothing (the form is built before the first paint, and pydantic costs ~100 ms there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Limits:
    """A field's default and bounds (pydantic's ``ge`` / ``gt`` / ``lt``; None: unbounded)."""

    default: Any
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None

    def bounds(self) -> dict[str, float]:
        """The bounds as ``Field`` keyword arguments."""
        return {name: value for name, value in (("ge", self.ge), ("gt", self.gt), ("lt", self.lt))
                if value is not None}


# LoRA: None means "the recipe decides" (core.training.recipe) for a real run and TinyForgeAI's
# defaults (r 8, alpha 16, q,v; core.training.peft_adapter) for a dry run's stub; dropout None is
# the recipe's 0.
LORA_R = Limits(None, ge=1)
LORA_ALPHA = Limits(None, gt=0)
LORA_DROPOUT = Limits(None, ge=0, lt=1)

# Training. epochs / learning_rate None: chosen by the recipe from the mode and the data size.
EPOCHS = Limits(None, gt=0)
MAX_STEPS = Limits(-1, ge=-1)  # -1: run for ``epochs``
LEARNING_RATE = Limits(None, gt=0)
BATCH_SIZE = Limits(8, ge=1)
GRAD_ACCUM = Limits(1, ge=1)
MAX_LENGTH = Limits(256, ge=8)
EVAL_SPLIT = Limits(None, ge=0, lt=1)  # None: 0.1 with >= 10 records, else 0
# Model-written rephrasings per question (core.training.variants). None: the recipe's (4, with
# surface variants); 0: no variants at all, the user's records only (and a held-out record split).
VARIANTS = Limits(None, ge=0, lt=33)
SEED = Limits(42)
LOGGING_STEPS = Limits(1, ge=1)
DEVICE = Limits("auto")
PRECISION = Limits("auto")
