"""Runs: start, follow, cancel and resume train/export runs, and estimate a real run's cost.

:class:`RunController` keeps the run state (``current_run``, ``last_run``, ``run_status``,
``estimate``) in the shared :class:`~tinyforge_gui.state.StudioState` and decides which run
actions are available. The work happens in :mod:`tinyforge_gui.workers.tasks` /
:mod:`tinyforge_gui.workers.studio_tasks` workers on QThreads; this object lives in the GUI thread and
only reacts to their plain-data signals. It knows its panels, the task runner and the notifier.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Slot

from core.failures import describe
from tinyforge_gui.state import RunStatus, StudioState, Task, scan_failure

if TYPE_CHECKING:
    from core.run_layout import Estimate, RunOptions
    from tinyforge_gui.panels.options_panel import OptionsPanel
    from tinyforge_gui.panels.run_panel import RunPanel
    from tinyforge_gui.panels.studio_tabs import StudioTabs
    from tinyforge_gui.settings import AppSettings
    from tinyforge_gui.widgets.common import Notifier
    from tinyforge_gui.workers.runner import TaskRunner
    from tinyforge_gui.workers.tasks import RunOutcome


def _past_options(run_dir: str) -> RunOptions | None:
    """The ``options`` saved in ``run_dir/run.json``, None when it holds none that validate
    (raises ValueError: RunFileError)."""
    from core.run_layout import read_run

    return read_run(run_dir).options


def _has_model(run_dir: str) -> bool:
    """``run_dir`` holds a training output (``model/``). core.run_layout is imported on first use:
    it pulls in pydantic, which the first paint does not need (no run is chosen yet at start-up)."""
    from core.run_layout import MODEL_DIR

    return (Path(run_dir) / MODEL_DIR).is_dir()


def _resumable(run_dir: str) -> bool:
    """core.runs.resumable, imported on first use: core.runs pulls in pydantic, which the
    first paint does not need (nothing is selected yet at start-up)."""
    from core.runs import resumable

    return resumable(run_dir)


class RunController(QObject):
    """Starts runs from the form and the current dataset, and follows them to the end."""

    def __init__(self, tasks: TaskRunner, state: StudioState, notifier: Notifier, options: OptionsPanel,
                 run_panel: RunPanel, tabs: StudioTabs, settings: AppSettings,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runController")
        self._tasks, self._state, self._notify = tasks, state, notifier
        self._options, self._run_panel, self._tabs, self._settings = options, run_panel, tabs, settings
        self._run_actions: list[str] = []
        self._last_artifact: str = ""
        self._last_step: tuple[str, str] = ("", "")  # the stage and step name last written to the log

    # ------------------------------------------------------------------ action state
    def train_block_reason(self) -> str:
        if self._tasks.is_busy(Task.RUN):
            return "A run is in progress."
        if not self._state.dataset_path:
            return "Open a dataset first (drop a .jsonl, .csv, .tsv or .json file or use File → Open)."
        report = self._state.dataset_report
        if report is None:
            return "Waiting for the dataset scan to finish."
        if not report.valid:
            failure = scan_failure(report)
            if failure:
                return f"The dataset could not be scanned: {failure}"
            return f"The dataset has {report.n_problems:,} problem(s); fix them first (see the Problems list)."
        return ""

    def export_source(self) -> str:
        """The run whose model Export uses: the selected run, else the last run, if it has a model."""
        for candidate in (self._tabs.selected_run(), self._state.last_run):
            if candidate and _has_model(candidate):
                return candidate
        return ""

    def export_block_reason(self) -> str:
        if self._tasks.is_busy(Task.RUN):
            return "A run is in progress."
        if not self.export_source():
            return "Train first, or select a finished run in the Artifacts tab."
        return ""

    def update_actions(self) -> None:
        """Enable the run panel's buttons (with a tooltip saying why not) and the options form."""
        busy = self._tasks.is_busy(Task.RUN)
        train_reason = self.train_block_reason()
        rp = self._run_panel
        rp.train.setEnabled(not train_reason)
        rp.train_export.setEnabled(not train_reason)
        rp.train.setToolTip(train_reason or "Train a model on the dataset (dry run or real)")
        rp.train_export.setToolTip(train_reason or "Train, then export, in one run (Ctrl+Enter)")
        export_reason = self.export_block_reason()
        rp.export.setEnabled(not export_reason)
        source = self.export_source()
        rp.export.setToolTip(export_reason or f"Export the model of {Path(source).name} to a service")
        estimating = self._tasks.is_busy(Task.ESTIMATE)
        real = not self._options.to_dict()["train"]["dry_run"]
        estimate_reason = train_reason or ("" if real else "Estimate is for real training: untick Dry run.")
        if estimating:
            estimate_reason = "Estimating…"
        rp.estimate.setEnabled(not estimate_reason)
        rp.estimate.setToolTip(estimate_reason or "Train a few real steps and project the whole run's duration "
                               "and peak memory")
        selected = self._tabs.selected_run()
        can_resume = not busy and bool(selected) and _resumable(selected)
        rp.resume.setEnabled(can_resume)
        rp.resume.setToolTip(f"Continue {Path(selected).name} from its checkpoint" if can_resume else
                             "Select a cancelled real run (it keeps a checkpoint) to continue it")
        rp.set_busy(busy or estimating)
        self._options.setEnabled(not busy and not estimating)

    # ------------------------------------------------------------------ starting runs
    @Slot()
    def start_train(self) -> None:
        self.start_run(["train"])

    @Slot()
    def start_train_export(self) -> None:
        self.start_run(["train", "export"])

    @Slot()
    def start_resume(self) -> None:
        """Continue the selected cancelled real run from its checkpoint (same options, same folder)."""
        from core.runs import resumable
        run_dir = self._tabs.artifacts.selected_run()
        if not resumable(run_dir) or self._tasks.is_busy(Task.RUN):
            self._notify.show_message("info", "Select a cancelled real run that kept a checkpoint to resume it.")
            return
        try:
            past = _past_options(run_dir)
        except (OSError, ValueError) as exc:
            self._notify.show_message("error", f"Cannot read the run's options: {exc}")
            return
        actions = list((past.actions if past is not None else None) or ["train"])
        self.start_run(actions, existing_run=run_dir, resume=True)

    @Slot()
    def start_export(self) -> None:
        reason = self.export_block_reason()
        if reason:
            self._notify.show_message("info", reason)
            return
        self.start_run(["export"], existing_run=self.export_source())

    def build_run_options(self, actions: list[str], existing_run: str | None = None) -> RunOptions:
        """The ``RunOptions`` for ``actions``: the form's, on the current dataset (with its column
        mapping from Map columns…); an ``existing_run``'s own training config where it has one.
        Raises ValueError (pydantic's ValidationError) when the options do not validate."""
        from core.run_layout import RunOptions

        form = self._options.to_dict()
        past = None
        if existing_run:
            try:
                past = _past_options(existing_run)
            except (OSError, ValueError):
                pass  # an unreadable run.json: the form's training config
        train = past.train if past is not None else {
            **form["train"], "data_path": self._state.dataset_path, "output_dir": "",
            "columns": self._state.dataset_columns,
        }
        return RunOptions.model_validate({"actions": actions, "train": train, "export": form["export"]})

    def start_run(self, actions: list[str], existing_run: str | None = None, resume: bool = False) -> bool:
        if "train" in actions and not resume:
            reason = self.train_block_reason()
            if reason:
                self._notify.show_message("info", reason)
                return False
        if self._tasks.is_busy(Task.RUN):
            return False
        from tinyforge_gui.workers.tasks import RunWorker

        try:
            options = self.build_run_options(actions, existing_run)
        except ValueError as exc:  # said as a run that failed on them says it
            failure = describe(exc)
            self._notify.show_message("error", f"The run failed: {failure.message}", failure.details)
            return False
        root = self._options.output_root()
        try:
            self._tabs.artifacts.set_root(root)
        except OSError as exc:
            self._notify.show_message("error", f"Cannot use the output folder {root}: {exc}")
            return False
        report = self._state.dataset_report
        sha = (report.sha256 or None) if report is not None else None
        worker = RunWorker(options, root, dataset_sha256=sha, existing_run=existing_run, resume=resume)
        rp = self._run_panel
        worker.run_created.connect(self._on_run_created)
        worker.stage.connect(rp.on_stage)
        worker.stage.connect(self._on_stage_log)
        worker.progress.connect(rp.on_progress)
        worker.progress.connect(self._on_step_log)
        worker.log.connect(rp.log.append)
        worker.metric.connect(rp.chart.add_metric)
        worker.metric.connect(rp.on_metric)
        worker.stage.connect(self._tabs.export_panel.on_stage)
        worker.progress.connect(self._tabs.export_panel.on_progress)
        worker.metric.connect(self._on_metric)
        worker.artifact.connect(self._on_artifact)
        worker.failed.connect(self._on_run_failed)
        worker.cancelled.connect(self._on_run_cancelled)
        worker.succeeded.connect(self._on_run_result)
        worker.done.connect(self._on_run_done)
        self._run_actions = list(actions)
        self._state.update(run_status=RunStatus.RUNNING)
        self._last_artifact = ""
        self._last_step = ("", "")
        self._notify.hide_message()
        title = ("Resume " if resume else "") + " → ".join(a.capitalize() for a in actions)
        mode = "dry run" if options.train.dry_run else options.train.base_model
        rp.start(actions, title)
        rp.log.append("info", f"{title} started ({mode}) on {Path(self._state.dataset_path).name or '-'}")
        if any(a == "train" for a in actions) and not options.train.dry_run:
            rp.tabs.setCurrentWidget(rp.chart)
        self._tasks.start(worker)
        self._settings.set_options(self._options.to_dict())
        self._notify.status(f"{title} running…")
        self._state.notify()
        return True

    # ------------------------------------------------------------------ run signals
    @Slot(str)
    def _on_run_created(self, run_dir: str) -> None:
        self._state.update(current_run=run_dir)
        if "export" in self._run_actions:
            self._tabs.export_panel.begin(run_dir)
        self._run_panel.log.append("info", f"run folder: {run_dir}")
        self._tabs.artifacts.refresh_runs()
        self._tabs.artifacts.select_run(run_dir)

    @Slot(str, str)
    def _on_stage_log(self, stage: str, message: str) -> None:
        self._run_panel.log.append("info", f"▶ {stage}: {message}" if message else f"▶ {stage}")

    @Slot(str, int, int, str)
    def _on_step_log(self, stage: str, step: int, total: int, message: str) -> None:
        """A named step of a stage list (export's "exporting the fp32 ONNX graph") goes to the log
        in full: the progress bar shows it short or not at all. Training's ETA messages do not."""
        if not message or stage == "train" or not 0 < total <= 100 or (stage, message) == self._last_step:
            return
        self._last_step = (stage, message)
        self._run_panel.log.append("info", f"  {stage} {step}/{total}: {message}")

    @Slot(int, dict)
    def _on_metric(self, step: int, values: dict[str, float]) -> None:
        text = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        self._run_panel.log.append("debug", f"step {step}: {text}")

    @Slot(str)
    def _on_artifact(self, path: str) -> None:
        self._run_panel.log.append("success", f"wrote {path}")
        if path.endswith(".json"):
            self._last_artifact = path

    @Slot(str, str)
    def _on_run_failed(self, message: str, details: str) -> None:
        self._state.update(run_status=RunStatus.FAILED)
        self._run_panel.log.append("error", message)
        self._notify.show_message("error", f"The run failed: {message}", details)

    @Slot()
    def _on_run_cancelled(self) -> None:
        self._state.update(run_status=RunStatus.CANCELLED)

    @Slot(object)
    def _on_run_result(self, result: RunOutcome) -> None:
        self._state.update(run_status=RunStatus.of(result.status or RunStatus.COMPLETED),
                           current_run=result.run_dir or self._state.current_run)

    @Slot()
    def _on_run_done(self) -> None:
        state = self._state
        status = state.run_status if state.run_status.finished else RunStatus.FAILED
        state.update(run_status=status, last_run=state.current_run or state.last_run)
        self._run_panel.finish(status)
        level = {"completed": "success", "cancelled": "warning"}.get(status, "error")
        self._run_panel.log.append(level, f"run {status}")
        self._run_panel.log.flush()
        if "export" in self._run_actions:
            self._tabs.export_panel.finish(status)
        from core.runs import resumable

        if status == "cancelled" and resumable(self._state.current_run):
            self._notify.show_message("warning", "The run was cancelled; its checkpoint was kept. Select the run "
                                      "and press Resume to continue it.")
        elif status == "cancelled":
            self._notify.show_message("warning", "The run was cancelled; its partial output was removed.")
        elif status == "completed":
            self._notify.status(f"Run completed: {self._state.last_run}", 15000)
        self._tabs.artifacts.refresh_runs()
        if self._state.last_run:
            self._tabs.artifacts.select_run(self._state.last_run)
        self._when_idle(Task.RUN, self._after_run)

    # ------------------------------------------------------------------ after a run
    @Slot()
    def _after_run(self) -> None:
        self._state.notify()
        if self._state.run_status == RunStatus.COMPLETED:
            target = self._best_artifact()
            if target:
                self._tabs.artifacts.show_path(target)
            self.on_run_selected(self._state.last_run)
            tabs = self._tabs
            report = tabs.export_panel.export_report
            real_export = "export" in self._run_actions and report is not None and report.model_stub is False
            learned = "train" in self._run_actions and tabs.evaluation.evaluation is not None
            # The last stage's result: the export report, else whether the training learned.
            tabs.setCurrentWidget(tabs.export_panel if real_export else tabs.evaluation if learned else tabs.artifacts)

    def _best_artifact(self) -> str:
        from core.run_layout import (
            EXPORT_REPORT_FILE,
            MODEL_DIR,
            MODEL_MANIFEST_FILE,
            MODEL_METADATA_FILE,
            MODEL_STUB_FILE,
            SERVICE_DIR,
        )

        run = Path(self._state.last_run) if self._state.last_run else None
        if run is None:
            return ""
        for candidate in (
            run / SERVICE_DIR / EXPORT_REPORT_FILE,
            run / SERVICE_DIR / MODEL_METADATA_FILE,
            run / MODEL_DIR / MODEL_STUB_FILE,
            run / MODEL_DIR / MODEL_MANIFEST_FILE,
        ):
            if candidate.is_file() and ("export" in self._run_actions or candidate.parent.name == MODEL_DIR):
                return str(candidate)
        return self._last_artifact

    @Slot(str)
    def on_run_selected(self, run_dir: str) -> None:
        if not self._tasks.is_busy(Task.RUN):
            self._tabs.export_panel.show_run(run_dir)
            self._tabs.evaluation.show_run(run_dir)
        self._tabs.playground.set_run(run_dir)
        self._state.notify()

    @Slot()
    def cancel_run(self) -> None:
        if self._tasks.is_busy(Task.ESTIMATE):
            self._tasks.cancel(Task.ESTIMATE)
            self._run_panel.show_estimate("Stopping the estimate…")
        if self._tasks.is_busy(Task.RUN):
            self._tasks.cancel(Task.RUN)
            self._run_panel.log.append("warning", "cancelling at the next step…")
            self._run_panel.show_cancelling()
            self._notify.status("Cancelling…")

    # ------------------------------------------------------------------ estimate
    @Slot()
    def start_estimate(self) -> None:
        """Train a few real steps in a temp folder and show the projected run (never blocks)."""
        reason = self.train_block_reason()
        if reason or self._tasks.is_busy(Task.ESTIMATE):
            if reason:
                self._notify.show_message("info", reason)
            return
        from tinyforge_gui.workers.studio_tasks import EstimateWorker

        try:
            options = self.build_run_options(["train"])
        except ValueError as exc:  # said as an estimate that failed on them says it
            failure = describe(exc)
            self._run_panel.show_estimate("Estimate failed.")
            self._notify.show_message("error", f"The estimate failed: {failure.message}", failure.details)
            return
        train = options.train.model_copy(update={"dry_run": False})
        worker = EstimateWorker(train)
        worker.progress.connect(self._on_estimate_progress)
        worker.succeeded.connect(self._on_estimate)
        worker.failed.connect(self._on_estimate_failed)
        worker.cancelled.connect(self._on_estimate_cancelled)
        worker.done.connect(self._after_estimate)
        self._state.update(estimate=None)
        self._run_panel.show_estimate(f"Estimating: training a few steps of {train.base_model}…")
        self._tasks.start(worker)
        self._state.notify()

    @Slot(str, int, int, str)
    def _on_estimate_progress(self, stage: str, step: int, total: int, message: str) -> None:
        if stage == "train" and step > 0:
            self._run_panel.show_estimate(f"Estimating: probe step {step} of {total}…")

    @Slot(object)
    def _on_estimate(self, result: Estimate) -> None:
        from tinyforge_gui.panels.dataset_panel import human_size
        from tinyforge_gui.panels.run_panel import format_eta

        self._state.update(estimate=result)
        memory = human_size(result.peak_rss_bytes) if result.peak_rss_bytes else "?"
        text = (
            f"Estimate: ≈ {format_eta(result.projected_total_seconds)} for {result.total_steps:,} steps "
            f"({result.steps_per_epoch:,}/epoch × {result.epochs:g} epochs"
            f"{'' if result.max_steps <= 0 else ', max_steps'}) at "
            f"{result.seconds_per_step:.3g} s/step on {result.device} ({result.precision}); "
            f"peak memory ≈ {memory}"
        )
        tip = (f"Measured on {result.probe_steps} real steps ({result.probe_seconds:.1f} s including "
               f"loading). Training ≈ {format_eta(result.projected_train_seconds)} + load/save ≈ "
               f"{format_eta(result.overhead_seconds)}. Memory: {result.memory_source} of the "
               "training process (CPU RAM; GPU memory is not included).")
        if result.recipe_summary:
            tip += "\n" + result.recipe_summary
        self._run_panel.show_estimate(text, tip)
        self._notify.status("Estimate ready.", 8000)

    @Slot(str, str)
    def _on_estimate_failed(self, message: str, details: str) -> None:
        self._run_panel.show_estimate("Estimate failed.")
        self._notify.show_message("error", f"The estimate failed: {message}", details)

    @Slot()
    def _on_estimate_cancelled(self) -> None:
        self._run_panel.show_estimate("Estimate cancelled.")

    @Slot()
    def _after_estimate(self) -> None:
        self._when_idle(Task.ESTIMATE, self._state.notify)

    def _when_idle(self, task: Task, then: Callable[[], None]) -> None:
        """Call ``then`` once no ``task`` worker is left: a worker's ``done`` arrives just before
        its thread ends, and the actions must be rendered with ``is_busy`` already False."""

        def check() -> None:
            if self._tasks.is_busy(task):
                QTimer.singleShot(20, check)
            else:
                then()

        QTimer.singleShot(0, check)
