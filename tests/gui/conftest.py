"""GUI test set-up: offscreen Qt, settings isolated per test, no thread left running, the window
fixture (the helpers the tests call are in :mod:`tests.gui.window_helpers`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gui.window_helpers import SAMPLE

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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

