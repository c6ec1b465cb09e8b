"""A real training's model and HF Trainer, set up from its :class:`~core.training.run_plan.RunPlan`.

In the order :mod:`core.training.hf_train` calls them: :func:`load_base` (the base model, its
tokenizer and prompt format), :func:`prepare_pairs` (question variants written by the base
model, the split, the recipe), :func:`encode_pairs`, :func:`set_training_attention`,
:func:`apply_lora`, :func:`apply_precision` (with bf16 + LoRA the frozen base stored in bf16
once), and :func:`make_trainer` (the answer-only-loss Trainer, its arguments, our event
callback, early stopping and the step-parts limit). After training, :func:`restore_base` puts
the frozen base back in fp32. Heavy libraries load inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.events import CancelToken, EventCallback, Log
from core.run_layout import CHECKPOINTS_DIR
from core.training.config import TrainConfig
from core.training.errors import TrainingError
from core.training.recipe import steps_per_epoch
from core.training.run_plan import RunPlan, choose_run_recipe, resolve_precision
from core.training.trainer_callback import make_callback

if TYPE_CHECKING:
    from core.training.precision import PrecisionChoice

logger = logging.getLogger(__name__)

__all__ = [
    "all_reduce_sum",
    "apply_lora",
    "apply_precision",
    "encode_pairs",
    "load_base",
    "make_trainer",
    "prepare_pairs",
    "restore_base",
    "set_training_attention",
    "torch_threads",
    "training_arguments",
    "unwrap",
    "usable_cores",
    "zero_grad_of_trainable",
]


def usable_cores() -> int:
    """The CPU cores this process may run on (affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def torch_threads() -> int:
    """torch's intra-op thread count now."""
    import torch

    return int(torch.get_num_threads())


def load_base(plan: RunPlan, token: CancelToken) -> tuple[Any, Any, Any]:
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


def prepare_pairs(plan: RunPlan, model: Any, tokenizer: Any, emit: EventCallback, token: CancelToken) -> None:
    """Question variants (written by the loaded base model), the split, then the recipe for them."""
    from core.training.phrasings import prepare_pairs as prepare_run_pairs

    model.eval()  # the variants are written before training, with the base model as it was loaded
    plan.pairs = prepare_run_pairs(plan.config, plan.records, plan.train_idx, plan.eval_idx, plan.sha256,
                                   (model, tokenizer), emit, token)
    token.raise_if_cancelled()
    if plan.recipe is None:
        choose_run_recipe(plan, len(plan.pairs.train), emit)


def encode_pairs(plan: RunPlan, tokenizer: Any, fmt: Any, emit: EventCallback) -> tuple[list[Any], list[Any]]:
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


def set_training_attention(model: Any, device: str, arch: str, examples: list[Any], emit: EventCallback) -> str | None:
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


def apply_lora(model: Any, plan: RunPlan, emit: EventCallback) -> Any:
    """The model wrapped in a LoRA adapter on the plan's targets when LoRA is on, else as it is."""
    config = plan.config
    if not config.lora.enabled:
        return model
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
    return model


def apply_precision(model: Any, config: TrainConfig, device: str, emit: EventCallback) -> tuple[PrecisionChoice, int]:
    """Choose the precision (said in the log); with bf16 + LoRA store the frozen base in bf16 once.

    Returns the choice and how many tensors went to bf16 (restored to fp32 after training).
    """
    choice = resolve_precision(config.precision, device)
    precision = choice.precision
    emit(Log(f"precision {precision}: {choice.reason}; {torch_threads()} CPU thread(s)"
             if device == "cpu" else f"precision {precision}: {choice.reason}"))
    if precision == "bf16" and config.lora.enabled:
        # The frozen base in bf16 once: no per-step weight casts, half the memory (see precision.py).
        from core.training.precision import store_frozen_in_bf16

        return choice, store_frozen_in_bf16(model)
    return choice, 0


def make_trainer(plan: RunPlan, staging: Path, model: Any, tokenizer: Any, fmt: Any, examples: list[Any],
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
    args = training_arguments(plan, staging, device, precision, eval_set is not None, steps["eval"])
    collator = DynamicPadCollator(fmt.pad_token_id, arch)
    callback = make_callback(emit, token, collator, int(args.world_size))
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


def training_arguments(plan: RunPlan, staging: Path, device: str, precision: str, has_eval: bool,
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


@contextlib.contextmanager
def zero_grad_of_trainable(model: Any) -> Iterator[None]:
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


def restore_base(model: Any, plan: RunPlan) -> None:
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


def all_reduce_sum(value: int, world_size: int) -> int:
    """``value`` summed over the ``torchrun`` ranks (times ``world_size`` without a process group)."""
    if world_size <= 1:
        return value
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return value * world_size
    tensor = torch.tensor([value], dtype=torch.long)
    dist.all_reduce(tensor)
    return int(tensor.item())


def unwrap(model: Any) -> Any:
    """The model inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)
