"""The concrete workers: dataset index, dataset validation, and a train/export run (the Dataset
tab's preview workers are in :mod:`tinyforge_gui.workers.preview_tasks`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal

from tinyforge_gui.state import Task
from tinyforge_gui.workers.runner import Worker

if TYPE_CHECKING:
    from core.run_layout import RunOptions
    from core.training.dataset_models import ValidationReport

logger = logging.getLogger(__name__)


class WarmupWorker(Worker):
    """Imports the core modules a run needs, off the GUI thread, while the user looks around."""

    MODULES = ("core.run_layout", "core.training.line_index", "core.training.dataset", "core.runs",
               "core.training.run", "core.exporter.service_build")

    def __init__(self) -> None:
        super().__init__(Task.WARMUP)

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
        super().__init__(Task.INDEX)
        self.path = path

    def work(self) -> Any:
        from core.training.dataset import LineIndex

        return LineIndex.build(self.path, on_event=self.relay, cancel=self.cancel_token)


class ValidateWorker(Worker):
    """Scans the whole file: summary statistics and every problem with its line; ``columns``
    (Map columns…) names the question, answer and system columns."""

    def __init__(self, path: str, columns: dict[str, str] | None = None) -> None:
        super().__init__(Task.VALIDATE)
        self.path = path
        self.columns = dict(columns) if columns else None

    def work(self) -> ValidationReport:
        import core.training.dataset_preview  # noqa: F401 - loaded here: the window reads the format next
        from core.training.dataset import validate_file

        return validate_file(self.path, on_event=self.relay, cancel=self.cancel_token, columns=self.columns)


@dataclass(frozen=True)
class RunOutcome:
    """What :class:`RunWorker` succeeds with: the run's final status (a ``RunStatus`` value) and
    its folder."""

    status: str
    run_dir: str


class RunWorker(Worker):
    """Creates (or reopens) a run folder and executes its stages via :mod:`core.runs`.

    ``options`` are validated by the caller; with ``existing_run`` set the stages run inside that
    folder (re-export of a past run), else a new run folder is created under ``output_root``.
    """

    run_created = Signal(str)  # run folder

    def __init__(
        self,
        options: RunOptions,
        output_root: str,
        dataset_sha256: str | None = None,
        existing_run: str | None = None,
        resume: bool = False,
    ) -> None:
        super().__init__(Task.RUN)
        self.options = options
        self.output_root = output_root
        self.dataset_sha256 = dataset_sha256
        self.existing_run = existing_run
        self.resume = resume

    def work(self) -> RunOutcome:
        from core import runs

        opts = self.options
        if self.existing_run:
            run = runs.open_run(self.existing_run)
            run.record.options = run.options().model_copy(update={"export": opts.export.model_copy()})
            run.save()
        else:
            run = runs.create_run(self.output_root, opts, dataset_sha256=self.dataset_sha256)
        self.run_created.emit(str(run.path))
        # A cancel that came already is recorded by execute_run (status "cancelled").
        status = runs.execute_run(
            run,
            runs.stages_for(opts.actions, resume=self.resume),
            on_event=self.relay,
            cancel=self.cancel_token,
            overwrite=opts.export.overwrite,
        )
        return RunOutcome(status, str(run.path))


class VariantsWorker(Worker):
    """Writes the question variants a real run of ``config`` trains on (or reads them from the
    cache); the result is the :class:`core.training.variants.VariantSet`."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__("variants")
        self.config = config

    def work(self) -> Any:
        from core.training.config import TrainConfig
        from core.training.phrasings import dataset_variants

        return dataset_variants(TrainConfig(**self.config), on_event=self.relay, cancel=self.cancel_token)

