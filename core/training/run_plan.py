"""A real training's plan: everything checked that can fail before any weights load.

:func:`plan_run` reads the dataset, resolves the base model and its LoRA targets, checks the
output folder, the resume checkpoint, the device and the split, and picks the recipe; each
problem raises :class:`~core.training.errors.TrainingError` within seconds, in the order a user
would fix it. The :class:`RunPlan` it returns is what :mod:`core.training.hf_train` trains from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.events import EventCallback, Log, StageStarted, noop
from core.jsonio import read_json
from core.run_layout import CHECKPOINTS_DIR, TRAINING_REPORT_FILE
from core.training.config import TrainConfig
from core.training.errors import TrainingError
from core.training.evaluate import split_indices
from core.training.outputs import check_output_dir, check_replaceable_output
from core.training.recipe import Recipe, choose_recipe, resolve_config
from core.training.records import load_records

if TYPE_CHECKING:
    from core.models.registry import BaseModelSpec
    from core.training.precision import PrecisionChoice

__all__ = [
    "RunPlan",
    "check_device",
    "choose_run_recipe",
    "dist_rank",
    "dist_world_size",
    "find_checkpoint",
    "plan_run",
    "resolve_device",
    "resolve_precision",
]


@dataclass
class RunPlan:
    """What the cheap validation decided, before anything heavy loads."""

    config: TrainConfig
    records: list[tuple[str, str]]
    n_records: int
    sha256: str
    spec: BaseModelSpec
    lora_targets: list[str] | None
    train_idx: list[int]
    eval_idx: list[int]
    output: Path
    resume_from: Path | None
    rank: int = 0
    world_size: int = 1
    recipe: Recipe | None = None
    pairs: Any = None  # core.training.phrasings.RunPairs, once the base model is loaded


def dist_rank() -> int:
    """This process's rank under ``torchrun`` (0 outside it)."""
    return int(os.environ.get("RANK", "0"))


def dist_world_size() -> int:
    """How many processes train together under ``torchrun`` (1 outside it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def plan_run(config: TrainConfig, emit: EventCallback, rank: int, world_size: int) -> RunPlan:
    """Everything that can fail without loading weights, in the order a user would fix it."""
    from core.models.registry import BaseModelError, check_lora_targets, load_model_config, resolve_base_model

    emit(StageStarted("validate", f"checking {config.data_path}"))
    check_output_dir(config.output_dir)
    records, n_records, sha256 = load_records(config.data_path, emit, config.columns)
    try:
        spec = resolve_base_model(config.base_model)
        targets = None
        if config.lora.enabled:
            targets = check_lora_targets(load_model_config(spec), spec.architecture, config.lora.target_modules,
                                         all_linear=True)
    except BaseModelError as error:
        raise TrainingError(str(error)) from error
    output = Path(config.output_dir).expanduser().resolve()
    check_replaceable_output(output)
    resume_from = find_checkpoint(output / CHECKPOINTS_DIR) if config.resume else None
    if config.resume and resume_from is None:
        raise TrainingError(f"nothing to resume: no checkpoint under {output / CHECKPOINTS_DIR}")
    if resume_from is not None:
        _check_resume_matches(config, output)
    from core.training.phrasings import variants_wanted

    with_variants = variants_wanted(config) > 0
    if with_variants:  # phrasings are held out, not records: every answer trains
        train_idx, eval_idx = list(range(len(records))), []
    else:
        train_idx, eval_idx = split_indices(len(records), config.eval_split, config.seed)
    if config.eval_data_path:
        load_records(config.eval_data_path, noop)  # a bad evaluation file fails now, not after training
    if not train_idx:
        raise TrainingError(
            f"no training records left: {len(records)} record(s), {len(eval_idx)} held out for evaluation "
            f"(eval_split {config.eval_split}); lower eval_split or add records"
        )
    check_device(config)
    _check_step_tokens()
    if with_variants:
        emit(Log(f"{n_records} records: every answer trains; phrasings of each question are held out"))
        return RunPlan(config, records, n_records, sha256, spec, targets, train_idx, eval_idx, output, resume_from,
                       rank, world_size)
    emit(Log(f"{n_records} records: {len(train_idx)} for training, {len(eval_idx)} held out"))
    return choose_run_recipe(RunPlan(config, records, n_records, sha256, spec, targets, train_idx, eval_idx,
                                     output, resume_from, rank, world_size), len(train_idx), emit)


def choose_run_recipe(plan: RunPlan, n_train: int, emit: EventCallback) -> RunPlan:
    """The recipe for ``n_train`` training pairs, logged, and the config it resolves to."""
    recipe = choose_recipe(plan.config, n_train, plan.lora_targets, plan.world_size)
    emit(Log(recipe.summary()))
    plan.recipe, plan.config = recipe, resolve_config(plan.config, recipe)
    return plan


def find_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` under ``folder`` (by step), or None."""
    if not folder.is_dir():
        return None
    found = [(int(p.name.split("-")[-1]), p) for p in folder.glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def _check_resume_matches(config: TrainConfig, output: Path) -> None:
    """A checkpoint only continues the same model and LoRA setting."""
    report = output / CHECKPOINTS_DIR / TRAINING_REPORT_FILE  # a cancel beside an earlier completed model
    try:
        previous = read_json(report if report.is_file() else output / TRAINING_REPORT_FILE).get("config", {})
    except (OSError, ValueError):
        return
    for key in ("base_model",):
        if previous.get(key) not in (None, getattr(config, key)):
            raise TrainingError(f"cannot resume: the checkpoint used {key} {previous.get(key)!r}, "
                                f"not {getattr(config, key)!r}")
    old_lora = (previous.get("lora") or {}).get("enabled")
    if old_lora is not None and bool(old_lora) != config.lora.enabled:
        raise TrainingError("cannot resume: the checkpoint was trained with LoRA "
                            f"{'on' if old_lora else 'off'}; use the same setting")


def _check_step_tokens() -> None:
    """A malformed :data:`~core.training.step_parts.STEP_TOKENS_ENV` fails now, not after the model loads."""
    from core.training.step_parts import step_tokens_from_env

    try:
        step_tokens_from_env()
    except ValueError as error:
        raise TrainingError(str(error)) from error


def check_device(config: TrainConfig) -> None:
    """The device asked for is here, and the precision can run on it."""
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' asked for, but no CUDA GPU is available (use auto or cpu)")
    if config.device == "mps" and not torch.backends.mps.is_available():
        raise TrainingError("device 'mps' asked for, but Apple MPS is not available (use auto or cpu)")
    device = resolve_device(config.device)
    if config.precision == "fp16" and device == "cpu":
        raise TrainingError("precision fp16 needs a GPU; use bf16 or fp32 on the CPU")


def resolve_device(device: str) -> str:
    """``auto`` as the device this machine trains on (cuda, then mps, then cpu)."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(precision: str, device: str) -> PrecisionChoice:
    """The :class:`~core.training.precision.PrecisionChoice` for this machine (see that module)."""
    import torch

    from core.training.precision import choose_precision, cpu_flags

    cuda_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    return choose_precision(precision, device, cpu_flags() if device == "cpu" else None, cuda_bf16)
