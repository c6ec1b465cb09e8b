"""Typed configuration of one training run (pydantic), shared by the CLI, the GUI and run.json."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"


class LoraSettings(BaseModel):
    """LoRA hyper-parameters. None means "the recipe decides" for a real run
    (:mod:`core.training.recipe`) and the seed's r 8, alpha 16, q,v for a dry run's stub."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    r: int | None = Field(None, ge=1)
    alpha: float | None = Field(None, gt=0)
    dropout: float | None = Field(None, ge=0, lt=1)  # None: the recipe's (0 for a real run)
    # None: every linear projection for a real run (the recipe), the seed's q,v for a dry run.
    target_modules: list[str] | None = None

    @field_validator("target_modules")
    @classmethod
    def _non_empty_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [name.strip() for name in value if name.strip()]
        if not names:
            raise ValueError("target_modules must name at least one module")
        return names


class TrainConfig(BaseModel):
    """Everything that describes a run; saved beside each run so it is reproducible."""

    model_config = ConfigDict(extra="forbid")

    data_path: str
    output_dir: str
    dry_run: bool = False
    base_model: str = DEFAULT_BASE_MODEL
    lora: LoraSettings = Field(default_factory=LoraSettings)
    # None: chosen by the recipe from the mode and the data size (core.training.recipe).
    epochs: float | None = Field(None, gt=0)
    max_steps: int = Field(-1, ge=-1)  # -1: run for ``epochs``
    learning_rate: float | None = Field(None, gt=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(256, ge=8)
    eval_split: float | None = Field(None, ge=0, lt=1)  # None: 0.1 with >= 10 records, else 0
    seed: int = 42
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    resume: bool = False
    logging_steps: int = Field(1, ge=1)
