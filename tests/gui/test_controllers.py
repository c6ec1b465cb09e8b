"""The state object, the task runner and the controllers, without a MainWindow."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.gui.window_helpers import SAMPLE

if TYPE_CHECKING:
    from core.training.dataset_models import ValidationReport

# --------------------------------------------------------------------------- state


def test_state_tells_its_listeners_what_changed() -> None:
    from tinyforge_gui.state import RunStatus, ServiceState, StudioState

    state = StudioState()
    seen: list[set[str]] = []
    state.subscribe(seen.append)
    state.update(dataset_path="/d.jsonl", run_status=RunStatus.RUNNING)
    state.update(dataset_path="/d.jsonl")  # no change: nobody is told
    state.notify()
    assert seen == [{"dataset_path", "run_status"}, {"busy"}]
    assert state.run_status == "running" and f"{state.run_status}" == "running"  # str enums
    assert not state.run_status.finished and RunStatus.CANCELLED.finished
    assert RunStatus.of("completed") is RunStatus.COMPLETED and RunStatus.of("exploded") is RunStatus.FAILED
    assert state.service_state is ServiceState.STOPPED
    with pytest.raises(AttributeError, match="no field"):
        state.update(dataset="x")


def test_a_broken_listener_does_not_stop_the_others() -> None:
    from tinyforge_gui.state import StudioState

    state = StudioState()
    seen: list[set[str]] = []

    def broken(_changed: set[str]) -> None:
        raise RuntimeError("boom")

    state.subscribe(broken)
    state.subscribe(seen.append)
    state.update(last_run="/runs/a")
    assert seen == [{"last_run"}]


# --------------------------------------------------------------------------- task runner


def _worker(name: str, work: Any):  # noqa: ANN202
    from tinyforge_gui.workers.runner import Worker

    class FakeWorker(Worker):
        def work(self) -> Any:
            return work(self)

    return FakeWorker(name)


def test_runner_runs_a_worker_off_the_gui_thread_and_forgets_it_after(qtbot) -> None:  # noqa: ANN001
    from tinyforge_gui.state import Task
    from tinyforge_gui.workers.runner import TaskRunner

    runner = TaskRunner()
    gui_thread = threading.get_ident()
    worker = _worker(Task.INDEX, lambda _self: threading.get_ident())
    with qtbot.waitSignal(worker.succeeded, timeout=5000) as result:
        runner.start(worker)
        assert runner.is_busy(Task.INDEX) and runner.is_busy("index") and not runner.is_busy(Task.RUN)
    assert result.args[0] != gui_thread
    qtbot.waitUntil(lambda: not runner.is_busy(), timeout=5000)


def test_runner_cancels_by_name_and_the_worker_reports_cancelled(qtbot) -> None:  # noqa: ANN001
    from core.events import Cancelled
    from tinyforge_gui.state import Task
    from tinyforge_gui.workers.runner import TaskRunner

    started = threading.Event()

    def wait_for_cancel(self: Any) -> None:
        started.set()
        while not self.cancel_token.cancelled:
            threading.Event().wait(0.01)
        raise Cancelled()

    runner = TaskRunner()
    worker = _worker(Task.RUN, wait_for_cancel)
    outcomes: list[str] = []
    worker.succeeded.connect(lambda _r: outcomes.append("succeeded"))
    worker.failed.connect(lambda _m, _d: outcomes.append("failed"))
    worker.cancelled.connect(lambda: outcomes.append("cancelled"))
    runner.start(worker)
    assert started.wait(5)
    runner.cancel(Task.ESTIMATE)  # another kind: not this one
    assert not worker.cancel_token.cancelled
    with qtbot.waitSignal(worker.done, timeout=5000):
        runner.cancel(Task.RUN)
    assert outcomes == ["cancelled"]
    assert runner.wait_all(5000)


def test_a_failing_worker_reports_one_readable_failure(qtbot) -> None:  # noqa: ANN001
    from tinyforge_gui.workers.runner import TaskRunner

    def fail(_self: Any) -> None:
        raise ValueError("line 3: no 'output' field")

    runner = TaskRunner()
    worker = _worker("validate", fail)
    failures: list[tuple[str, str]] = []
    worker.failed.connect(lambda m, d: failures.append((m, d)))
    with qtbot.waitSignal(worker.done, timeout=5000):
        runner.start(worker)
    assert runner.wait_all(5000)
    assert len(failures) == 1 and failures[0][0] == "line 3: no 'output' field"
    assert "ValueError" in failures[0][1]  # the details keep the traceback for the Details button


# --------------------------------------------------------------------------- controllers


@pytest.fixture
def parts(qtbot, tmp_path: Path):  # noqa: ANN001, ANN201
    """Everything a controller needs, and no MainWindow."""
    from PySide6.QtWidgets import QStatusBar

    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.panels.dataset_panel import DatasetPanel
    from tinyforge_gui.panels.options_panel import OptionsPanel
    from tinyforge_gui.panels.run_panel import RunPanel
    from tinyforge_gui.panels.studio_tabs import StudioTabs
    from tinyforge_gui.settings import AppSettings
    from tinyforge_gui.state import StudioState
    from tinyforge_gui.widgets.common import MessageBar, Notifier
    from tinyforge_gui.workers.runner import TaskRunner

    create_app([])
    dataset, options, run_panel = DatasetPanel(), OptionsPanel(), RunPanel()
    tabs, bar, status = StudioTabs(dataset), MessageBar(), QStatusBar()
    for widget in (options, run_panel, tabs, bar, status):
        qtbot.addWidget(widget)
    options.output_dir.setText(str(tmp_path / "runs"))
    options.dry_run.setChecked(True)
    runner = TaskRunner()
    yield {"tasks": runner, "state": StudioState(), "notifier": Notifier(bar, status), "bar": bar,
           "status": status, "dataset": dataset, "options": options, "run_panel": run_panel, "tabs": tabs,
           "settings": AppSettings()}
    runner.cancel()
    runner.wait_all(10000)


def test_dataset_controller_puts_the_scan_in_the_state(qtbot, parts) -> None:  # noqa: ANN001
    from tinyforge_gui.controllers.dataset_controller import DatasetController

    p = parts
    controller = DatasetController(p["tasks"], p["state"], p["notifier"], p["dataset"], p["options"], p["tabs"],
                                   p["settings"])
    changes: list[set[str]] = []
    p["state"].subscribe(changes.append)
    with qtbot.waitSignal(controller.recent_changed, timeout=2000):
        assert controller.load(str(SAMPLE))
    assert p["state"].dataset_path == str(SAMPLE.resolve()) and p["state"].dataset_report is None
    qtbot.waitUntil(lambda: p["state"].dataset_report is not None, timeout=20000)
    assert p["state"].dataset_report.valid is True
    assert {"dataset_report"} in changes
    assert str(SAMPLE.resolve()) in p["settings"].recent_datasets()


def test_dataset_controller_refuses_a_non_dataset_through_the_notifier(parts, tmp_path: Path) -> None:  # noqa: ANN001
    from tinyforge_gui.controllers.dataset_controller import DatasetController

    p = parts
    controller = DatasetController(p["tasks"], p["state"], p["notifier"], p["dataset"], p["options"], p["tabs"],
                                   p["settings"])
    picture = tmp_path / "photo.png"
    picture.write_bytes(b"\x89PNG")
    assert not controller.load(str(picture))
    assert not p["bar"].isHidden() and "image" in p["bar"].text.text()
    assert p["state"].dataset_path == ""  # nothing changed


def _report(valid: bool, n_problems: int) -> ValidationReport:
    """A scan's ValidationReport of SAMPLE with ``n_problems`` problems."""
    from core.training.dataset_models import Problem, ValidationReport

    problems = [Problem(line=i + 1, kind="invalid_json", message="not JSON") for i in range(n_problems)]
    return ValidationReport(path=str(SAMPLE), n_records=5, n_lines=5 + n_problems, avg_input_len=3.0,
                            avg_output_len=4.0, file_size=100, sha256="x", problems=problems,
                            n_problems=n_problems, problem_counts={"invalid_json": n_problems} if n_problems else {},
                            warnings=[], n_warnings=0, warning_counts={}, valid=valid)


def test_run_controller_decides_from_the_state(qtbot, parts) -> None:  # noqa: ANN001
    from tinyforge_gui.controllers.run_controller import RunController
    from tinyforge_gui.state import RunStatus, failed_scan_report

    p = parts
    runs = RunController(p["tasks"], p["state"], p["notifier"], p["options"], p["run_panel"], p["tabs"],
                         p["settings"])
    state = p["state"]
    assert runs.train_block_reason().startswith("Open a dataset first")
    state.update(dataset_path=str(SAMPLE))
    assert runs.train_block_reason().startswith("Waiting for the dataset scan")
    state.update(dataset_report=_report(valid=False, n_problems=3))
    assert "3 problem(s)" in runs.train_block_reason()
    state.update(dataset_report=failed_scan_report(str(SAMPLE), "the disk went away"))
    assert runs.train_block_reason() == "The dataset could not be scanned: the disk went away"
    state.update(dataset_report=_report(valid=True, n_problems=0))
    assert runs.train_block_reason() == ""
    runs.update_actions()
    assert p["run_panel"].train.isEnabled() and not p["run_panel"].export.isEnabled()  # nothing trained yet
    assert runs.start_run(["train"])
    assert state.run_status == RunStatus.RUNNING
    qtbot.waitUntil(lambda: state.run_status.finished and not p["tasks"].is_busy(), timeout=60000)
    assert state.run_status == RunStatus.COMPLETED and state.last_run == state.current_run
    assert (Path(state.last_run) / "model" / "model_stub.json").is_file()  # the dry run's documented stub


def test_the_export_tab_says_when_the_service_needs_a_key(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The window's Start Service inherits TINYFORGE_API_KEY: say so, or a client gets 401 unexplained."""
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.panels.export_panel import ExportPanel

    create_app([])
    panel = ExportPanel()
    qtbot.addWidget(panel)
    monkeypatch.delenv("TINYFORGE_API_KEY", raising=False)
    panel.set_service_state("running", "http://127.0.0.1:8123", can_start=True)
    assert "API key" not in panel.service_url.text()
    monkeypatch.setenv("TINYFORGE_API_KEY", "k")
    panel.set_service_state("running", "http://127.0.0.1:8123", can_start=True)
    assert "requires the API key set in TINYFORGE_API_KEY" in panel.service_url.text()
