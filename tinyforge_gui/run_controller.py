"""Runs: start, follow, cancel and resume train/export runs, and estimate a real run's cost.

:class:`RunController` owns the run state the main window shows (``current_run``, ``last_run``,
``run_status``, ``estimate``) and decides which run actions are available. The work happens in
:mod:`tinyforge_gui.tasks` / :mod:`tinyforge_gui.studio_tasks` workers on QThreads; this object
lives in the GUI thread and only reacts to their plain-data signals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Slot

if TYPE_CHECKING:
    from tinyforge_gui.main_window import MainWindow


def _past_options(run_dir: str) -> dict[str, Any]:
    """The ``options`` saved in ``run_dir/run.json`` (raises OSError/ValueError)."""
    import json

    with open(Path(run_dir) / "run.json", encoding="utf-8") as handle:
        return json.load(handle).get("options") or {}


def _resumable(run_dir: str) -> bool:
    """core.runs.resumable, imported on first use: core.runs pulls in pydantic, which the
    first paint does not need (nothing is selected yet at start-up)."""
    from core.runs import resumable

    return resumable(run_dir)


class RunController(QObject):
    """Starts runs from the form and the current dataset, and follows them to the end."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.setObjectName("runController")
        self._window = window
        self.current_run: str = ""
        self.last_run: str = ""
        self.run_status: str = ""
        self.estimate: dict[str, Any] | None = None
        self._run_actions: list[str] = []
        self._last_artifact: str = ""

    # ------------------------------------------------------------------ action state
    def train_block_reason(self) -> str:
        w = self._window
        if w.tasks.is_busy("run"):
            return "A run is in progress."
        if not w.dataset_path:
            return "Open a dataset first (drop a .jsonl file or use File → Open)."
        report = w.dataset_report
        if report is None:
            return "Waiting for the dataset scan to finish."
        if not report.get("valid"):
            if report.get("error"):
                return f"The dataset could not be scanned: {report['error']}"
            n = report.get("n_problems", 0)
            return f"The dataset has {n:,} problem(s); fix them first (see the Problems list)."
        return ""

    def export_source(self) -> str:
        """The run whose model Export uses: the selected run, else the last run, if it has a model."""
        for candidate in (self._window.selected_run(), self.last_run):
            if candidate and (Path(candidate) / "model").is_dir():
                return candidate
        return ""

    def export_block_reason(self) -> str:
        if self._window.tasks.is_busy("run"):
            return "A run is in progress."
        if not self.export_source():
            return "Train first, or select a finished run in the Artifacts tab."
        return ""

    def update_actions(self) -> None:
        """Enable the run panel's buttons (with a tooltip saying why not) and the options form."""
        w = self._window
        busy = w.tasks.is_busy("run")
        train_reason = self.train_block_reason()
        rp = w.run_panel
        rp.train.setEnabled(not train_reason)
        rp.train_export.setEnabled(not train_reason)
        rp.train.setToolTip(train_reason or "Train a model on the dataset (dry run or real)")
        rp.train_export.setToolTip(train_reason or "Train, then export, in one run (Ctrl+Enter)")
        export_reason = self.export_block_reason()
        rp.export.setEnabled(not export_reason)
        source = self.export_source()
        rp.export.setToolTip(export_reason or f"Export the model of {Path(source).name} to a service")
        estimating = w.tasks.is_busy("estimate")
        real = not w.options.to_dict()["train"]["dry_run"]
        estimate_reason = train_reason or ("" if real else "Estimate is for real training: untick Dry run.")
        if estimating:
            estimate_reason = "Estimating…"
        rp.estimate.setEnabled(not estimate_reason)
        rp.estimate.setToolTip(estimate_reason or "Train a few real steps and project the whole run's duration "
                               "and peak memory")
        selected = w.selected_run()
        can_resume = not busy and bool(selected) and _resumable(selected)
        rp.resume.setEnabled(can_resume)
        rp.resume.setToolTip(f"Continue {Path(selected).name} from its checkpoint" if can_resume else
                             "Select a cancelled real run (it keeps a checkpoint) to continue it")
        rp.set_busy(busy or estimating)
        w.options.setEnabled(not busy and not estimating)

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

        w = self._window
        run_dir = w.artifacts.selected_run()
        if not resumable(run_dir) or w.tasks.is_busy("run"):
            w.show_message("info", "Select a cancelled real run that kept a checkpoint to resume it.")
            return
        try:
            actions = list(_past_options(run_dir).get("actions") or ["train"])
        except (OSError, ValueError) as exc:
            w.show_message("error", f"Cannot read the run's options: {exc}")
            return
        self.start_run(actions, existing_run=run_dir, resume=True)

    @Slot()
    def start_export(self) -> None:
        reason = self.export_block_reason()
        if reason:
            self._window.show_message("info", reason)
            return
        self.start_run(["export"], existing_run=self.export_source())

    def build_run_options(self, actions: list[str]) -> dict[str, Any]:
        """The ``RunOptions`` dict for ``actions`` from the form and the current dataset."""
        form = self._window.options.to_dict()
        train = dict(form["train"])
        train.update({"data_path": self._window.dataset_path, "output_dir": ""})
        return {"actions": actions, "train": train, "export": form["export"]}

    def start_run(self, actions: list[str], existing_run: str | None = None, resume: bool = False) -> bool:
        w = self._window
        if "train" in actions and not resume:
            reason = self.train_block_reason()
            if reason:
                w.show_message("info", reason)
                return False
        if w.tasks.is_busy("run"):
            return False
        from tinyforge_gui.tasks import RunWorker

        options = self.build_run_options(actions)
        if existing_run:
            try:
                past = _past_options(existing_run)
                options["train"] = past.get("train", options["train"])
            except (OSError, ValueError):
                pass
        root = w.options.output_root()
        try:
            w.artifacts.set_root(root)
        except OSError as exc:
            w.show_message("error", f"Cannot use the output folder {root}: {exc}")
            return False
        sha = (w.dataset_report or {}).get("sha256")
        worker = RunWorker(options, root, dataset_sha256=sha, existing_run=existing_run, resume=resume)
        rp = w.run_panel
        worker.run_created.connect(self._on_run_created)
        worker.stage.connect(rp.on_stage)
        worker.stage.connect(self._on_stage_log)
        worker.progress.connect(rp.on_progress)
        worker.log.connect(rp.log.append)
        worker.metric.connect(rp.chart.add_metric)
        worker.metric.connect(rp.on_metric)
        worker.stage.connect(w.export_panel.on_stage)
        worker.progress.connect(w.export_panel.on_progress)
        worker.metric.connect(self._on_metric)
        worker.artifact.connect(self._on_artifact)
        worker.failed.connect(self._on_run_failed)
        worker.cancelled.connect(self._on_run_cancelled)
        worker.succeeded.connect(self._on_run_result)
        worker.done.connect(self._on_run_done)
        self._run_actions = list(actions)
        self.run_status = "running"
        self._last_artifact = ""
        w.message.hide()
        title = ("Resume " if resume else "") + " → ".join(a.capitalize() for a in actions)
        mode = "dry run" if options["train"].get("dry_run") else str(options["train"].get("base_model"))
        rp.start(actions, title)
        rp.log.append("info", f"{title} started ({mode}) on {Path(w.dataset_path).name or '-'}")
        if any(a == "train" for a in actions) and not options["train"].get("dry_run"):
            rp.tabs.setCurrentWidget(rp.chart)
        w.tasks.start(worker)
        w.settings.set_options(w.options.to_dict())
        w.statusBar().showMessage(f"{title} running…")
        w.update_actions()
        return True

    # ------------------------------------------------------------------ run signals
    @Slot(str)
    def _on_run_created(self, run_dir: str) -> None:
        w = self._window
        self.current_run = run_dir
        if "export" in self._run_actions:
            w.export_panel.begin(run_dir)
        w.run_panel.log.append("info", f"run folder: {run_dir}")
        w.artifacts.refresh_runs()
        w.artifacts.select_run(run_dir)

    @Slot(str, str)
    def _on_stage_log(self, stage: str, message: str) -> None:
        self._window.run_panel.log.append("info", f"▶ {stage}: {message}" if message else f"▶ {stage}")

    @Slot(int, dict)
    def _on_metric(self, step: int, values: dict[str, float]) -> None:
        text = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        self._window.run_panel.log.append("debug", f"step {step}: {text}")

    @Slot(str)
    def _on_artifact(self, path: str) -> None:
        self._window.run_panel.log.append("success", f"wrote {path}")
        if path.endswith(".json"):
            self._last_artifact = path

    @Slot(str, str)
    def _on_run_failed(self, message: str, details: str) -> None:
        self.run_status = "failed"
        self._window.run_panel.log.append("error", message)
        self._window.show_message("error", f"The run failed: {message}", details)

    @Slot()
    def _on_run_cancelled(self) -> None:
        self.run_status = "cancelled"

    @Slot(object)
    def _on_run_result(self, result: dict[str, Any]) -> None:
        self.run_status = str(result.get("status", "completed"))
        self.current_run = str(result.get("run_dir") or self.current_run)

    @Slot()
    def _on_run_done(self) -> None:
        w = self._window
        status = self.run_status if self.run_status != "running" else "failed"
        self.run_status = status
        self.last_run = self.current_run or self.last_run
        w.run_panel.finish(status)
        level = {"completed": "success", "cancelled": "warning"}.get(status, "error")
        w.run_panel.log.append(level, f"run {status}")
        w.run_panel.log.flush()
        if "export" in self._run_actions:
            w.export_panel.finish(status)
        from core.runs import resumable

        if status == "cancelled" and resumable(self.current_run):
            w.show_message("warning", "The run was cancelled; its checkpoint was kept. Select the run and "
                           "press Resume to continue it.")
        elif status == "cancelled":
            w.show_message("warning", "The run was cancelled; its partial output was removed.")
        elif status == "completed":
            w.statusBar().showMessage(f"Run completed: {self.last_run}", 15000)
        w.artifacts.refresh_runs()
        if self.last_run:
            w.artifacts.select_run(self.last_run)
        # update_actions runs once the thread is gone (is_busy is then False).
        QTimer.singleShot(0, self._after_run)

    # ------------------------------------------------------------------ after a run
    @Slot()
    def _after_run(self) -> None:
        w = self._window
        if w.tasks.is_busy("run"):
            QTimer.singleShot(20, self._after_run)
            return
        w.update_actions()
        if self.run_status == "completed":
            target = self._best_artifact()
            if target:
                w.artifacts.show_path(target)
            self.on_run_selected(self.last_run)
            real_export = "export" in self._run_actions and (w.export_panel.report or {}).get("model_stub") is False
            learned = "train" in self._run_actions and w.evaluation.evaluation is not None
            # The last stage's result: the export report, else whether the training learned.
            w.tabs.setCurrentWidget(w.export_panel if real_export else w.evaluation if learned else w.artifacts)

    def _best_artifact(self) -> str:
        run = Path(self.last_run) if self.last_run else None
        if run is None:
            return ""
        for candidate in (
            run / "service" / "export_report.json",
            run / "service" / "model_metadata.json",
            run / "model" / "model_stub.json",
            run / "model" / "model_manifest.json",
        ):
            if candidate.is_file() and ("export" in self._run_actions or candidate.parent.name == "model"):
                return str(candidate)
        return self._last_artifact

    @Slot(str)
    def on_run_selected(self, run_dir: str) -> None:
        w = self._window
        if not w.tasks.is_busy("run"):
            w.export_panel.show_run(run_dir)
            w.evaluation.show_run(run_dir)
        w.playground.set_run(run_dir)
        w.update_actions()

    @Slot()
    def cancel_run(self) -> None:
        w = self._window
        if w.tasks.is_busy("estimate"):
            w.tasks.cancel("estimate")
            w.run_panel.show_estimate("Stopping the estimate…")
        if w.tasks.is_busy("run"):
            w.tasks.cancel("run")
            w.run_panel.log.append("warning", "cancelling at the next step…")
            w.run_panel.progress.setFormat("Cancelling…")
            w.statusBar().showMessage("Cancelling…")

    # ------------------------------------------------------------------ estimate
    @Slot()
    def start_estimate(self) -> None:
        """Train a few real steps in a temp folder and show the projected run (never blocks)."""
        w = self._window
        reason = self.train_block_reason()
        if reason or w.tasks.is_busy("estimate"):
            if reason:
                w.show_message("info", reason)
            return
        from tinyforge_gui.studio_tasks import EstimateWorker

        train = self.build_run_options(["train"])["train"]
        train["dry_run"] = False
        worker = EstimateWorker(train)
        worker.progress.connect(self._on_estimate_progress)
        worker.succeeded.connect(self._on_estimate)
        worker.failed.connect(self._on_estimate_failed)
        worker.cancelled.connect(self._on_estimate_cancelled)
        worker.done.connect(self._after_estimate)
        self.estimate = None
        w.run_panel.show_estimate(f"Estimating: training a few steps of {train['base_model']}…")
        w.tasks.start(worker)
        w.update_actions()

    @Slot(str, int, int, str)
    def _on_estimate_progress(self, stage: str, step: int, total: int, message: str) -> None:
        if stage == "train" and step > 0:
            self._window.run_panel.show_estimate(f"Estimating: probe step {step} of {total}…")

    @Slot(object)
    def _on_estimate(self, result: dict[str, Any]) -> None:
        from tinyforge_gui.dataset_panel import human_size
        from tinyforge_gui.run_panel import format_eta

        self.estimate = result
        memory = human_size(int(result.get("peak_rss_bytes") or 0)) if result.get("peak_rss_bytes") else "?"
        text = (
            f"Estimate: ≈ {format_eta(result['projected_total_seconds'])} for {result['total_steps']:,} steps "
            f"({result['steps_per_epoch']:,}/epoch × {result['epochs']:g} epochs"
            f"{'' if result.get('max_steps', -1) <= 0 else ', max_steps'}) at "
            f"{result['seconds_per_step']:.3g} s/step on {result.get('device')} ({result.get('precision')}); "
            f"peak memory ≈ {memory}"
        )
        tip = (f"Measured on {result['probe_steps']} real steps ({result['probe_seconds']:.1f} s including "
               f"loading). Training ≈ {format_eta(result['projected_train_seconds'])} + load/save ≈ "
               f"{format_eta(result['overhead_seconds'])}. Memory: {result.get('memory_source')} of the "
               "training process (CPU RAM; GPU memory is not included).")
        if result.get("recipe_summary"):
            tip += "\n" + str(result["recipe_summary"])
        self._window.run_panel.show_estimate(text, tip)
        self._window.statusBar().showMessage("Estimate ready.", 8000)

    @Slot(str, str)
    def _on_estimate_failed(self, message: str, details: str) -> None:
        self._window.run_panel.show_estimate("Estimate failed.")
        self._window.show_message("error", f"The estimate failed: {message}", details)

    @Slot()
    def _on_estimate_cancelled(self) -> None:
        self._window.run_panel.show_estimate("Estimate cancelled.")

    @Slot()
    def _after_estimate(self) -> None:
        QTimer.singleShot(0, self._refresh_after_worker)

    @Slot()
    def _refresh_after_worker(self) -> None:
        if self._window.tasks.is_busy("estimate"):
            QTimer.singleShot(20, self._refresh_after_worker)
            return
        self._window.update_actions()
