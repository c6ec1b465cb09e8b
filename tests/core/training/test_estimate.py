"""estimate_run: a few real steps of a tiny model, projected to the whole run."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.events import Cancelled, CancelToken, Progress
from core.training.estimate import StepPlan, estimate_run, project_steps
from tests.core.training_helpers import SAMPLE, EventRecorder, tiny_config

pytestmark = pytest.mark.slow


def test_project_steps_follows_the_trainer_rules(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "out", batch_size=4, epochs=2.0)
    assert project_steps(config, 3) == StepPlan(n_train=3, n_eval=0, steps_per_epoch=1, total_steps=2)
    plan = project_steps(config, 100)  # auto eval split: 10 held out
    assert plan == StepPlan(n_train=90, n_eval=10, steps_per_epoch=23, total_steps=46)
    assert project_steps(config.model_copy(update={"max_steps": 7}), 100).total_steps == 7


def test_estimate_projects_duration_and_memory(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "out", data=SAMPLE, batch_size=1, epochs=10.0)
    recorder = EventRecorder()
    result = estimate_run(config, probe_steps=3, on_event=recorder)
    assert result.total_steps == 30 and result.steps_per_epoch == 3
    assert result.seconds_per_step > 0
    assert result.projected_train_seconds == pytest.approx(30 * result.seconds_per_step, rel=0.01, abs=0.01)
    assert result.projected_total_seconds >= result.projected_train_seconds
    assert result.peak_rss_bytes > 50 * 1024 * 1024  # a python + torch child
    assert result.device == "cpu"
    steps = {e.step for e in recorder.events if isinstance(e, Progress) and e.stage == "train"}
    assert max(steps) == 3
    assert not (tmp_path / "out").exists()  # the probe wrote only into its temp folder


def test_estimate_cancel_raises(tmp_path: Path) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        estimate_run(tiny_config(tmp_path / "out"), cancel=token)
