"""The worker base reports a failure once: core raises, and the run executor or the worker says it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import runs
from core.events import CancelToken, EventCallback
from core.training.config import TrainConfig
from tests.core.training_helpers import SAMPLE, tiny_config
from tinyforge_gui.workers.runner import TaskRunner, Worker


class _FakeWorker(Worker):
    """A worker whose work is any function of its relay and cancel token."""

    def __init__(self, fn: Callable[[EventCallback, CancelToken], Any]) -> None:
        super().__init__("fake")
        self.fn = fn

    def work(self) -> Any:
        return self.fn(self.relay, self.cancel_token)


def _outcome(qtbot: Any, fn: Callable[[EventCallback, CancelToken], Any]) -> dict[str, list[Any]]:
    worker = _FakeWorker(fn)
    seen: dict[str, list[Any]] = {"failed": [], "succeeded": [], "cancelled": []}
    worker.failed.connect(lambda message, details: seen["failed"].append((message, details)))
    worker.succeeded.connect(lambda result: seen["succeeded"].append(result))
    worker.cancelled.connect(lambda: seen["cancelled"].append(True))
    runner = TaskRunner()
    with qtbot.waitSignal(worker.done, timeout=60000):
        runner.start(worker)
    assert runner.wait_all(10000)
    return seen


def test_a_raising_work_function_fails_once_with_a_readable_message(qtbot: Any) -> None:
    def work(relay: EventCallback, cancel: CancelToken) -> Any:
        raise FileNotFoundError(2, "No such file or directory", "/nowhere/data.jsonl")

    seen = _outcome(qtbot, work)
    assert [m for m, _ in seen["failed"]] == ["file not found: /nowhere/data.jsonl"]
    assert "Traceback" in seen["failed"][0][1]
    assert not seen["succeeded"]


def test_a_task_is_free_for_its_next_action_when_its_outcome_arrives(qtbot: Any) -> None:
    """Stop right after "running": the start worker's thread may still be winding down, but a
    slot reacting to its outcome finds the task free for the next action (it was ignored)."""
    runner = TaskRunner()
    worker = _FakeWorker(lambda relay, cancel: "started")
    seen: list[tuple[bool, bool]] = []
    worker.succeeded.connect(lambda _result: seen.append((runner.is_working("fake"), runner.is_busy("fake"))))
    with qtbot.waitSignal(worker.done, timeout=60000):
        runner.start(worker)
    qtbot.waitUntil(lambda: bool(seen), timeout=10000)
    assert seen[0][0] is False  # whatever is_busy says at that moment (the thread may be alive)
    assert runner.wait_all(10000) and not runner.is_busy("fake")


def test_a_failing_run_is_reported_once(qtbot: Any, tmp_path: Path) -> None:
    """A core failure inside a run: the stage raises, execute_run reports it, the worker relays it."""
    from core.training.hf_train import run_real_training

    def stage(run: runs.RunFolder, out: Path, emit: EventCallback, cancel: CancelToken) -> dict[str, Any]:
        return run_real_training(tiny_config(out, base="no-such-model"), on_event=emit, cancel=cancel)

    def work(relay: EventCallback, cancel: CancelToken) -> Any:
        options = runs.RunOptions(actions=["train"], train=TrainConfig(data_path=str(SAMPLE), output_dir=str(tmp_path)))
        run = runs.create_run(tmp_path / "runs", options)
        return runs.execute_run(run, [runs.Stage("train", "model", stage, staged=False)], relay, cancel)

    seen = _outcome(qtbot, work)
    assert len(seen["failed"]) == 1, seen["failed"]
    assert "unknown base model 'no-such-model'" in seen["failed"][0][0]
    assert seen["succeeded"] == ["failed"]
