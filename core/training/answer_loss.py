"""The language-model head and the loss only where a label is not ignored (the answer tokens).

A causal model spends a large share of a training step on the prompt: the head multiplies every
position's hidden state by the whole vocabulary (576 x 49,152 for SmolLM2) and log-softmax runs
over it, although labels are -100 on every prompt token and those positions carry no loss. Here
the model body runs as usual, a forward pre-hook on the output-embedding module (``lm_head``)
keeps only the hidden states whose label counts, and cross-entropy runs on those rows:

* causal: the hidden state at position t predicts label t+1 (the HF shift), so the rows kept
  are those whose *next* label is not -100;
* seq2seq: the decoder reads the labels shifted right (``decoder_input_ids``, as the model
  builds them itself when given labels) and position t predicts label t.

Everything the model does around the head still runs (T5's output scaling before it, a logit
soft-cap or scale after it: they act row by row), so the loss is the HF loss, summed over the
same tokens and divided by the same count; the gradients are the same too (an ignored position
contributes exactly zero to both). Works through PEFT and DDP wrappers, since the hook sits on
the inner module.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["IGNORE_INDEX", "answer_loss", "answer_positions", "inner_model", "make_answer_only_trainer",
           "output_head"]

IGNORE_INDEX = -100


def inner_model(model: Any) -> Any:
    """The transformers model inside DDP (``module``) and PEFT (``get_base_model``) wrappers."""
    model = getattr(model, "module", model)
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def output_head(model: Any) -> Any:
    """The module that turns hidden states into vocabulary logits (``lm_head``)."""
    head = inner_model(model).get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(inner_model(model)).__name__} has no output embeddings (lm_head)")
    return head


def is_encoder_decoder(model: Any) -> bool:
    return bool(getattr(inner_model(model).config, "is_encoder_decoder", False))


def target_mask(labels: Any, seq2seq: bool) -> tuple[Any, Any]:
    """``(rows, targets)``: a bool mask over the hidden-state positions that carry loss, and the
    label each of those positions predicts (in the same row-major order)."""
    if seq2seq:
        rows = labels != IGNORE_INDEX
        return rows, labels[rows]
    import torch

    following = labels[:, 1:]
    rows = torch.zeros_like(labels, dtype=torch.bool)
    rows[:, :-1] = following != IGNORE_INDEX
    return rows, following[following != IGNORE_INDEX]


@contextlib.contextmanager
def answer_positions(model: Any, rows: Any) -> Iterator[None]:
    """While active, the head of ``model`` sees only the hidden states at ``rows`` ([B, T] bool):
    its input [B, T, H] becomes [N, H], and the model's logits [N, V]."""

    def gather(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        if hidden.dim() == 3 and hidden.shape[:2] == rows.shape:
            return (hidden[rows], *args[1:])
        return args  # e.g. a model that already sliced its hidden states: leave it whole

    handle = output_head(model).register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()


def answer_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> tuple[Any, Any]:
    """``(loss, outputs)`` of ``model`` on ``inputs`` (which hold ``labels``), the head run only on
    answer tokens. The loss is the summed token cross-entropy divided by ``num_items_in_batch``
    (the count over the whole accumulated batch, as the HF Trainer passes it), or the mean over
    this batch's answer tokens when that is None: exactly the HF causal-LM loss either way."""
    import torch
    import torch.nn.functional as F

    inputs = dict(inputs)
    labels = inputs.pop("labels")
    seq2seq = is_encoder_decoder(model)
    if seq2seq and "decoder_input_ids" not in inputs and "decoder_inputs_embeds" not in inputs:
        inputs["decoder_input_ids"] = inner_model(model).prepare_decoder_input_ids_from_labels(labels=labels)
    rows, targets = target_mask(labels, seq2seq)
    with answer_positions(model, rows):
        outputs = model(**inputs, use_cache=False)
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
        raise RuntimeError(f"answer-only logits have shape {tuple(logits.shape)}, expected "
                           f"({targets.shape[0]}, vocab): the model's head did not take the gathered rows")
    total = F.cross_entropy(logits.float(), targets.to(logits.device), reduction="sum")
    if num_items_in_batch is None:
        count = torch.clamp(torch.tensor(targets.shape[0], device=total.device), min=1)
    else:
        count = num_items_in_batch
        if torch.is_tensor(count):
            count = count.to(total.device)
    return total / count, outputs


def make_answer_only_trainer(max_step_tokens: int = 0, **kwargs: Any) -> Any:
    """An HF ``Trainer`` whose loss (training and evaluation) is :func:`answer_loss`, a training
    batch longer than ``max_step_tokens`` padded tokens run in parts (``core.training.step_parts``;
    0: never); defined lazily so importing this module loads no transformers."""
    from transformers import Trainer

    from core.training.step_parts import split_batch

    class AnswerOnlyTrainer(Trainer):
        _body_parameters: int | None = None
        _batch_answer_tokens: Any = None  # while a batch runs in parts: its answer-token count
        split_steps = 0  # training batches that ran in parts

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            parts = split_batch(inputs, max_step_tokens)
            if len(parts) == 1:
                return super().training_step(model, inputs, num_items_in_batch)
            self.split_steps += 1
            _, targets = target_mask(inputs["labels"], is_encoder_decoder(model))
            self._batch_answer_tokens = max(1, int(targets.shape[0]))
            total = None
            try:
                for index, part in enumerate(parts):
                    # one gradient all-reduce per batch under DDP, as without parts
                    last = index == len(parts) - 1
                    with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                        loss = super().training_step(model, part, num_items_in_batch)
                    total = loss if total is None else total + loss
            finally:
                self._batch_answer_tokens = None
            return total

        def floating_point_ops(self, inputs: dict[str, Any]) -> int:
            """HF's estimate (6 x tokens x parameters without embeddings), the parameters counted
            once: HF walks all of the model's modules for it after every step (17 ms a step on
            the starter model, 2% of a LoRA step)."""
            main_input = getattr(self.model, "main_input_name", "input_ids")
            if main_input not in inputs or not hasattr(self.model, "num_parameters"):
                return 0
            if self._body_parameters is None:
                self._body_parameters = int(self.model.num_parameters(exclude_embeddings=True))
            return 6 * inputs[main_input].numel() * self._body_parameters

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if not self.model_accepts_loss_kwargs:
                num_items_in_batch = None  # the Trainer then divides by the accumulation steps itself
            across_ranks = num_items_in_batch is not None
            if num_items_in_batch is None:
                # a part of a batch divides by the whole batch's count, so that the parts add up
                num_items_in_batch = self._batch_answer_tokens
            loss, outputs = answer_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs and across_ranks:
                # the count is summed over ranks and DDP averages gradients: undo the average (as HF does)
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

    return AnswerOnlyTrainer(**kwargs)
