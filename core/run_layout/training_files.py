"""A training output's files: ``training_report.json``, ``model_manifest.json``, ``variants.jsonl``'s
rows, and the :class:`Estimate` of a run not yet trained.

The evaluation the training runs writes ``evaluation.json`` (:mod:`core.run_layout.evaluation_files`);
the training report keeps its verdict and split means (:class:`EvaluationSummary`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SerializationInfo, field_serializer

from core.options import TrainConfig
from core.run_layout.names import EVALUATION_FILE, MODEL_DIR, MODEL_MANIFEST_FILE, TRAINING_REPORT_FILE
from core.run_layout.results import _first_file, _read, _Result, _tolerant


class EvaluationSummary(_Result):
    """``training_report.json`` → ``evaluation``: the verdict and split means of ``evaluation.json``,
    or ``cancelled`` (and no file) when the evaluation was cancelled."""

    verdict: str = ""
    splits: dict[str, Any] = Field(default_factory=dict)
    cancelled: bool | None = None
    file: str | None = EVALUATION_FILE


class PhrasingRow(_Result):
    """One phrasing of a fact (``variants.jsonl``, ``core.training.variants``): the question as
    asked, the fact's answer, which fact, where the wording came from and, in a run, its split."""

    input: str = ""
    output: str = ""
    fact: int = 0
    source: str = ""  # "original" (the user's own question), "surface" or "generated"
    split: str | None = None  # "train" or "unseen" (held out to check questions asked in other words)


class TrainingReport(_Result):
    """``training_report.json`` of a real training output (completed, cancelled or failed).

    The fields are in the order :mod:`core.training.run_report` writes them: every report's
    (status to versions; a failed report adds ``error``, one cancelled before its first step
    ``checkpoint``), then a trained run's, then rank 0's ``evaluation`` and ``artifacts`` (completed)
    or ``checkpoint`` (cancelled).
    """

    status: str = ""
    base_model: str | None = None
    config: Annotated[TrainConfig | None, _tolerant(TrainConfig)] = None
    n_records: int | None = None
    n_train: int | None = None
    n_eval: int | None = None
    dataset_sha256: str | None = None
    world_size: int | None = None
    created_time: str | None = None
    duration_seconds: float | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    architecture: str | None = None
    n_train_pairs: int | None = None  # phrasings trained (question variants) or records
    n_eval_pairs: int | None = None
    n_truncated: int | None = None
    variants: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None  # best_step, best_loss, stopped_at, reason
    device: str | None = None
    precision: str | None = None
    precision_reason: str | None = None
    threads: int | None = None
    global_step: int | None = None
    total_steps: int | None = None
    train_loss: float | None = None
    log_history: list[dict[str, Any]] = Field(default_factory=list)
    train_seconds: float | None = None
    train_tokens: int | None = None
    tokens_per_second: float | None = None
    resumed_from: str | None = None
    recipe: dict[str, Any] | None = None
    # a CPU run's batches longer than max_tokens padded tokens ran in parts (core.training.step_parts)
    step_parts: dict[str, int] | None = None
    lora_applied: bool | None = None
    lora_config: dict[str, Any] | None = None
    lora_timestamp: str | None = None
    evaluation: EvaluationSummary | None = None
    evaluation_cancelled: bool | None = None
    checkpoint: str | None = None
    artifacts: dict[str, str | None] | None = None
    error: str | None = None

    @field_serializer("config")
    def _whole_config(self, config: TrainConfig | None, info: SerializationInfo) -> Any:
        """The config whole, defaults included, whichever fields of the report are dumped."""
        return config.model_dump(mode="json" if info.mode_is_json() else "python") if config is not None else None


class ModelManifest(_Result):
    """``model_manifest.json`` of a trained model (written by ``core.training.run_report``): what the export
    needs to know of it. A LoRA run adds TinyForgeAI's ``lora_*`` keys (kept as they are)."""

    model_type: str | None = None  # "tinyforge_hf"
    n_records: int | None = None
    created_time: str | None = None
    base_model: str | None = None
    architecture: str | None = None  # "causal" | "seq2seq"
    model_dir: str | None = None
    lora_applied: bool | None = None
    lora_config: dict[str, Any] | None = None
    lora_timestamp: str | None = None
    data_path: str | None = None  # an older manifest's dataset (parity inputs)


class Estimate(_Result):
    """What :func:`core.training.estimate.estimate_run` projects for a real run."""

    probe_steps: int
    probe_seconds: float
    seconds_per_step: float
    n_train: int
    n_eval: int
    steps_per_epoch: int
    total_steps: int
    epochs: float
    max_steps: int
    recipe: dict[str, Any] = Field(default_factory=dict)
    recipe_summary: str = ""
    projected_train_seconds: float
    overhead_seconds: float
    projected_total_seconds: float
    peak_rss_bytes: int = 0
    memory_source: str = ""
    device: str | None = None
    precision: str | None = None
    tokens_per_second: float | None = None
    base_model: str | None = None


# --------------------------------------------------------------------------- readers


def training_report_path(folder: str | os.PathLike[str]) -> Path | None:
    """``training_report.json`` of a training output folder or of a run folder (``model/``)."""
    base = Path(folder)
    return _first_file(base / TRAINING_REPORT_FILE, base / MODEL_DIR / TRAINING_REPORT_FILE)


def read_training_report(folder: str | os.PathLike[str]) -> TrainingReport:
    """The training report of a training output folder or a run folder."""
    path = training_report_path(folder) or Path(folder) / TRAINING_REPORT_FILE
    return _read(TrainingReport, path)


def read_model_manifest(model_dir: str | os.PathLike[str]) -> ModelManifest:
    """``model_manifest.json`` of a training output folder (a run's ``model/``)."""
    return _read(ModelManifest, Path(model_dir) / MODEL_MANIFEST_FILE)
