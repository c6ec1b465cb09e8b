"""The training child process: events relayed, bad input re-raised, a killed child reported."""

from __future__ import annotations

import os
import signal

import pytest

from core.events import CancelToken, Progress
from core.training.child_supervisor import child_command, run_training_subprocess
from core.training.errors import TrainingError, TrainingProcessError
from tests.core.training_helpers import EventRecorder, tiny_config


def test_child_command_frozen_and_not(monkeypatch) -> None:
    assert child_command("c.json")[1:] == ["-m", "core.training.child_main", "train", "c.json"]
    monkeypatch.setattr("sys.frozen", True, raising=False)
    assert child_command("c.json")[1:] == ["--training-child", "train", "c.json"]


def test_child_relays_events_and_returns_the_report(tmp_path) -> None:
    recorder = EventRecorder()
    report = run_training_subprocess(tiny_config(tmp_path / "out", max_steps=3), on_event=recorder)
    assert report["status"] == "completed" and report["global_step"] == 3
    assert [e.step for e in recorder.of("progress") if e.stage == "train"][-1] == 3
    assert recorder.of("progress")[-1].stage == "evaluate"  # then the evaluation's own progress
    assert any("loss" in e.values for e in recorder.of("metric"))
    assert recorder.of("finished")[-1].status == "completed"
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()


def test_child_bad_input_raises_training_error(tmp_path) -> None:
    recorder = EventRecorder()
    with pytest.raises(TrainingError, match="unknown base model"):
        run_training_subprocess(tiny_config(tmp_path / "out", base="nope"), on_event=recorder)
    assert not recorder.of("failed"), "the child's Failed event became the exception, not a second report"
    assert not (tmp_path / "out").exists()


def test_killed_child_gives_training_process_error(tmp_path) -> None:
    import psutil

    def kill_child(event) -> None:
        if isinstance(event, Progress) and event.step == 2:
            for child in psutil.Process().children():
                os.kill(child.pid, signal.SIGKILL)

    recorder = EventRecorder(kill_child)
    with pytest.raises(TrainingProcessError, match="killed by SIGKILL") as info:
        run_training_subprocess(tiny_config(tmp_path / "out", epochs=5000), on_event=recorder)
    assert info.value.exit_code == -signal.SIGKILL
    assert not recorder.of("failed"), "raised, not reported: the caller's boundary reports it"
    assert not list(tmp_path.glob(".out.*")), "the dead child's temp folder was cleaned up"


@pytest.mark.slow
def test_child_cancel_is_polite_then_resumable(tmp_path) -> None:
    token = CancelToken()

    def cancel_at_two(event) -> None:
        if isinstance(event, Progress) and event.step == 2:
            token.cancel()

    report = run_training_subprocess(tiny_config(tmp_path / "out", epochs=5000), EventRecorder(cancel_at_two),
                                     token, grace_seconds=30)
    assert report["status"] == "cancelled" and report["checkpoint"].startswith("checkpoints/checkpoint-")


def test_sigterm_to_the_child_saves_a_checkpoint(tmp_path) -> None:
    """``kill -TERM`` of the training child (systemd, a container stop): the child stops at the
    next step with a checkpoint and reports a cancelled run, as for Ctrl-C; before, it died."""
    import psutil

    def terminate_child(event) -> None:
        if isinstance(event, Progress) and event.stage == "train" and event.step == 2:
            for child in psutil.Process().children():
                os.kill(child.pid, signal.SIGTERM)

    report = run_training_subprocess(tiny_config(tmp_path / "out", epochs=5000), EventRecorder(terminate_child))
    assert report["status"] == "cancelled" and report["checkpoint"].startswith("checkpoints/checkpoint-")
    assert (tmp_path / "out" / report["checkpoint"] / "trainer_state.json").is_file()
