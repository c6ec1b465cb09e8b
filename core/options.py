"""The options of a run, typed (pydantic): the training config, its LoRA settings, the export
options and what a run does, shared by the CLI, the GUI and ``run.json``.

Plain data under the run layout (:mod:`core.run_layout` records them in ``run.json`` and the
training report, and re-exports ``RunOptions`` / ``ExportOptions``), so this module sits below
training; trainers, the window and scripts import ``TrainConfig`` as :mod:`core.training.config`,
its documented path.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core import options_defaults as d
from core.options_defaults import DEFAULT_BASE_MODEL

__all__ = ["DEFAULT_BASE_MODEL", "ExportOptions", "LoraSettings", "RunOptions", "TrainConfig"]


def _field(limits: d.Limits) -> Any:
    """A pydantic ``Field`` with the default and bounds written in :mod:`core.options_defaults`."""
    return Field(limits.default, **limits.bounds())


class LoraSettings(BaseModel):
    """LoRA hyper-parameters. None means "the recipe decides" for a real run
    (:mod:`core.training.recipe`) and TinyForgeAI's r 8, alpha 16, q,v for a dry run's stub."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    r: int | None = _field(d.LORA_R)
    alpha: float | None = _field(d.LORA_ALPHA)
    dropout: float | None = _field(d.LORA_DROPOUT)  # None: the recipe's (0 for a real run)
    # None: every linear projection for a real run (the recipe), TinyForgeAI's q,v for a dry run.
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
    epochs: float | None = _field(d.EPOCHS)
    max_steps: int = _field(d.MAX_STEPS)  # -1: run for ``epochs``
    learning_rate: float | None = _field(d.LEARNING_RATE)
    batch_size: int = _field(d.BATCH_SIZE)
    grad_accum: int = _field(d.GRAD_ACCUM)
    max_length: int = _field(d.MAX_LENGTH)
    eval_split: float | None = _field(d.EVAL_SPLIT)  # None: 0.1 with >= 10 records, else 0
    variants: int | None = _field(d.VARIANTS)  # None: the recipe's; 0: --no-variants
    variant_generator: str | None = None  # the model that writes rephrasings; None: the base model
    eval_data_path: str | None = None  # the user's own evaluation file, scored after training
    # A table's (or any file's) own names for the question/answer/system (core.training.formats).
    columns: dict[Literal["question", "answer", "system"], str] | None = None
    loss_on: Literal["all", "last"] = "all"  # a conversation's answers that train: every one, or the last
    seed: int = _field(d.SEED)
    device: Literal["auto", "cpu", "cuda", "mps"] = _field(d.DEVICE)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _field(d.PRECISION)
    resume: bool = False
    logging_steps: int = _field(d.LOGGING_STEPS)


class ExportOptions(BaseModel):
    """Options of the export stage: ONNX export, quantization, overwrite (TinyForgeAI's builder flags)."""

    model_config = ConfigDict(extra="forbid")

    export_onnx: bool = False
    quantize: Literal["int8", "none"] = "int8"
    overwrite: bool = False
    gguf: bool = False  # also gguf/ for llama.cpp and Ollama (a trained Llama-family model)


class RunOptions(BaseModel):
    """What a run does: ``actions`` in order, the training config and the export options.

    ``train.output_dir`` is filled in by :func:`core.runs.create_run` (the run's ``model/``
    folder). ``source_model`` names a model to export when the run does not train one itself.
    """

    model_config = ConfigDict(extra="forbid")

    actions: list[Literal["train", "export"]] = Field(default_factory=lambda: ["train"])
    train: TrainConfig
    export: ExportOptions = Field(default_factory=ExportOptions)
    source_model: str | None = None
