"""GUI test set-up: offscreen Qt, settings isolated per test, no thread left running."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from core.training.dataset_models import ValidationReport

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample_qna.jsonl"


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own INI settings file and log folder (never the user's)."""
    settings = tmp_path / "settings" / "tinyforge.ini"
    settings.parent.mkdir()
    monkeypatch.setenv("TINYFORGE_SETTINGS_FILE", str(settings))
    monkeypatch.setenv("TINYFORGE_LOG_DIR", str(tmp_path / "logs"))
    return settings


@pytest.fixture(autouse=True)
def small_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """"Try the example" loads the seed's three records in tests (fast runs); the real default,
    the 40-record support set, is checked in test_first_run.py."""
    from tinyforge_gui.controllers import dataset_controller

    monkeypatch.setattr(dataset_controller, "EXAMPLE_DATASET", SAMPLE.name)


@pytest.fixture(autouse=True)
def no_dangling_threads() -> Iterator[None]:
    """Fail a test that leaves one of our worker QThreads running."""
    import shiboken6

    from tinyforge_gui.workers.runner import LIVE_THREADS

    yield
    running = []
    for thread in list(LIVE_THREADS):
        if shiboken6.isValid(thread) and thread.isRunning():
            running.append(thread.objectName())
            thread.wait(10000)  # do not let it leak into the next test either
    assert not running, f"test left worker threads running: {running}"


@pytest.fixture
def output_root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def window(qtbot, output_root: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """A shown MainWindow writing runs under ``output_root``; closing never asks."""
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.main_window import MainWindow

    create_app([])
    win = MainWindow()
    monkeypatch.setattr(win, "confirm_close", lambda: True)
    win.options.output_dir.setText(str(output_root))
    # Tests start from the dry run (a first run defaults to a real LoRA run + ONNX export when the
    # starter model is installed; test_first_run_defaults checks that).
    win.options.dry_run.setChecked(True)
    win.options.lora.setChecked(False)
    win.options.export_onnx.setChecked(False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.tabs.built, timeout=10000)  # built just after the first paint
    yield win
    win.close()


def wait_report(qtbot, win, timeout: int = 30000) -> ValidationReport:  # noqa: ANN001
    qtbot.waitUntil(lambda: win.state.dataset_report is not None, timeout=timeout)
    return win.state.dataset_report


def wait_run(qtbot, win, timeout: int = 60000) -> str:  # noqa: ANN001
    """Wait until the run ended, its thread is gone and the window has settled; return its status.

    The window refreshes its buttons in a timer after the thread ends (RunController._after_run
    polls until is_busy("run") is False), so "not busy" alone races with it; a fixed sleep
    fails on a loaded machine. The options form is re-enabled by that refresh and by nothing
    else after a run, so it marks the end of _after_run.
    """
    qtbot.waitUntil(
        lambda: win.state.run_status not in ("", "running") and not win.tasks.is_busy("run") and win.options.isEnabled(),
        timeout=timeout,
    )
    return win.state.run_status
