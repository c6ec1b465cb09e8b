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
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.events import (
    ArtifactWritten,
    Cancelled,
    CancelToken,
    EventCallback,
    Finished,
    Log,
    Metric,
    Progress,
    StageStarted,
    noop,
)
from core.jsonio import read_json, utc_now_iso, write_json_atomic
from core.memory import objects_alive_now_left_out_of_gc, release_memory, steady_heap
from core.run_layout import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    EVALUATION_FILE,
    EVALUATIONS_DIR,
    MODEL_DIR,
    MODEL_MANIFEST_FILE,
    MODEL_STUB_FILE,
    TRAINING_REPORT_FILE,
    VARIANTS_FILE,
)
from core.staging import (
    OutputFolderError,
    check_replaceable,
    discard,
    locked_output,
    staging_folder,
    swap_in,
)
from core.training.config import TrainConfig
from core.training.errors import TrainingError
from core.training.evaluate import split_indices
from core.training.lean_layers import lean_layers
from core.training.precision import lora_inputs_as_they_come
from core.training.recipe import Recipe, choose_recipe, resolve_config, steps_per_epoch
from core.training.records import load_records

logger = logging.getLogger(__name__)

__all__ = ["TrainingError", "run_real_training"]

# What a training output holds (core.run_layout names them); model/ is the merged model.
_OUR_ENTRIES = (MODEL_DIR, ADAPTER_DIR, CHECKPOINTS_DIR, TRAINING_REPORT_FILE, MODEL_MANIFEST_FILE, EVALUATION_FILE,
                VARIANTS_FILE)
# An existing output is replaced only when one of these says it is ours ...
_MARKERS = (TRAINING_REPORT_FILE, MODEL_MANIFEST_FILE, MODEL_STUB_FILE)
# ... and it holds nothing else (a file a user put there is never deleted by a retrain).
_KNOWN_ENTRIES = (*_OUR_ENTRIES, MODEL_STUB_FILE, EVALUATIONS_DIR)


@dataclass
class _Plan:
    """What the cheap validation decided, before anything heavy loads."""

    config: TrainConfig
    records: list[tuple[str, str]]
    n_records: int
    sha256: str
    spec: Any
    lora_targets: list[str] | None
    train_idx: list[int]
    eval_idx: list[int]
    output: Path
    resume_from: Path | None
    rank: int = 0
    world_size: int = 1
    recipe: Recipe | None = None
    pairs: Any = None  # core.training.phrasings.RunPairs, once the base model is loaded


def run_real_training(
    config: TrainConfig, on_event: EventCallback | None = None, cancel: CancelToken | None = None
) -> dict[str, Any]:
    """Fine-tune ``config.base_model`` on ``config.data_path`` and return the training report."""
    from core.memory import limit_kernel_cache

    limit_kernel_cache()
    rank, world_size = _dist_rank(), _dist_world_size()
    emit = (on_event or noop) if rank == 0 else noop
    token = cancel or CancelToken()
    started = time.time()
    plan = _validate(config, emit, rank, world_size)
    release = _lock_output(plan.output, rank)
    try:
        return _run_locked(plan, emit, token, started)
    finally:
        release()


def _lock_output(output: Path, rank: int) -> Callable[[], None]:
    """Rank 0 holds the output folder's lock for the whole run and clears dead leftovers beside it."""
    if rank != 0:
        return lambda: None
    held = contextlib.ExitStack()
    try:
        held.enter_context(locked_output(output))
    except OutputFolderError as error:
        raise TrainingError(str(error)) from error
    return held.close


def _run_locked(plan: _Plan, emit: EventCallback, token: CancelToken, started: float) -> dict[str, Any]:
    """Train into a staging folder beside the output and publish it (rank 0 holds the lock)."""
    rank = plan.rank
    try:
        # Rank 0 alone removes what is left of the shared staging folder (failed, cancelled).
        with staging_folder(plan.output, _staging_tag(plan.world_size), owner=rank == 0) as staging:
            report = _train(plan, staging, emit, token, started)
    except Cancelled:
        report = {**_base_report(plan, "cancelled", started), "checkpoint": None}
        emit(Log("cancelled before training started; nothing was written", "warning"))
        emit(Finished("cancelled", report))
        return report
    except TrainingError:
        raise
    except BaseException as error:
        message = f"training failed: {type(error).__name__}: {error}"
        # The failed report goes only where it replaces nothing: a previous output stays as it was.
        if rank == 0 and not isinstance(error, KeyboardInterrupt) and _absent_or_empty(plan.output):
            failed = {**_base_report(plan, "failed", started), "error": message}
            try:
                write_json_atomic(plan.output / TRAINING_REPORT_FILE, failed)
            except OSError:
                logger.exception("could not write the failed report")
        raise
    emit(Finished(report["status"], report))
    return report


# --------------------------------------------------------------------------- validation


def _dist_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _dist_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _validate(config: TrainConfig, emit: EventCallback, rank: int, world_size: int) -> _Plan:
    """Everything that can fail without loading weights, in the order a user would fix it."""
    from core.models.registry import BaseModelError, check_lora_targets, load_model_config, resolve_base_model
    from core.training.outputs import check_output_dir

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
    _check_replaceable(output)
    resume_from = _find_checkpoint(output / CHECKPOINTS_DIR) if config.resume else None
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
    _check_device(config)
    if with_variants:
        emit(Log(f"{n_records} records: every answer trains; phrasings of each question are held out"))
        return _Plan(config, records, n_records, sha256, spec, targets, train_idx, eval_idx, output, resume_from,
                     rank, world_size)
    emit(Log(f"{n_records} records: {len(train_idx)} for training, {len(eval_idx)} held out"))
    return _choose_recipe(_Plan(config, records, n_records, sha256, spec, targets, train_idx, eval_idx,
                                output, resume_from, rank, world_size), len(train_idx), emit)


def _choose_recipe(plan: _Plan, n_train: int, emit: EventCallback) -> _Plan:
    """The recipe for ``n_train`` training pairs, logged, and the config it resolves to."""
    recipe = choose_recipe(plan.config, n_train, plan.lora_targets, plan.world_size)
    emit(Log(recipe.summary()))
    plan.recipe, plan.config = recipe, resolve_config(plan.config, recipe)
    return plan


def _find_checkpoint(folder: Path) -> Path | None:
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


def _check_device(config: TrainConfig) -> None:
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' asked for, but no CUDA GPU is available (use auto or cpu)")
    if config.device == "mps" and not torch.backends.mps.is_available():
        raise TrainingError("device 'mps' asked for, but Apple MPS is not available (use auto or cpu)")
    device = _resolve_device(config.device)
    if config.precision == "fp16" and device == "cpu":
        raise TrainingError("precision fp16 needs a GPU; use bf16 or fp32 on the CPU")


def _resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _resolve_precision(precision: str, device: str) -> Any:
    """The :class:`~core.training.precision.PrecisionChoice` for this machine (see that module)."""
    import torch

    from core.training.precision import choose_precision, cpu_flags

    cuda_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    return choose_precision(precision, device, cpu_flags() if device == "cpu" else None, cuda_bf16)


def _staging_tag(world_size: int) -> str | None:
    """The staging folder's tag under torchrun, so every rank builds in the same one."""
    if world_size > 1:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("MASTER_PORT", "dist")
        return f"dist{run_id}"
    return None


def _check_replaceable(output: Path) -> None:
    try:
        check_replaceable(output, _MARKERS, "training output", allowed=_KNOWN_ENTRIES)
    except OutputFolderError as error:
        raise TrainingError(str(error)) from error


def _absent_or_empty(folder: Path) -> bool:
    try:
        return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))
    except OSError:
        return False


# --------------------------------------------------------------------------- training


def _train(plan: _Plan, staging: Path, emit: EventCallback, token: CancelToken, started: float) -> dict[str, Any]:
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
        torch.set_num_threads(max(1, min(threads, _usable_cores())))
    try:
        return _train_loaded(plan, staging, emit, token, started)
    finally:
        torch.set_num_threads(threads)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _train_loaded(plan: _Plan, staging: Path, emit: EventCallback, token: CancelToken,
                  started: float) -> dict[str, Any]:
    """Load, prepare, train, then write and publish the output (rank 0): the training's stages."""
    model, tokenizer, fmt = _load(plan, token)
    _prepare_pairs(plan, model, tokenizer, emit, token)
    config = plan.config  # with the recipe's values
    examples, eval_examples = _encode(plan, tokenizer, fmt, emit)
    device = _resolve_device(config.device)
    default_attention = _set_training_attention(model, device, plan.spec.architecture, examples, emit)
    model, lora_info = _apply_lora(model, plan, emit)
    choice, n_bf16 = _apply_precision(model, config, device, emit)
    precision = choice.precision
    trainer, callback, collator, steps = _make_trainer(plan, staging, model, tokenizer, fmt, examples, eval_examples,
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
    with (objects_alive_now_left_out_of_gc(), steady_heap(), _zero_grad_of_trainable(model),
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
        _restore_base(model, plan)
        release_memory()
    if default_attention:
        from core.training.answer_loss import inner_model

        inner_model(model).set_attn_implementation(default_attention)  # generation, merge and save as loaded
    tokens = _all_reduce_sum(collator.train_tokens, world_size)
    report = _base_report(plan, "cancelled" if cancelled else "completed", started)
    report.update(
        architecture=plan.spec.architecture,
        n_train=len(plan.train_idx),
        n_eval=len(plan.eval_idx),
        n_train_pairs=len(examples),
        n_eval_pairs=len(eval_examples),
        n_truncated=sum(ex.truncated for ex in (*examples, *eval_examples)),
        variants=plan.pairs.record,
        early_stopping=steps["early_stop"].record() if steps.get("early_stop") else None,
        world_size=world_size,
        device=device,
        precision=precision,
        precision_reason=choice.reason,
        threads=int(_torch_threads()),
        global_step=int(trainer.state.global_step),
        total_steps=steps["total"],
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        log_history=_clean_history(trainer.state.log_history),
        train_seconds=round(train_seconds, 3),
        train_tokens=int(tokens),
        tokens_per_second=round(tokens / train_seconds if train_seconds > 0 else 0.0, 2),
        resumed_from=plan.resume_from.name if plan.resume_from else None,
        recipe=plan.recipe.as_record() if plan.recipe else None,
        step_parts={"max_tokens": steps["part_tokens"], "split_steps": int(trainer.split_steps)},
        **lora_info,
    )
    if trainer.is_world_process_zero():
        _save_and_publish(trainer, model, tokenizer, fmt, plan, staging, report, lora_info, cancelled, started,
                          emit, token)
    trainer.accelerator.wait_for_everyone()
    return report


@contextlib.contextmanager
def _zero_grad_of_trainable(model: Any) -> Any:
    """The Trainer's ``model.zero_grad()`` after every step, over the trainable parameters only:
    the frozen ones never hold a gradient, and walking all of a LoRA model's modules for them
    took 12 ms a step on the starter model (1% of a step)."""
    trainable = [param for param in model.parameters() if param.requires_grad]

    def zero_grad(set_to_none: bool = True) -> None:
        for param in trainable:
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.detach_().zero_()

    model.zero_grad = zero_grad
    try:
        yield
    finally:
        model.__dict__.pop("zero_grad", None)


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _load(plan: _Plan, token: CancelToken) -> tuple[Any, Any, Any]:
    """The base model, its tokenizer and the prompt format training and predict use."""
    from core.models.prompting import build_prompt_format
    from core.models.registry import BaseModelError, load_base_model

    config = plan.config
    try:
        model, tokenizer = load_base_model(plan.spec, seed=config.seed)
    except BaseModelError as error:
        raise TrainingError(str(error)) from error
    token.raise_if_cancelled()
    fmt = build_prompt_format(tokenizer, plan.spec.architecture, config.max_length,
                              getattr(model.config, "decoder_start_token_id", None))
    return model, tokenizer, fmt


def _prepare_pairs(plan: _Plan, model: Any, tokenizer: Any, emit: EventCallback, token: CancelToken) -> None:
    """Question variants (written by the loaded base model), the split, then the recipe for them."""
    from core.training.phrasings import prepare_pairs

    model.eval()  # the variants are written before training, with the base model as it was loaded
    plan.pairs = prepare_pairs(plan.config, plan.records, plan.train_idx, plan.eval_idx, plan.sha256,
                               (model, tokenizer), emit, token)
    token.raise_if_cancelled()
    if plan.recipe is None:
        _choose_recipe(plan, len(plan.pairs.train), emit)


def _encode(plan: _Plan, tokenizer: Any, fmt: Any, emit: EventCallback) -> tuple[list[Any], list[Any]]:
    """The training and evaluation pairs encoded (truncation said)."""
    from core.models.prompting import encode_pair
    from core.training.formats import context_of

    max_length, loss_on = plan.config.max_length, plan.config.loss_on
    examples = [encode_pair(tokenizer, fmt, p[0], p[1], max_length, context_of(p), loss_on) for p in plan.pairs.train]
    eval_examples = [encode_pair(tokenizer, fmt, p[0], p[1], max_length, context_of(p), loss_on)
                     for p in plan.pairs.eval]
    n_cut = sum(ex.truncated for ex in examples)
    if n_cut:
        emit(Log(f"{n_cut} training example(s) are longer than max_length {max_length} tokens and were "
                 "truncated (raise max_length to keep them whole)", "warning"))
    return examples, eval_examples


def _set_training_attention(model: Any, device: str, arch: str, examples: list[Any], emit: EventCallback) -> str | None:
    """Switch to the attention that trains fastest here; return the one to put back after (or None)."""
    from core.training.attention import EAGER_MAX_TOKENS, training_attention

    attention = training_attention(device, arch, max((len(ex.input_ids) for ex in examples), default=0))
    default_attention = getattr(model.config, "_attn_implementation", None)
    if attention and attention != default_attention and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attention)
        emit(Log(f"attention {attention} while training: every record fits in {EAGER_MAX_TOKENS} tokens, "
                 "where it is faster than the fused kernel on a CPU"))
        return default_attention
    return None  # nothing to put back


def _apply_lora(model: Any, plan: _Plan, emit: EventCallback) -> tuple[Any, dict[str, Any]]:
    """Wrap the model in a LoRA adapter when asked; return it and the report's LoRA keys."""
    config = plan.config
    if not config.lora.enabled:
        return model, {}
    from peft import LoraConfig, TaskType, get_peft_model

    peft_config = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=plan.lora_targets,
        task_type=TaskType.SEQ_2_SEQ_LM if plan.spec.architecture == "seq2seq" else TaskType.CAUSAL_LM,
    )
    model = get_peft_model(model, peft_config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    emit(Log(f"LoRA on {', '.join(plan.lora_targets or [])}: {trainable:,} of {total:,} parameters train"))
    return model, _seed_lora_keys(config, plan.lora_targets or [])


def _apply_precision(model: Any, config: TrainConfig, device: str, emit: EventCallback) -> tuple[Any, int]:
    """Choose the precision (said in the log); with bf16 + LoRA store the frozen base in bf16 once.

    Returns the choice and how many tensors went to bf16 (restored to fp32 after training).
    """
    choice = _resolve_precision(config.precision, device)
    precision = choice.precision
    emit(Log(f"precision {precision}: {choice.reason}; {_torch_threads()} CPU thread(s)"
             if device == "cpu" else f"precision {precision}: {choice.reason}"))
    if precision == "bf16" and config.lora.enabled:
        # The frozen base in bf16 once: no per-step weight casts, half the memory (see precision.py).
        from core.training.precision import store_frozen_in_bf16

        return choice, store_frozen_in_bf16(model)
    return choice, 0


def _make_trainer(plan: _Plan, staging: Path, model: Any, tokenizer: Any, fmt: Any, examples: list[Any],
                  eval_examples: list[Any], device: str, precision: str, emit: EventCallback,
                  token: CancelToken) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The HF trainer (answer-only loss), our event callback, the collator and the step counts
    (with ``early_stop``: the best-so-far keeper when the recipe chose the run's length)."""
    from transformers import PrinterCallback

    from core.models.batching import DynamicPadCollator, ExampleDataset
    from core.training.answer_loss import inner_model, make_answer_only_trainer
    from core.training.early_stop import EVALS_PER_RUN, make_early_stop
    from core.training.step_parts import run_step_tokens

    config, arch = plan.config, plan.spec.architecture
    train_set = ExampleDataset(examples, arch, train=True)
    eval_set = ExampleDataset(eval_examples, arch, train=False) if eval_examples else None
    per_epoch = steps_per_epoch(len(train_set), config.batch_size, config.grad_accum, plan.world_size)
    total_steps = config.max_steps if config.max_steps > 0 else max(1, math.ceil(config.epochs * per_epoch))
    # The run stops early on the held-out loss only when the recipe chose its length (not the user).
    # With variants only: a --no-variants run trains as many steps as it always did.
    chosen = plan.recipe is not None and ("epochs" in plan.recipe.reasons or "steps" in plan.recipe.reasons)
    early = eval_set is not None and chosen and plan.world_size == 1 and plan.pairs.eval_name == "unseen"
    steps: dict[str, Any] = {
        "total": total_steps, "per_step": config.batch_size * config.grad_accum * plan.world_size,
        "eval": max(config.logging_steps, total_steps // (EVALS_PER_RUN if early else 5)),
    }
    args = _training_arguments(plan, staging, device, precision, eval_set is not None, steps["eval"])
    collator = DynamicPadCollator(fmt.pad_token_id, arch)
    callback = _make_callback(emit, token, collator, int(args.world_size))
    callbacks = [callback]
    if early:
        steps["early_stop"] = make_early_stop(model, total_steps, plan.pairs.eval_name, emit)
        callbacks.append(steps["early_stop"])
    try:
        part_tokens = run_step_tokens(inner_model(model), precision, device)
    except ValueError as error:
        raise TrainingError(str(error)) from error
    steps["part_tokens"] = part_tokens
    trainer = make_answer_only_trainer(
        max_step_tokens=part_tokens,
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our callback reports; keep stdout clean
    return trainer, callback, collator, steps


def _training_arguments(plan: _Plan, staging: Path, device: str, precision: str, has_eval: bool,
                        eval_steps: int) -> Any:
    """The HF ``TrainingArguments`` of this plan (checkpoints under the staging folder)."""
    from transformers import TrainingArguments

    config = plan.config
    return TrainingArguments(
        output_dir=str(staging / CHECKPOINTS_DIR),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        weight_decay=0.0,
        warmup_steps=0,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps if has_eval else None,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",  # autocast: matmuls in bf16, trainable weights stay fp32 masters
        fp16=precision == "fp16",
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length",
        prediction_loss_only=True,  # evaluation keeps the loss, not every position's logits
        dataloader_num_workers=0,  # collating a batch takes well under 1% of a step
        dataloader_pin_memory=device == "cuda",
        ddp_find_unused_parameters=False,
        ddp_backend="gloo" if device == "cpu" and plan.world_size > 1 else None,
    )


def _save_and_publish(trainer: Any, model: Any, tokenizer: Any, fmt: Any, plan: _Plan, staging: Path,
                      report: dict[str, Any], lora_info: dict[str, Any], cancelled: bool, started: float,
                      emit: EventCallback, token: CancelToken) -> None:
    """Rank 0: evaluate and write the model (or keep the checkpoint), the report, then publish."""
    emit(StageStarted("save", "writing the model" if not cancelled else "writing the checkpoint"))
    if plan.pairs.rows:
        from core.training.variants import write_variants_jsonl

        write_variants_jsonl(staging / VARIANTS_FILE, plan.pairs.rows)
    if cancelled:
        _write_cancelled(trainer, staging, report)
    else:
        _evaluate(model, tokenizer, fmt, plan, staging, report, emit, token)
        release_memory()
        _write_completed(model, tokenizer, fmt, staging, report, plan, lora_info)
    report["duration_seconds"] = round(time.time() - started, 3)
    write_json_atomic(staging / TRAINING_REPORT_FILE, report)
    written = _publish(staging, plan.output, completed=not cancelled)
    for path in written:
        emit(ArtifactWritten(str(path)))


def _restore_base(model: Any, plan: _Plan) -> None:
    """The frozen base back in fp32 (its published values, not the bf16 rounding used to train),
    so the evaluation and the merged model are what fp32 training would give."""
    from core.models.registry import load_base_model
    from core.training.precision import restore_frozen, restore_frozen_from_files

    restored = None
    if plan.spec.kind in ("starter", "folder"):  # tensor by tensor from the files: no second model in memory
        restored = restore_frozen_from_files(model, plan.spec.source)
    if restored is None:
        original, _ = load_base_model(plan.spec, seed=plan.config.seed)
        restored = restore_frozen(model, original)
        del original
    logger.info("restored %d frozen base tensors to fp32", restored)


def _evaluate(model: Any, tokenizer: Any, fmt: Any, plan: _Plan, staging: Path, report: dict[str, Any],
              emit: EventCallback, token: CancelToken) -> None:
    """``evaluation.json``: base vs fine-tuned answers on the held-out records and a training
    sample (before the LoRA merge: the base is the same model with its adapter off). A cancel
    here skips the evaluation; the trained model is still saved."""
    from contextlib import contextmanager

    from core.events import Cancelled
    from core.models.registry import load_base_model
    from core.training.evaluate import base_of_lora, evaluate_loaded

    model = _unwrap(model)
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
        evaluation = evaluate_loaded(model, base, tokenizer, fmt, splits, emit, token)
    except Cancelled:
        # Training finished: its model is kept (published) rather than thrown away; the report
        # says the evaluation was cancelled, and the CLI exits as for a cancel.
        report["evaluation"] = {"cancelled": True, "file": None}
        report["evaluation_cancelled"] = True
        emit(Log(f"cancelled during the evaluation: the trained model is saved without {EVALUATION_FILE} "
                 "(`foremforge evaluate --model OUT` computes it)", "warning"))
        return
    evaluation.update(base_model=plan.config.base_model, model=str(plan.output))
    write_json_atomic(staging / EVALUATION_FILE, evaluation)
    report["evaluation"] = {"verdict": evaluation["verdict"], "splits": evaluation["splits"],
                            "file": EVALUATION_FILE}


def _seed_lora_keys(config: TrainConfig, targets: list[str]) -> dict[str, Any]:
    """The report's ``lora_applied``/``lora_config``/``lora_timestamp`` keys: TinyForgeAI's names,
    as a dry run's stub has them."""
    alpha: float | int = int(config.lora.alpha) if float(config.lora.alpha).is_integer() else config.lora.alpha
    return {
        "lora_applied": True,
        "lora_config": {"r": config.lora.r, "alpha": alpha, "target_modules": list(targets)},
        "lora_timestamp": utc_now_iso(),
    }


def _base_report(plan: _Plan, status: str, started: float) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for name in ("torch", "transformers", "peft"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "status": status,
        "base_model": plan.config.base_model,
        "config": plan.config.model_dump(mode="json"),
        "n_records": plan.n_records,
        "n_train": len(plan.train_idx),
        "n_eval": len(plan.eval_idx),
        "dataset_sha256": plan.sha256,
        "world_size": plan.world_size,
        "created_time": utc_now_iso(),
        "duration_seconds": round(time.time() - started, 3),
        "versions": versions,
    }


def _clean_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trainer log entries as JSON-safe numbers."""
    clean = []
    for entry in history:
        clean.append({k: (float(v) if isinstance(v, float) else v) for k, v in entry.items()
                      if isinstance(v, int | float | str) and not (isinstance(v, float) and math.isnan(v))})
    return clean


def _all_reduce_sum(value: int, world_size: int) -> int:
    if world_size <= 1:
        return value
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return value * world_size
    tensor = torch.tensor([value], dtype=torch.long)
    dist.all_reduce(tensor)
    return int(tensor.item())


def _write_cancelled(trainer: Any, staging: Path, report: dict[str, Any]) -> None:
    ckpt = _find_checkpoint(staging / CHECKPOINTS_DIR)
    report["checkpoint"] = f"{CHECKPOINTS_DIR}/{ckpt.name}" if ckpt else None


def _write_completed(model: Any, tokenizer: Any, fmt: Any, staging: Path, report: dict[str, Any],
                     plan: _Plan, lora_info: dict[str, Any]) -> None:
    """``adapter/`` (LoRA), merged ``model/`` + tokenizer + prompt format, and the manifest."""
    model = _unwrap(model)
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
    manifest = {
        "model_type": "tinyforge_hf",
        "n_records": plan.n_records,
        "created_time": utc_now_iso(),
        "base_model": plan.config.base_model,
        "architecture": plan.spec.architecture,
        "model_dir": MODEL_DIR,
        **lora_info,
    }
    write_json_atomic(staging / MODEL_MANIFEST_FILE, manifest)
    report["artifacts"] = {"model": MODEL_DIR, "adapter": ADAPTER_DIR if lora_info else None,
                           "manifest": MODEL_MANIFEST_FILE}


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)


def _publish(staging: Path, output: Path, completed: bool) -> list[Path]:
    """Swap the finished ``staging`` folder in as ``output``, whole; return what it holds.

    A completed run replaces the previous output (so no stale ``adapter/`` or ``checkpoints/``
    survives). A cancelled one does too, unless the previous output holds a completed model:
    that model, its adapter and report stay exactly as they were, and only ``checkpoints/``
    (with the cancelled run's report inside) is swapped in beside them for ``resume``.
    Any failure leaves the previous output as it was.
    """
    _check_replaceable(output)  # again: a user may have put files there while we trained
    if completed:
        discard(staging / CHECKPOINTS_DIR)  # nothing left to resume
    if completed or not (output / MODEL_MANIFEST_FILE).is_file():
        swap_in(staging, output)
        return sorted(output.iterdir())
    checkpoints = staging / CHECKPOINTS_DIR
    if not checkpoints.is_dir():
        return []  # the rest of the staging folder goes when the run's staging block ends
    os.replace(staging / TRAINING_REPORT_FILE, checkpoints / TRAINING_REPORT_FILE)
    swap_in(checkpoints, output / CHECKPOINTS_DIR)
    return [output / CHECKPOINTS_DIR]


def _make_callback(emit: EventCallback, token: CancelToken, collator: Any, world_size: int) -> Any:
    """A ``TrainerCallback`` that turns trainer hooks into events and polls the cancel token after
    each optimizer step (``control.should_training_stop`` + a checkpoint); defined lazily so
    importing this module loads no transformers."""
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
            emit(Progress("train", step, total, f"ETA {_format_seconds(eta)}"))
            if _should_cancel(token, world_size):
                self.cancelled = True
                control.should_training_stop = True
                control.should_save = True
                emit(Log(f"cancel requested: saving a checkpoint at step {step}", "warning"))

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            values = {k: float(v) for k, v in (logs or {}).items()
                      if k in _METRIC_KEYS and isinstance(v, int | float)}
            if "loss" in values:
                elapsed = time.time() - self.t0
                if elapsed > 0:
                    values["tokens_per_second"] = collator.train_tokens * world_size / elapsed
            if set(values) - {"epoch"}:
                emit(Metric(int(state.global_step), values))

    return EventCallback()


_METRIC_KEYS = ("loss", "eval_loss", "learning_rate", "epoch", "grad_norm")


def _should_cancel(token: CancelToken, world_size: int) -> bool:
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


def _format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
