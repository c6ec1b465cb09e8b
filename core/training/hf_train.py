"""Real fine-tuning with transformers + PEFT on the HF Trainer (LoRA or full), in-process.

:func:`run_real_training` validates everything cheap first (dataset, base-model name, LoRA
targets from the config, device, split) and raises :class:`TrainingError` within seconds,
leaving nothing under ``output_dir``. It then loads the model, trains, and writes into a temp
folder beside ``output_dir`` that is moved into place at the end, so a crash never leaves half
an output. Under ``torchrun`` every rank trains; only rank 0 writes artifacts and emits events.
An existing ``output_dir`` is replaced whole, and only when it is a TinyForge training output
holding nothing else; rank 0 holds its lock for the whole run (see :mod:`core.staging`).

Output folder ``OUT/`` (see docs/contracts.md, Training): ``model/`` (merged model, tokenizer,
``tinyforge_prompt.json``), ``adapter/`` (LoRA), ``training_report.json``,
``model_manifest.json``; after a cancel, ``checkpoints/`` and a report with status cancelled
(beside an earlier completed model, which stays as it was, the report is
``checkpoints/training_report.json``).

Cancel (the token, or Ctrl-C through the CLI's SIGINT handler) is polled after every optimizer
step: the trainer saves a checkpoint under ``OUT/checkpoints/`` that ``resume=True`` continues,
and the function *returns* the report with status ``"cancelled"`` (it does not raise). A cancel
before the first step returns status ``"cancelled"`` and writes nothing. Any other failure
raises (``TrainingError`` for bad input); the caller's boundary reports it (see
:mod:`core.failures`).

This module is the run's order; its parts live beside it: the plan and its checks
(:mod:`core.training.run_plan`), the output folder (:mod:`core.training.outputs`), the model and
Trainer (:mod:`core.training.trainer_setup`, :mod:`core.training.trainer_callback`) and what the
run writes about itself (:mod:`core.training.run_report`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from core.events import (
    ArtifactWritten,
    Cancelled,
    CancelToken,
    EventCallback,
    Finished,
    Log,
    StageStarted,
    noop,
)
from core.memory import objects_alive_now_left_out_of_gc, release_memory, steady_heap
from core.run_layout import TRAINING_REPORT_FILE, VARIANTS_FILE, TrainingReport, write_result
from core.staging import staging_folder
from core.training.config import TrainConfig
from core.training.errors import TrainingError
from core.training.lean_layers import lean_layers
from core.training.outputs import absent_or_empty, lock_output, publish, staging_tag
from core.training.precision import lora_inputs_as_they_come
from core.training.run_plan import RunPlan, dist_rank, dist_world_size, plan_run, resolve_device
from core.training.run_report import (
    base_report,
    record_checkpoint,
    save_completed,
    seed_lora_keys,
    trained_report,
    write_evaluation,
)
from core.training.trainer_setup import (
    all_reduce_sum,
    apply_lora,
    apply_precision,
    encode_pairs,
    load_base,
    make_trainer,
    prepare_pairs,
    restore_base,
    set_training_attention,
    torch_threads,
    usable_cores,
    zero_grad_of_trainable,
)

logger = logging.getLogger(__name__)

__all__ = ["TrainingError", "run_real_training"]


def run_real_training(
    config: TrainConfig, on_event: EventCallback | None = None, cancel: CancelToken | None = None
) -> dict[str, Any]:
    """Fine-tune ``config.base_model`` on ``config.data_path`` and return the training report
    (a :class:`~core.run_layout.TrainingReport` as its file's dict: what ``training_report.json``
    holds, and what the ``Finished`` event carries)."""
    from core.memory import limit_kernel_cache

    limit_kernel_cache()
    rank, world_size = dist_rank(), dist_world_size()
    emit = (on_event or noop) if rank == 0 else noop
    token = cancel or CancelToken()
    started = time.time()
    plan = plan_run(config, emit, rank, world_size)
    release = lock_output(plan.output, rank)
    try:
        report = _run_locked(plan, emit, token, started)
    finally:
        release()
    return report.to_json()


def _run_locked(plan: RunPlan, emit: EventCallback, token: CancelToken, started: float) -> TrainingReport:
    """Train into a staging folder beside the output and publish it (rank 0 holds the lock)."""
    rank = plan.rank
    try:
        # Rank 0 alone removes what is left of the shared staging folder (failed, cancelled).
        with staging_folder(plan.output, staging_tag(plan.world_size), owner=rank == 0) as staging:
            report = _train(plan, staging, emit, token, started)
    except Cancelled:
        report = base_report(plan, "cancelled", started)
        report.checkpoint = None
        emit(Log("cancelled before training started; nothing was written", "warning"))
        emit(Finished("cancelled", report.to_json()))
        return report
    except TrainingError:
        raise
    except BaseException as error:
        message = f"training failed: {type(error).__name__}: {error}"
        # The failed report goes only where it replaces nothing: a previous output stays as it was.
        if rank == 0 and not isinstance(error, KeyboardInterrupt) and absent_or_empty(plan.output):
            failed = base_report(plan, "failed", started)
            failed.error = message
            try:
                write_result(plan.output / TRAINING_REPORT_FILE, failed)
            except OSError:
                logger.exception("could not write the failed report")
        raise
    emit(Finished(report.status, report.to_json()))
    return report


def _train(plan: RunPlan, staging: Path, emit: EventCallback, token: CancelToken, started: float) -> TrainingReport:
    """Load and train with torch's threads set for this model (put back after)."""
    config = plan.config
    token.raise_if_cancelled()
    emit(StageStarted("load", f"loading base model {config.base_model}"))
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    transformers.set_seed(config.seed)
    threads = torch.get_num_threads()
    if plan.spec.kind == "tiny":  # intra-op threads only cost time on a tiny model (and thrash a busy CPU)
        torch.set_num_threads(1)
    else:  # one per core this process may run on (torch's default ignores CPU affinity and quotas)
        torch.set_num_threads(max(1, min(threads, usable_cores())))
    try:
        return _train_loaded(plan, staging, emit, token, started)
    finally:
        torch.set_num_threads(threads)


def _train_loaded(plan: RunPlan, staging: Path, emit: EventCallback, token: CancelToken,
                  started: float) -> TrainingReport:
    """Load, prepare, train, then write and publish the output (rank 0): the training's stages."""
    model, tokenizer, fmt = load_base(plan, token)
    prepare_pairs(plan, model, tokenizer, emit, token)
    config = plan.config  # with the recipe's values
    examples, eval_examples = encode_pairs(plan, tokenizer, fmt, emit)
    device = resolve_device(config.device)
    default_attention = set_training_attention(model, device, plan.spec.architecture, examples, emit)
    model = apply_lora(model, plan, emit)
    lora_info = seed_lora_keys(config, plan.lora_targets or []) if config.lora.enabled else {}
    choice, n_bf16 = apply_precision(model, config, device, emit)
    precision = choice.precision
    trainer, callback, collator, steps = make_trainer(plan, staging, model, tokenizer, fmt, examples, eval_examples,
                                                      device, precision, emit, token)
    world_size = int(trainer.args.world_size)
    emit(StageStarted("train", f"training {config.base_model} ({'LoRA' if config.lora.enabled else 'full'}), "
                      f"{steps['total']} steps of {steps['per_step']} examples on {device} ({precision})"))
    if plan.resume_from is not None:
        emit(Log(f"resuming from {plan.resume_from.name}"))
    if steps["part_tokens"]:
        emit(Log(f"batches over {steps['part_tokens']} tokens run in parts (same gradient, bounded memory)"))
    train_started = time.time()
    lora_mixed = config.lora.enabled and precision != "fp32"
    with (objects_alive_now_left_out_of_gc(), steady_heap(), zero_grad_of_trainable(model),
          lora_inputs_as_they_come(model, active=lora_mixed),
          lean_layers(model, active=lora_mixed and precision == "bf16" and device == "cpu") as lean):
        if lean:
            emit(Log(f"{lean} adapted layers and norms train as single autograd steps (bf16 on a CPU)"))
        output = trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
        cancelled = callback.cancelled
        if trainer.eval_dataset is not None and not cancelled and trainer.state.global_step % steps["eval"] != 0:
            trainer.evaluate()
        stopping = steps.get("early_stop")
        if stopping is not None and not cancelled:
            stopping.restore_best(model)
    train_seconds = time.time() - train_started
    release_memory()  # the training step's activations and logits, before the fp32 base comes back
    if n_bf16 and not cancelled:
        restore_base(model, plan)
        release_memory()
    if default_attention:
        from core.training.answer_loss import inner_model

        inner_model(model).set_attn_implementation(default_attention)  # generation, merge and save as loaded
    tokens = all_reduce_sum(collator.train_tokens, world_size)
    report = trained_report(plan, cancelled, started, trainer, output, examples, eval_examples, steps, device, choice,
                            torch_threads(), train_seconds, tokens, lora_info)
    if trainer.is_world_process_zero():
        _save_and_publish(model, tokenizer, fmt, plan, staging, report, lora_info, cancelled, started, emit, token)
    trainer.accelerator.wait_for_everyone()
    return report


def _save_and_publish(model: Any, tokenizer: Any, fmt: Any, plan: RunPlan, staging: Path, report: TrainingReport,
                      lora_info: dict[str, Any], cancelled: bool, started: float, emit: EventCallback,
                      token: CancelToken) -> None:
    """Rank 0: evaluate and write the model (or keep the checkpoint), the report, then publish."""
    emit(StageStarted("save", "writing the model" if not cancelled else "writing the checkpoint"))
    if plan.pairs.rows:
        from core.training.variants import write_variants_jsonl

        write_variants_jsonl(staging / VARIANTS_FILE, plan.pairs.rows)
    if cancelled:
        record_checkpoint(staging, report)
    else:
        write_evaluation(model, tokenizer, fmt, plan, staging, report, emit, token)
        release_memory()
        save_completed(model, tokenizer, fmt, staging, report, plan, lora_info)
    report.duration_seconds = round(time.time() - started, 3)
    write_result(staging / TRAINING_REPORT_FILE, report)
    written = publish(staging, plan.output, completed=not cancelled)
    for path in written:
        emit(ArtifactWritten(str(path)))
