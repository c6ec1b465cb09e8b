"""A training batch in parts: bounded activation memory, the whole batch's loss and gradients."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.training.hf_train import run_real_training
from core.training.step_parts import (
    STEP_TOKENS_ENV,
    activation_budget,
    activation_bytes_per_token,
    max_step_tokens,
    run_step_tokens,
    split_batch,
)
from tests.core.training.test_training_speed import _batch
from tests.core.training_helpers import EventRecorder, tiny_config

STARTER = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, vocab_size=49152)


def _padded(lengths: list[int], width: int) -> dict:
    import torch

    ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.arange(1, n + 1)
        mask[row, :n] = 1
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_a_batch_within_the_budget_stays_whole() -> None:
    batch = _padded([10, 8, 6, 4], 10)
    assert split_batch(batch, 40)[0] is batch
    assert split_batch(batch, 0)[0] is batch  # 0: never split


def test_a_long_batch_runs_as_row_groups_of_the_same_shape() -> None:
    import torch

    batch = _padded([10, 9, 5, 4, 3, 2], 10)
    parts = split_batch(batch, 30)  # 60 padded tokens: two groups of three rows
    assert [tuple(p["input_ids"].shape) for p in parts] == [(3, 10), (3, 10)]
    for key in batch:
        assert torch.equal(torch.cat([p[key] for p in parts]), batch[key])
    assert len(split_batch(_padded([5] * 8, 100), 100)) == 8  # down to one row a part, never a cut row
    assert [len(p["input_ids"]) for p in split_batch(_padded([4] * 5, 4), 8)] == [2, 2, 1]


STARTER_WEIGHTS = 134_515_008  # parameters


def test_the_budget_leaves_room_for_the_weights() -> None:
    fp32 = max_step_tokens(STARTER, "fp32", STARTER_WEIGHTS * 4)
    bf16 = max_step_tokens(STARTER, "bf16", STARTER_WEIGHTS * 2)
    assert 230 <= fp32 <= 300  # 0.5 GiB at about 2 MB a token
    assert 550 <= bf16 <= 700  # 0.75 GiB at about 1.3 MB a token
    assert activation_budget(STARTER_WEIGHTS * 2) > activation_budget(STARTER_WEIGHTS * 4) == 512 * 2**20
    assert activation_budget(10 * 2**30) == 512 * 2**20  # a large model gets the floor, not nothing
    assert activation_bytes_per_token(STARTER, "fp32") == pytest.approx(2.0e6, rel=0.1)
    assert max_step_tokens(SimpleNamespace(), "fp32", 0) == 0  # unknown shape: never split
    assert max_step_tokens(SimpleNamespace(**{**vars(STARTER), "num_hidden_layers": 3000}), "fp32", 0) == 128


def test_a_cpu_run_takes_the_budget_a_gpu_whole_batches_and_the_environment_wins(monkeypatch) -> None:
    import torch

    model = torch.nn.Linear(1000, 1000)  # 4 MB of fp32 weights
    model.config = STARTER
    monkeypatch.delenv(STEP_TOKENS_ENV, raising=False)
    assert run_step_tokens(model, "fp32", "cpu") == max_step_tokens(STARTER, "fp32", 1001 * 1000 * 4)
    assert run_step_tokens(model, "bf16", "cuda") == 0
    monkeypatch.setenv(STEP_TOKENS_ENV, "0")
    assert run_step_tokens(model, "fp32", "cpu") == 0
    monkeypatch.setenv(STEP_TOKENS_ENV, "lots")
    with pytest.raises(ValueError, match=f"{STEP_TOKENS_ENV} must be a whole number of tokens"):
        run_step_tokens(model, "fp32", "cpu")


@pytest.mark.parametrize("counted", [True, False])
@pytest.mark.parametrize("base", ["tiny-causal", "tiny-seq2seq"])
def test_a_batch_in_parts_gives_the_whole_batch_loss_and_gradients(base, counted) -> None:
    """``counted``: the Trainer passes the batch's answer-token count (gradient accumulation
    aware); otherwise each part must still divide by the whole batch's count."""
    import torch
    from transformers import TrainingArguments

    from core.training.answer_loss import make_answer_only_trainer

    model, batch = _batch(base, lora=True)
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    count = int((batch["labels"] != -100).sum()) if base == "tiny-seq2seq" else int((batch["labels"][:, 1:] != -100).sum())
    results = []
    for tokens in (0, 1):  # whole, then one row per part
        trainer = make_answer_only_trainer(max_step_tokens=tokens, model=model, args=args)
        trainer.current_gradient_accumulation_steps = 1
        trainer.model_accepts_loss_kwargs = counted
        loss = trainer.training_step(model, dict(batch), torch.tensor(count) if counted else None)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad()
        results.append((float(loss), grads, trainer.split_steps))
    (whole, whole_grads, whole_splits), (parted, parted_grads, parted_splits) = results
    assert (whole_splits, parted_splits) == (0, 1)
    assert parted == pytest.approx(whole, rel=1e-5)
    assert whole_grads.keys() == parted_grads.keys() and whole_grads
    for name, grad in whole_grads.items():
        torch.testing.assert_close(parted_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_run_in_parts_trains_as_the_whole_batches_do(tmp_path, monkeypatch) -> None:
    losses, reports = {}, {}
    for tokens in (0, 16):
        monkeypatch.setenv(STEP_TOKENS_ENV, str(tokens))
        recorder = EventRecorder()
        reports[tokens] = run_real_training(tiny_config(tmp_path / str(tokens), max_steps=4), on_event=recorder)
        losses[tokens] = [h["loss"] for h in reports[tokens]["log_history"] if "loss" in h]
        said = any("run in parts" in e.message for e in recorder.of("log"))
        assert said == bool(tokens)
    assert reports[0]["step_parts"] == {"max_tokens": 0, "split_steps": 0}
    assert reports[16]["step_parts"]["split_steps"] == 4
    assert losses[16] == pytest.approx(losses[0], rel=1e-4)


def test_a_malformed_step_tokens_value_fails_before_the_model_loads(tmp_path, monkeypatch) -> None:
    from core.training.errors import TrainingError

    monkeypatch.setenv(STEP_TOKENS_ENV, "lots")
    recorder = EventRecorder()
    with pytest.raises(TrainingError, match=f"^{STEP_TOKENS_ENV} must be a whole number of tokens"):
        run_real_training(tiny_config(tmp_path / "out", max_steps=1), on_event=recorder)
    assert [e.stage for e in recorder.of("stage")] == ["validate"]  # no "load": it failed in the plan
    assert not (tmp_path / "out").exists()
