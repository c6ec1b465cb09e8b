"""The recipe: what a real run uses for the hyper-parameters the user leaves unset, and why."""

from __future__ import annotations

import json

from core.cli.train import build_parser, config_from_args
from core.training.config import LoraSettings, TrainConfig
from core.training.peft_adapter import get_default_lora_config
from core.training.recipe import (
    FULL_LEARNING_RATE,
    LORA_DROPOUT,
    LORA_LEARNING_RATE,
    MAX_STEPS,
    MIN_STEPS,
    choose_recipe,
    resolve_config,
)
from core.training.train import run_training
from tests.core.training_helpers import ROOT

LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _config(**kwargs: object) -> TrainConfig:
    return TrainConfig(data_path="d.jsonl", output_dir="out", **kwargs)


def test_lora_defaults_train_every_linear_projection_with_enough_steps() -> None:
    recipe = choose_recipe(_config(lora=LoraSettings(enabled=True)), n_train=32, all_linear=LINEAR)
    assert (recipe.lora_r, recipe.lora_alpha, recipe.lora_targets) == (16, 32.0, LINEAR)
    assert recipe.learning_rate == LORA_LEARNING_RATE
    # 32 records at batch 8 are 4 steps an epoch: 10 epochs reach the floor of 40 steps.
    assert recipe.epochs == 10 and recipe.total_steps == MIN_STEPS == 40 and recipe.max_steps == -1
    assert recipe.lora_dropout == LORA_DROPOUT == 0.0
    assert set(recipe.reasons) == {"LoRA rank", "LoRA alpha", "LoRA dropout", "LoRA targets", "learning rate",
                                   "epochs"}
    assert "at least 40 steps" in recipe.reasons["epochs"]
    assert "q_proj" in recipe.summary() and recipe.summary().startswith("recipe: ")


def test_full_finetuning_gets_its_own_learning_rate() -> None:
    recipe = choose_recipe(_config(), n_train=32, all_linear=LINEAR)
    assert recipe.learning_rate == FULL_LEARNING_RATE < LORA_LEARNING_RATE
    assert recipe.lora_r is None and recipe.lora_targets is None and "LoRA rank" not in recipe.reasons
    assert "full fine-tuning" in recipe.reasons["learning rate"]


def test_what_the_user_sets_is_kept_and_not_explained() -> None:
    lora = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.1, target_modules=["q_proj"])
    config = _config(lora=lora, learning_rate=3e-4, epochs=2)
    recipe = choose_recipe(config, n_train=32, all_linear=LINEAR)
    assert (recipe.lora_r, recipe.lora_alpha, recipe.lora_targets) == (4, 8, ["q_proj"])
    assert recipe.learning_rate == 3e-4 and recipe.epochs == 2 and recipe.total_steps == 8
    assert recipe.reasons == {} and recipe.summary() == "recipe: every hyper-parameter set by you"
    resolved = resolve_config(config, recipe)
    assert resolved.lora.r == 4 and resolved.lora.dropout == 0.1 and resolved.learning_rate == 3e-4


def test_max_steps_wins_over_epochs() -> None:
    recipe = choose_recipe(_config(max_steps=7), n_train=1000)
    assert recipe.total_steps == 7 and recipe.max_steps == 7 and "epochs" not in recipe.reasons


def test_large_datasets_are_capped_and_middle_ones_get_three_epochs() -> None:
    large = choose_recipe(_config(), n_train=100_000)
    assert large.max_steps == large.total_steps == MAX_STEPS and "capped" in large.reasons["steps"]
    middle = choose_recipe(_config(), n_train=400)  # 50 steps an epoch
    assert middle.epochs == 3 and middle.total_steps == 150 and middle.max_steps == -1


def test_resolved_config_has_every_value() -> None:
    config = _config(lora=LoraSettings(enabled=True))
    resolved = resolve_config(config, choose_recipe(config, 3, LINEAR))
    assert resolved.lora.r == 16 and resolved.lora.alpha == 32 and resolved.lora.target_modules == LINEAR
    assert resolved.lora.dropout == 0.0
    assert resolved.learning_rate == LORA_LEARNING_RATE and resolved.epochs == 40
    assert config.lora.r is None  # the input is left as it was


def test_dry_run_keeps_the_seeds_lora_defaults(tmp_path) -> None:
    stub = run_training(ROOT / "examples" / "sample_qna.jsonl", tmp_path, dry_run=True, use_lora=True)
    assert stub["lora_config"] == get_default_lora_config() == {"r": 8, "alpha": 16, "target_modules": ["q", "v"]}
    written = json.loads((tmp_path / "model_stub.json").read_text())
    assert written["lora_config"] == {"r": 8, "alpha": 16, "target_modules": ["q", "v"]}


def test_cli_flags_default_to_the_recipe_and_override_it() -> None:
    args = build_parser().parse_args(["--data", "d.jsonl", "--out", "o", "--use-lora"])
    config = config_from_args(args)
    assert config.lora.r is None and config.lora.alpha is None and config.lora.target_modules is None
    assert config.learning_rate is None and config.epochs is None and config.lora.dropout is None
    args = build_parser().parse_args(["--data", "d.jsonl", "--out", "o", "--use-lora", "--lora-r", "4",
                                      "--lora-alpha", "8", "--lr", "1e-4", "--epochs", "2",
                                      "--lora-targets", "q_proj,v_proj", "--lora-dropout", "0.1"])
    config = config_from_args(args)
    assert (config.lora.r, config.lora.alpha, config.learning_rate, config.epochs) == (4, 8, 1e-4, 2)
    assert config.lora.target_modules == ["q_proj", "v_proj"] and config.lora.dropout == 0.1
