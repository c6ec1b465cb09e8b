"""The training recipe: what a real run uses for every hyper-parameter the user left unset.

TinyForgeAI's LoRA defaults (r 8, alpha 16, q/v, lr 2e-4, 3 epochs; a dry run still records r, alpha
and q/v) train too little of a small model to learn a dataset's facts; measured on a 36-record
support set (benchmarks/data/), LoRA on every linear projection with r 16 / alpha 32 at lr 2e-3 for
40 optimizer steps reproduces the training answers (at 1e-3 the loss is still 0.2 after 32 steps and
a third of the answers drift). Full fine-tuning moves every weight, so it needs a twenty times
smaller rate. Each choice carries its reason; the run logs and records them.
Pure Python: the GUI computes the same recipe before a run without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.training.config import TrainConfig

__all__ = ["Recipe", "choose_recipe", "resolve_config", "steps_per_epoch"]

LORA_RANK = 16
LORA_ALPHA_PER_RANK = 2.0
LORA_LEARNING_RATE = 2e-3
# Dropout on the adapters' inputs took a third of a LoRA step on a CPU (profiled on the starter
# model: a fresh random mask per adapter, seven per layer) and a few hundred steps on a small
# dataset do not overfit in a way it would prevent: the answers are meant to be reproduced.
LORA_DROPOUT = 0.0
FULL_LEARNING_RATE = 1e-4
DEFAULT_EPOCHS = 3.0
MIN_STEPS = 40  # a small dataset needs this many optimizer steps to be learned
MAX_STEPS = 1000  # a large one is capped: the run stays minutes, not hours


@dataclass(frozen=True)
class Recipe:
    """The values a run uses; ``reasons`` names each value the recipe chose (not the user)."""

    lora_r: int | None
    lora_alpha: float | None
    lora_targets: list[str] | None
    lora_dropout: float | None
    learning_rate: float
    epochs: float
    max_steps: int  # -1: run for ``epochs``
    total_steps: int
    reasons: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the log and the window: the chosen values and why."""
        if not self.reasons:
            return "recipe: every hyper-parameter set by you"
        return "recipe: " + "; ".join(f"{name} {reason}" for name, reason in self.reasons.items())

    def as_record(self) -> dict[str, object]:
        """The recipe as stored in ``run.json`` and ``training_report.json``."""
        return {
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_targets": self.lora_targets,
            "lora_dropout": self.lora_dropout,
            "learning_rate": self.learning_rate,
            "epochs": self.epochs,
            "max_steps": self.max_steps,
            "total_steps": self.total_steps,
            "chosen": dict(self.reasons),
        }


def steps_per_epoch(n_train: int, batch_size: int, grad_accum: int = 1, world_size: int = 1) -> int:
    """Optimizer steps in one pass over ``n_train`` records (the HF Trainer's count)."""
    batches = math.ceil(n_train / (batch_size * world_size))
    return max(1, batches // grad_accum)


def choose_recipe(config: TrainConfig, n_train: int, all_linear: list[str] | None = None,
                  world_size: int = 1) -> Recipe:
    """Fill what ``config`` leaves unset (None) from the data size and the model's modules.

    ``all_linear`` is the model's linear projections (LoRA targets when none are named);
    without it the targets stay None, meaning "decided when the model's modules are known".
    """
    reasons: dict[str, str] = {}
    lora = config.lora
    r = alpha = dropout = None
    targets = list(lora.target_modules) if lora.target_modules else None
    if lora.enabled:
        r = lora.r
        if r is None:
            r = LORA_RANK
            reasons["LoRA rank"] = f"{r} (enough capacity for a dataset's facts at this model size)"
        alpha = lora.alpha
        if alpha is None:
            alpha = LORA_ALPHA_PER_RANK * r
            reasons["LoRA alpha"] = f"{alpha:g} (2 x rank)"
        dropout = lora.dropout
        if dropout is None:
            dropout = LORA_DROPOUT
            reasons["LoRA dropout"] = f"{dropout:g} (dropout would cost a third of each CPU step)"
        if targets is None and all_linear:
            targets = list(all_linear)
            reasons["LoRA targets"] = f"all {len(targets)} linear projections ({', '.join(targets)})"
    lr = config.learning_rate
    if lr is None:
        lr = LORA_LEARNING_RATE if lora.enabled else FULL_LEARNING_RATE
        mode = "LoRA adapters" if lora.enabled else "full fine-tuning (every weight moves)"
        reasons["learning rate"] = f"{lr:g} (for {mode})"
    per_epoch = steps_per_epoch(n_train, config.batch_size, config.grad_accum, world_size)
    epochs, max_steps = config.epochs, config.max_steps
    if max_steps > 0:
        total = max_steps
        epochs = epochs if epochs is not None else DEFAULT_EPOCHS
    elif epochs is not None:
        total = max(1, math.ceil(epochs * per_epoch))
    else:
        epochs = DEFAULT_EPOCHS
        total = max(1, math.ceil(epochs * per_epoch))
        if total < MIN_STEPS:
            epochs = float(math.ceil(MIN_STEPS / per_epoch))
            total = math.ceil(epochs * per_epoch)
            reasons["epochs"] = (f"{epochs:g} = {total} steps ({n_train} records make {per_epoch} step(s) "
                                 f"per epoch; a small dataset needs at least {MIN_STEPS} steps)")
        elif total > MAX_STEPS:
            max_steps = total = MAX_STEPS
            reasons["steps"] = f"{MAX_STEPS} (capped: {DEFAULT_EPOCHS:g} epochs of {n_train} records would take longer)"
        else:
            reasons["epochs"] = f"{epochs:g} = {total} steps"
    return Recipe(r, alpha, targets, dropout, lr, float(epochs), max_steps, total, reasons)


def resolve_config(config: TrainConfig, recipe: Recipe) -> TrainConfig:
    """``config`` with the recipe's values filled in: what the run actually uses."""
    lora = config.lora
    if lora.enabled:
        lora = lora.model_copy(update={"r": recipe.lora_r, "alpha": recipe.lora_alpha,
                                       "dropout": recipe.lora_dropout, "target_modules": recipe.lora_targets})
    return config.model_copy(update={"lora": lora, "learning_rate": recipe.learning_rate,
                                     "epochs": recipe.epochs, "max_steps": recipe.max_steps})
