"""The tools around a finished run: LoRA target suggestions, the playground, the local service.

:class:`StudioController` starts the :mod:`tinyforge_gui.workers.studio_tasks` workers for the options
form, the Playground tab and the Export tab's service button, and owns the service handle; the
service's state lives in the shared :class:`~tinyforge_gui.state.StudioState`. It lives in the
GUI thread; the workers' signals (plain data or a core model) arrive at its slots.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Slot

from tinyforge_gui.state import ServiceState, StudioState, Task
from tinyforge_gui.workers.studio_tasks import ServiceHandle

if TYPE_CHECKING:
    from core.models.lora_modules import LoraModules
    from tinyforge_gui.panels.options_panel import OptionsPanel
    from tinyforge_gui.panels.run_panel import RunPanel
    from tinyforge_gui.panels.studio_tabs import StudioTabs
    from tinyforge_gui.widgets.common import Notifier
    from tinyforge_gui.workers.runner import TaskRunner, Worker


class StudioController(QObject):
    """LoRA targets, playground questions and the exported model's local service."""

    def __init__(self, tasks: TaskRunner, state: StudioState, notifier: Notifier, options: OptionsPanel,
                 run_panel: RunPanel, tabs: StudioTabs, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("studioController")
        self._tasks, self._state, self._notify = tasks, state, notifier
        self._options, self._run_panel, self._tabs = options, run_panel, tabs
        self.service = ServiceHandle()

    # ------------------------------------------------------------------ LoRA targets
    @Slot(str)
    def start_lora_targets(self, base_model: str) -> None:
        from tinyforge_gui.workers.studio_tasks import LoraTargetsWorker

        self._tasks.cancel(Task.LORA_TARGETS)
        worker = LoraTargetsWorker(base_model)
        worker.succeeded.connect(self._on_lora_targets)
        worker.failed.connect(self._on_lora_targets_failed)
        self._tasks.start(worker)

    @Slot(object)
    def _on_lora_targets(self, result: LoraModules) -> None:
        self._options.set_lora_suggestions(result)

    @Slot(str, str)
    def _on_lora_targets_failed(self, message: str, details: str) -> None:
        worker = self.sender()
        self._options.lora_targets_failed(str(getattr(worker, "base_model", "")), message)

    # ------------------------------------------------------------------ playground
    @Slot(str, int)
    def ask_playground(self, text: str, max_new_tokens: int) -> None:
        from tinyforge_gui.workers.studio_tasks import PlaygroundWorker

        playground = self._tabs.playground
        self._tasks.cancel(Task.PLAYGROUND)  # a newer question wins; late answers are ignored
        worker = PlaygroundWorker(playground.request, text, dict(playground.sources), max_new_tokens)
        worker.answer.connect(playground.on_answer)
        worker.failed.connect(self._on_playground_failed)
        self._tasks.start(worker)

    @Slot(str, str)
    def _on_playground_failed(self, message: str, details: str) -> None:
        self._tabs.playground.status.setText(f"Failed: {message}")

    # ------------------------------------------------------------------ export report, service
    @Slot(str)
    def open_report_json(self, path: str) -> None:
        artifacts = self._tabs.artifacts
        self._tabs.setCurrentWidget(artifacts)
        if not artifacts.show_path(path):
            artifacts.viewer.show_file(path)

    def service_dir(self) -> str:
        """The selected run's service folder when it holds a real ONNX export, else ""."""
        run = self._tabs.selected_run() or self._state.last_run
        if not run:
            return ""
        # Imported once a run is chosen: core.run_layout pulls in pydantic, which the first paint does not need.
        from core.run_layout import ONNX_DIR, ONNX_META_FILE, SERVICE_APP_FILE, SERVICE_DIR

        folder = Path(run) / SERVICE_DIR
        if (folder / SERVICE_APP_FILE).is_file() and (folder / ONNX_DIR / ONNX_META_FILE).is_file():
            return str(folder)
        return ""

    def update_service_button(self) -> None:
        state = self._state
        if state.service_state == ServiceState.RUNNING and not self.service.running():
            state.service_state = ServiceState.STOPPED  # it exited on its own (no notify: we are rendering)
        self._tabs.export_panel.set_service_state(state.service_state.value, self.service.url,
                                                  bool(self.service_dir()))

    @Slot()
    def toggle_service(self) -> None:
        from tinyforge_gui.workers.studio_tasks import ServiceStartWorker, ServiceStopWorker

        if self._tasks.is_working(Task.SERVICE):
            return
        if self._state.service_state == ServiceState.RUNNING:
            next_state = ServiceState.STOPPING
            worker: Worker = ServiceStopWorker(self.service)
            worker.succeeded.connect(self._on_service_stopped)
        else:
            folder = self.service_dir()
            if not folder:
                self._notify.show_message("info", "Select a run exported with ONNX to serve it.")
                return
            next_state = ServiceState.STARTING
            worker = ServiceStartWorker(self.service, folder)
            worker.succeeded.connect(self._on_service_started)
        worker.failed.connect(self._on_service_failed)
        self._tasks.start(worker)
        self._state.update(service_state=next_state)

    @Slot(object)
    def _on_service_started(self, result: dict[str, Any]) -> None:
        url = result.get("url")
        self._state.update(service_state=ServiceState.RUNNING if url else ServiceState.STOPPED)
        if url:
            self._notify.status(f"Service running at {url}", 10000)
            self._run_panel.log.append("success", f"service started at {url} ({result.get('service_dir')})")

    @Slot(object)
    def _on_service_stopped(self, _result: object) -> None:
        self._state.update(service_state=ServiceState.STOPPED)
        self._run_panel.log.append("info", "service stopped")

    @Slot(str, str)
    def _on_service_failed(self, message: str, details: str) -> None:
        self._state.update(service_state=ServiceState.STOPPED)
        self._notify.show_message("error", f"The service could not start: {message}", details)
