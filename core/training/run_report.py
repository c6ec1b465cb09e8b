"""What a real training writes about itself: ``training_report.json``, ``evaluation.json``, and
the saved model with ``model_manifest.json``.

The report is a :class:`~core.run_layout.TrainingReport` and the manifest a
:class:`~core.run_layout.ModelManifest`, written with :func:`core.run_layout.write_result` (the
fields set, in the model's order). :func:`base_report` is every report's start (a failed run's
and one cancelled before its first step add only ``error`` or ``checkpoint``);
:func:`trained_report` is a run that trained (status completed or cancelled). Rank 0 then adds
the evaluation (:func:`write_evaluation`) and the merged model (:func:`save_completed`), or the
checkpoint of a cancel (:func:`record_checkpoint`), all into the staging folder that
:func:`core.training.outputs.publish` swaps in. Callers get the report as its file's dict
(:meth:`~core.run_layout.TrainingReport.to_json`): events, the training child and run.json
carry JSON.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from core.events import CancelToken, EventCallback, Log
from core.jsonio import utc_now_iso, write_json_atomic
from core.run_layout import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    EVALUATION_FILE,
    MODEL_DIR,
    MODEL_MANIFEST_FILE,
    EvaluationSummary,
    ModelManifest,
    TrainingReport,
    write_result,
)
from core.training.config import TrainConfig
from core.training.run_plan import RunPlan, find_checkpoint
from core.training.trainer_setup import unwrap

__all__ = [
    "base_report",
    "clean_history",
    "record_checkpoint",
    "save_completed",
    "seed_lora_keys",
    "trained_report",
    "write_evaluation",
]


def base_report(plan: RunPlan, status: str, started: float) -> TrainingReport:
    """The keys every training report has: status, the config, the dataset, the versions."""
    return TrainingReport.model_validate(_base_keys(plan, status, started))


def _base_keys(plan: RunPlan, status: str, started: float) -> dict[str, Any]:
    import importlib.metadata as md

    versions: dict[str, str | None] = {}
    for name in ("torch", "transformers", "peft"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "status": status,
        "base_model": plan.config.base_model,
        "config": plan.config,
        "n_records": plan.n_records,
        "n_train": len(plan.train_idx),
        "n_eval": len(plan.eval_idx),
        "dataset_sha256": plan.sha256,
        "world_size": plan.world_size,
        "created_time": utc_now_iso(),
        "duration_seconds": round(time.time() - started, 3),
        "versions": versions,
    }


def trained_report(plan: RunPlan, cancelled: bool, started: float, trainer: Any, output: Any,
                   examples: list[Any], eval_examples: list[Any], steps: dict[str, Any], device: str,
                   choice: Any, threads: int, train_seconds: float, tokens: int,
                   lora_info: dict[str, Any]) -> TrainingReport:
    """The report of a run that trained: :func:`base_report` and what the trainer did
    (``output`` is ``trainer.train()``'s, ``steps`` :func:`~core.training.trainer_setup.make_trainer`'s)."""
    trained = dict(
        architecture=plan.spec.architecture,
        n_train=len(plan.train_idx),
        n_eval=len(plan.eval_idx),
        n_train_pairs=len(examples),
        n_eval_pairs=len(eval_examples),
        n_truncated=sum(ex.truncated for ex in (*examples, *eval_examples)),
        variants=plan.pairs.record,
        early_stopping=steps["early_stop"].record() if steps.get("early_stop") else None,
        world_size=int(trainer.args.world_size),
        device=device,
        precision=choice.precision,
        precision_reason=choice.reason,
        threads=int(threads),
        global_step=int(trainer.state.global_step),
        total_steps=steps["total"],
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        log_history=clean_history(trainer.state.log_history),
        train_seconds=round(train_seconds, 3),
        train_tokens=int(tokens),
        tokens_per_second=round(tokens / train_seconds if train_seconds > 0 else 0.0, 2),
        resumed_from=plan.resume_from.name if plan.resume_from else None,
        recipe=plan.recipe.as_record() if plan.recipe else None,
        step_parts={"max_tokens": steps["part_tokens"], "split_steps": int(trainer.split_steps)},
        **lora_info,
    )
    return TrainingReport.model_validate({**_base_keys(plan, "cancelled" if cancelled else "completed", started),
                                          **trained})


def clean_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trainer log entries as JSON-safe numbers."""
    clean = []
    for entry in history:
        clean.append({k: (float(v) if isinstance(v, float) else v) for k, v in entry.items()
                      if isinstance(v, int | float | str) and not (isinstance(v, float) and math.isnan(v))})
    return clean


def seed_lora_keys(config: TrainConfig, targets: list[str]) -> dict[str, Any]:
    """The report's ``lora_applied``/``lora_config``/``lora_timestamp`` keys: TinyForgeAI's names,
    as a dry run's stub has them."""
    alpha: float | int = int(config.lora.alpha) if float(config.lora.alpha).is_integer() else config.lora.alpha
    return {
        "lora_applied": True,
        "lora_config": {"r": config.lora.r, "alpha": alpha, "target_modules": list(targets)},
        "lora_timestamp": utc_now_iso(),
    }


def record_checkpoint(staging: Path, report: TrainingReport) -> None:
    """A cancelled run's report names its checkpoint (``checkpoints/checkpoint-N``, or None)."""
    ckpt = find_checkpoint(staging / CHECKPOINTS_DIR)
    report.checkpoint = f"{CHECKPOINTS_DIR}/{ckpt.name}" if ckpt else None


def write_evaluation(model: Any, tokenizer: Any, fmt: Any, plan: RunPlan, staging: Path, report: TrainingReport,
                     emit: EventCallback, token: CancelToken) -> None:
    """``evaluation.json``: base vs fine-tuned answers on the held-out records and a training
    sample (before the LoRA merge: the base is the same model with its adapter off). A cancel
    here skips the evaluation; the trained model is still saved."""
    from contextlib import contextmanager

    from core.events import Cancelled
    from core.models.registry import load_base_model
    from core.training.evaluate import base_of_lora, evaluate_models

    model = unwrap(model)
    model.eval()

    @contextmanager
    def base() -> Any:
        if plan.config.lora.enabled:
            with base_of_lora(model) as base_model:
                yield base_model
            return
        base_model, _ = load_base_model(plan.spec, seed=plan.config.seed)
        yield base_model.to(model.device).eval()

    splits = plan.pairs.splits
    try:
        evaluation = evaluate_models(model, base, tokenizer, fmt, splits, emit, token)
    except Cancelled:
        # Training finished: its model is kept (published) rather than thrown away; the report
        # says the evaluation was cancelled, and the CLI exits as for a cancel.
        report.evaluation = EvaluationSummary(cancelled=True, file=None)
        report.evaluation_cancelled = True
        emit(Log(f"cancelled during the evaluation: the trained model is saved without {EVALUATION_FILE} "
                 "(`foremforge evaluate --model OUT` computes it)", "warning"))
        return
    # A training's evaluation.json names the base model before the model (its order since it was
    # first written; Evaluation's fields, as `foremforge evaluate` writes them, are the other way).
    content = evaluation.to_json() | {"base_model": plan.config.base_model, "model": str(plan.output)}
    write_json_atomic(staging / EVALUATION_FILE, content)
    report.evaluation = EvaluationSummary(verdict=evaluation.verdict, file=EVALUATION_FILE,
                                          splits={name: means.to_json() for name, means in evaluation.splits.items()})


def save_completed(model: Any, tokenizer: Any, fmt: Any, staging: Path, report: TrainingReport,
                   plan: RunPlan, lora_info: dict[str, Any]) -> None:
    """``adapter/`` (LoRA), merged ``model/`` + tokenizer + prompt format, and the manifest."""
    model = unwrap(model)
    if plan.config.lora.enabled:
        model.save_pretrained(str(staging / ADAPTER_DIR))
        model = model.merge_and_unload()
    model = model.to("cpu").float()
    model.config.use_cache = True
    gen = model.generation_config
    gen.eos_token_id = fmt.eos_token_id
    gen.pad_token_id = fmt.pad_token_id
    if fmt.decoder_start_token_id is not None:
        gen.decoder_start_token_id = fmt.decoder_start_token_id
    model_dir = staging / MODEL_DIR
    model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    fmt.save(model_dir)
    manifest = ModelManifest.model_validate({
        "model_type": "tinyforge_hf",
        "n_records": plan.n_records,
        "created_time": utc_now_iso(),
        "base_model": plan.config.base_model,
        "architecture": plan.spec.architecture,
        "model_dir": MODEL_DIR,
        **lora_info,
    })
    write_result(staging / MODEL_MANIFEST_FILE, manifest)
    report.artifacts = {"model": MODEL_DIR, "adapter": ADAPTER_DIR if lora_info else None,
                        "manifest": MODEL_MANIFEST_FILE}
