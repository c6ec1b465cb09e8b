"""One training run: :func:`run_training` checks the data and writes a dry run's placeholder
here, or fine-tunes for real with transformers + PEFT (:mod:`core.training.hf_train`).

TinyForgeAI's import path, ``core.training.train``, re-exports it; the command line is
``foremforge train`` (:mod:`core.cli.train`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from core.events import ArtifactWritten, CancelToken, EventCallback, Finished, Log, StageStarted, noop
from core.jsonio import utc_now_iso
from core.run_layout import MODEL_STUB_FILE, ModelStub, write_result
from core.staging import locked_output
from core.training.config import LoraSettings, TrainConfig
from core.training.dataset import DatasetError, validate_file
from core.training.outputs import check_output_dir
from core.training.peft_adapter import apply_lora, get_default_lora_config, validate_lora_config

log = logging.getLogger(__name__)

__all__ = ["run_training"]


def run_training(
    data_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    dry_run: bool = False,
    use_lora: bool = False,
    lora_config: dict[str, Any] | None = None,
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
    config: TrainConfig | None = None,
) -> dict[str, Any]:
    """Train on ``data_path`` and write the result under ``output_dir``.

    A dry run validates the whole dataset and writes the placeholder ``model_stub.json``
    (returned). A real run fine-tunes with transformers + PEFT and returns its training
    report. Bad data raises ``DatasetError`` before anything is written.
    """
    emit = on_event or noop
    if config is None:
        lora = LoraSettings(enabled=use_lora)
        if lora_config:
            clean = validate_lora_config(lora_config)
            lora = LoraSettings(enabled=use_lora, r=clean["r"], alpha=clean["alpha"], target_modules=clean["target_modules"])
        config = TrainConfig(data_path=str(data_path), output_dir=str(output_dir), dry_run=dry_run, lora=lora)
    if not config.dry_run:
        return _run_real(config, emit, cancel)
    check_output_dir(config.output_dir)  # before the scan: a bad --out fails at once
    return _run_dry(config, emit, cancel)


def _check_dataset(config: TrainConfig, emit: EventCallback, cancel: CancelToken | None) -> dict[str, Any]:
    """Scan the whole dataset; raise the first problem as a ``DatasetError``."""
    emit(StageStarted("validate", f"checking {config.data_path}"))
    report = validate_file(config.data_path, on_event=emit, cancel=cancel, columns=config.columns)
    if not report.valid:
        raise DatasetError.from_report(config.data_path, report)
    summary = {
        "n_records": report.n_records,
        "avg_input_len": report.avg_input_len,
        "avg_output_len": report.avg_output_len,
    }
    message = (
        f"Dataset summary: {summary['n_records']} records, average input {summary['avg_input_len']:.2f} "
        f"tokens, average output {summary['avg_output_len']:.2f} tokens"
    )
    log.info(message)
    emit(Log(message))
    for warning in report.warnings[:20]:
        emit(Log(f"line {warning.line}: {warning.message}", level="warning"))
    return summary


def _run_dry(config: TrainConfig, emit: EventCallback, cancel: CancelToken | None) -> dict[str, Any]:
    summary = _check_dataset(config, emit, cancel)
    if cancel is not None:
        cancel.raise_if_cancelled()
    emit(StageStarted("train", "dry run: writing the stub artifact"))
    stub = ModelStub(
        model_type="tinyforge_stub",
        n_records=summary["n_records"],
        created_time=utc_now_iso(),
        notes="dry-run artifact",
    )
    if config.lora.enabled:  # apply_lora works on the stub's dict (TinyForgeAI's API)
        stub = ModelStub.model_validate(apply_lora(stub.to_json(), _seed_lora_config(config.lora)))
        emit(Log(f"LoRA applied (dry run): {stub.lora_config}"))
    out = Path(config.output_dir)
    with locked_output(out):  # a concurrent run into the same folder is refused
        _refuse_a_real_output(out)
        path = write_result(out / MODEL_STUB_FILE, stub)
    log.info("Wrote %s", path)
    emit(ArtifactWritten(str(path)))
    emit(Finished("completed", {"model_path": str(path), **stub.to_json()}))
    return stub.to_json()


def _refuse_a_real_output(out: Path) -> None:
    """A dry run never writes its placeholder beside a real trained model: ``predict`` would
    then refuse the model and ``export`` serve it, each taking the folder for another thing."""
    from core.run_layout import MODEL_MANIFEST_FILE, TRAINING_REPORT_FILE
    from core.training.errors import TrainingError

    real = [name for name in (MODEL_MANIFEST_FILE, TRAINING_REPORT_FILE) if (out / name).exists()]
    if real:
        raise TrainingError(f"{out} holds a real training output ({real[0]}); a dry run would mix its "
                            "placeholder into it: choose another --out")


def _seed_lora_config(lora: LoraSettings) -> dict[str, Any]:
    """A dry run's ``lora_config`` (TinyForgeAI's shape; its defaults fill what is unset);
    alpha stays an int when it is whole."""
    seed = get_default_lora_config()
    alpha_value = lora.alpha if lora.alpha is not None else seed["alpha"]
    alpha: float | int = int(alpha_value) if float(alpha_value).is_integer() else alpha_value
    return {"r": lora.r or seed["r"], "alpha": alpha, "target_modules": list(lora.target_modules or seed["target_modules"])}


def _run_real(config: TrainConfig, emit: EventCallback, cancel: CancelToken | None) -> dict[str, Any]:
    try:
        from core.training.hf_train import run_real_training
    except ImportError as exc:  # pragma: no cover - only before the real trainer exists
        raise RuntimeError(
            "Real training is not available in this build; use --dry-run to validate and write the stub."
        ) from exc
    return run_real_training(config, on_event=emit, cancel=cancel)
