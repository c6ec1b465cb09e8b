"""The tools around a finished run: LoRA target suggestions, the playground, the local service.

:class:`StudioController` starts the :mod:`tinyforge_gui.studio_tasks` workers for the options
form, the Playground tab and the Export tab's service button, and owns the service handle and
state. It lives in the GUI thread; the workers' plain-data signals arrive at its slots.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Slot

from tinyforge_gui.studio_tasks import ServiceHandle

if TYPE_CHECKING:
    from tinyforge_gui.main_window import MainWindow
    from tinyforge_gui.workers import Worker


class StudioController(QObject):
    """LoRA targets, playground questions and the exported model's local service."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.setObjectName("studioController")
        self._window = window
        self.service = ServiceHandle()
        self.service_state = "stopped"

    # ------------------------------------------------------------------ LoRA targets
    @Slot(str)
    def start_lora_targets(self, base_model: str) -> None:
        from tinyforge_gui.studio_tasks import LoraTargetsWorker

        self._window.tasks.cancel("lora-targets")
        worker = LoraTargetsWorker(base_model)
        worker.succeeded.connect(self._on_lora_targets)
        worker.failed.connect(self._on_lora_targets_failed)
        self._window.tasks.start(worker)

    @Slot(object)
    def _on_lora_targets(self, result: dict[str, Any]) -> None:
        self._window.options.set_lora_suggestions(result)

    @Slot(str, str)
    def _on_lora_targets_failed(self, message: str, details: str) -> None:
        worker = self.sender()
        self._window.options.lora_targets_failed(str(getattr(worker, "base_model", "")), message)

    # ------------------------------------------------------------------ playground
    @Slot(str, int)
    def ask_playground(self, text: str, max_new_tokens: int) -> None:
        from tinyforge_gui.studio_tasks import PlaygroundWorker

        w = self._window
        w.tasks.cancel("playground")  # a newer question wins; late answers are ignored
        worker = PlaygroundWorker(w.playground.request, text, dict(w.playground.sources), max_new_tokens)
        worker.answer.connect(w.playground.on_answer)
        worker.failed.connect(self._on_playground_failed)
        w.tasks.start(worker)

    @Slot(str, str)
    def _on_playground_failed(self, message: str, details: str) -> None:
        self._window.playground.status.setText(f"Failed: {message}")

    # ------------------------------------------------------------------ export report, service
    @Slot(str)
    def open_report_json(self, path: str) -> None:
        w = self._window
        w.tabs.setCurrentWidget(w.artifacts)
        if not w.artifacts.show_path(path):
            w.artifacts.viewer.show_file(path)

    def service_dir(self) -> str:
        """The selected run's service folder when it holds a real ONNX export, else ""."""
        run = self._window.selected_run() or self._window.last_run
        folder = Path(run) / "service" if run else None
        if folder is not None and (folder / "app.py").is_file() and (folder / "onnx" / "model.onnx.meta.json").is_file():
            return str(folder)
        return ""

    def update_service_button(self) -> None:
        if self.service_state == "running" and not self.service.running():
            self.service_state = "stopped"  # it exited on its own
        self._window.export_panel.set_service_state(self.service_state, self.service.url, bool(self.service_dir()))

    @Slot()
    def toggle_service(self) -> None:
        from tinyforge_gui.studio_tasks import ServiceStartWorker, ServiceStopWorker

        w = self._window
        if w.tasks.is_busy("service"):
            return
        if self.service_state == "running":
            self.service_state = "stopping"
            worker: Worker = ServiceStopWorker(self.service)
            worker.succeeded.connect(self._on_service_stopped)
        else:
            folder = self.service_dir()
            if not folder:
                w.show_message("info", "Select a run exported with ONNX to serve it.")
                return
            self.service_state = "starting"
            worker = ServiceStartWorker(self.service, folder)
            worker.succeeded.connect(self._on_service_started)
        worker.failed.connect(self._on_service_failed)
        w.tasks.start(worker)
        self.update_service_button()

    @Slot(object)
    def _on_service_started(self, result: dict[str, Any]) -> None:
        self.service_state = "running" if result.get("url") else "stopped"
        self.update_service_button()
        if result.get("url"):
            w = self._window
            w.statusBar().showMessage(f"Service running at {result['url']}", 10000)
            w.run_panel.log.append("success", f"service started at {result['url']} ({result.get('service_dir')})")

    @Slot(object)
    def _on_service_stopped(self, _result: object) -> None:
        self.service_state = "stopped"
        self.update_service_button()
        self._window.run_panel.log.append("info", "service stopped")

    @Slot(str, str)
    def _on_service_failed(self, message: str, details: str) -> None:
        self.service_state = "stopped"
        self.update_service_button()
        self._window.show_message("error", f"The service could not start: {message}", details)
