"""Real training from the window: a child process on tiny-causal, loss points, a killed child."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.gui.window_helpers import wait_report, wait_run

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def _real_options(window, epochs: float) -> None:  # noqa: ANN001
    opts = window.options
    opts.dry_run.setChecked(False)
    assert opts.real_group.isEnabled()
    opts.base_model.setCurrentText("tiny-causal")
    opts.epochs.setValue(epochs)
    opts.batch_size.setValue(1)
    opts.learning_rate.setValue(0.003)
    opts.seed.setValue(0)


def test_real_run_shows_loss_points_and_finishes(window, qtbot) -> None:  # noqa: ANN001
    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    _real_options(window, epochs=4)
    window.run_controller.start_train()
    assert wait_run(qtbot, window, timeout=300000) == "completed", window.message.text.text()
    assert window.run_panel.chart.count() >= 3
    run_dir = Path(window.state.last_run)
    manifest = json.loads((run_dir / "model" / "model_manifest.json").read_text())
    assert manifest["base_model"] == "tiny-causal"
    events = (run_dir / "events.jsonl").read_text()
    assert '"kind": "metric"' in events
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    # The recipe's choices are recorded (LoRA off here: the learning rate and epochs were set).
    assert record["stages"][0]["result"]["recipe"]["learning_rate"] == 0.003

    # After a real training the window shows whether it learned: the Evaluation tab.
    evaluation = json.loads((run_dir / "model" / "evaluation.json").read_text())
    qtbot.waitUntil(lambda: window.tabs.currentWidget() is window.tabs.evaluation, timeout=10000)
    table = window.tabs.evaluation.table
    assert table.rowCount() == len(evaluation["rows"]) == 3
    assert evaluation["verdict"][:20].lower() in window.tabs.evaluation.verdict.text().lower()
    assert table.item(0, 2).text() == evaluation["rows"][0]["reference"]
    assert table.item(0, 4).text() == evaluation["rows"][0]["tuned_answer"]
    # Reachable for an old run from the runs list.
    window.tabs.evaluation.show_run("")
    assert window.tabs.evaluation.table.rowCount() == 0
    window.tabs.artifacts.runs.setCurrentItem(None)
    window.tabs.artifacts.select_run(str(run_dir))
    qtbot.waitUntil(lambda: window.tabs.evaluation.table.rowCount() == 3, timeout=5000)


def test_killed_child_leaves_window_usable(window, qtbot) -> None:  # noqa: ANN001
    import psutil

    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    _real_options(window, epochs=5000)
    window.run_controller.start_train()
    qtbot.waitUntil(lambda: window.run_panel.chart.count() >= 2, timeout=300000)
    for child in psutil.Process().children(recursive=True):
        os.kill(child.pid, signal.SIGKILL)
    assert wait_run(qtbot, window, timeout=60000) == "failed"
    assert window.message.isVisible() and window.message.level == "error"
    assert not (Path(window.state.last_run) / "model").exists()
    window.options.dry_run.setChecked(True)
    window.run_controller.start_train()
    assert wait_run(qtbot, window) == "completed"
