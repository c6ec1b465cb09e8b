"""The concrete workers: dataset index, dataset validation, and a train/export run."""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal

from tinyforge_gui.workers import Worker

logger = logging.getLogger(__name__)


class WarmupWorker(Worker):
    """Imports the core modules a run needs, off the GUI thread, while the user looks around."""

    MODULES = ("core.training.line_index", "core.training.dataset", "core.runs", "core.training.train",
               "core.exporter.builder")

    def __init__(self) -> None:
        super().__init__("warmup")

    def work(self) -> Any:
        import importlib

        loaded = []
        for name in self.MODULES:
            self.cancel_token.raise_if_cancelled()
            try:
                importlib.import_module(name)
                loaded.append(name)
            except Exception as exc:  # noqa: BLE001 - a missing piece shows up when it is used
                logger.info("warm-up could not import %s: %s", name, exc)
        return loaded


class IndexWorker(Worker):
    """Builds a ``LineIndex`` (byte offsets of every data line) for random access."""

    def __init__(self, path: str) -> None:
        super().__init__("index")
        self.path = path

    def work(self) -> Any:
        from core.training.dataset import LineIndex

        return LineIndex.build(self.path, on_event=self.relay, cancel=self.cancel_token)


class ValidateWorker(Worker):
    """Scans the whole file: summary statistics and every problem with its line."""

    def __init__(self, path: str) -> None:
        super().__init__("validate")
        self.path = path

    def work(self) -> Any:
        from core.training.dataset import validate_file

        report = validate_file(self.path, on_event=self.relay, cancel=self.cancel_token)
        return report.model_dump(mode="json")


class RunWorker(Worker):
    """Creates (or reopens) a run folder and executes its stages via :mod:`core.runs`.

    ``options`` is a ``RunOptions`` dict; with ``existing_run`` set the stages run inside that
    folder (re-export of a past run), else a new run folder is created under ``output_root``.
    """

    run_created = Signal(str)  # run folder

    def __init__(
        self,
        options: dict[str, Any],
        output_root: str,
        dataset_sha256: str | None = None,
        existing_run: str | None = None,
        resume: bool = False,
    ) -> None:
        super().__init__("run")
        self.options = options
        self.output_root = output_root
        self.dataset_sha256 = dataset_sha256
        self.existing_run = existing_run
        self.resume = resume

    def work(self) -> Any:
        from core import runs

        opts = runs.RunOptions.model_validate(self.options)
        if self.existing_run:
            run = runs.open_run(self.existing_run)
            record_options = run.record.setdefault("options", {})
            record_options["export"] = opts.export.model_dump(mode="json")
            run.save()
        else:
            run = runs.create_run(self.output_root, opts, dataset_sha256=self.dataset_sha256)
        self.run_created.emit(str(run.path))
        # A cancel that came already is recorded by execute_run (status "cancelled").
        status = runs.execute_run(
            run,
            gui_stages(opts.actions, resume=self.resume),
            on_event=self.relay,
            cancel=self.cancel_token,
            overwrite=opts.export.overwrite,
        )
        return {"status": status, "run_dir": str(run.path)}


# ---- stages that keep a cancelled real run's checkpoint for Resume ---------------------------

RESUME_DIR = "model.cancelled"


def resumable(run_dir: str) -> bool:
    """True when ``run_dir`` holds the checkpoint of a cancelled real training."""
    return bool(run_dir) and (Path(run_dir) / RESUME_DIR / "checkpoints").is_dir()


def _keep_checkpoint(run_path: Path, out: Path, report: dict[str, Any] | None, on_event: Any) -> None:
    """After a cancel, move ``model/`` (checkpoints + report) aside, where the run's clean-up of
    a cancelled stage does not remove it."""
    if (report is None or report.get("status") != "completed") and (out / "checkpoints").is_dir():
        from core.events import Log

        keep = run_path / RESUME_DIR
        shutil.rmtree(keep, ignore_errors=True)
        out.rename(keep)
        on_event(Log(f"checkpoint kept in {RESUME_DIR}/: Resume continues from it", "warning"))


def _train_stage(inner: Any, run: Any, out: Path, on_event: Any, cancel: Any) -> dict[str, Any]:
    """``inner`` (core's train stage) that keeps a cancelled real run's checkpoint."""
    report: dict[str, Any] | None = None
    try:
        report = inner(run, out, on_event, cancel)
        return report
    finally:
        if not run.options().train.dry_run:
            _keep_checkpoint(run.path, out, report, on_event)


def _resume_stage(run: Any, out: Path, on_event: Any, cancel: Any) -> dict[str, Any]:
    """Continue the cancelled training from its checkpoint (``TrainConfig.resume``)."""
    from core.training.child import run_training_subprocess

    keep = run.path / RESUME_DIR
    if not keep.is_dir():
        raise FileNotFoundError(f"nothing to resume: {keep} does not exist")
    keep.rename(out)
    config = run.options().train.model_copy(update={"output_dir": str(out), "resume": True})
    report: dict[str, Any] | None = None
    try:
        report = run_training_subprocess(config, on_event, cancel)
        return report
    finally:
        _keep_checkpoint(run.path, out, report, on_event)


def gui_stages(actions: list[str], resume: bool = False) -> list[Any]:
    """core.runs' standard stages, with a train stage that keeps (or resumes) a checkpoint."""
    from core import runs

    stages = []
    for stage in runs.stages_for(actions):
        if stage.name == "train":
            fn = _resume_stage if resume else functools.partial(_train_stage, stage.fn)
            stage = runs.Stage(name="train", target=stage.target, staged=stage.staged, fn=fn)
        stages.append(stage)
    return stages
