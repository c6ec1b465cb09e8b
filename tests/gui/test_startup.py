"""Start-up stays light: the first paint needs only the visible panels (benchmarks/startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QTreeView

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: this test process has long imported everything.
PROBE = r"""
import json, sys
from tinyforge_gui.__main__ import create_app
app = create_app([])
from tinyforge_gui.main_window import MainWindow
w = MainWindow()
before = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "core", "tinyforge_gui"))
pages_at_show = w.dataset.count()
w.show()
# The event loop itself, not processEvents() in a Python loop (PySide6 6.12 loses a reference
# to None on every processEvents call; a few thousand calls crash a small process).
from PySide6.QtCore import QTimer
poll = QTimer(); poll.timeout.connect(lambda: w.tabs.built and app.quit()); poll.start(20)
QTimer.singleShot(20000, app.quit)
app.exec()
print(json.dumps({"before_show": before, "built_after_show": w.tabs.built,
                  "tabs": [w.tabs.tabText(i) for i in range(w.tabs.count())],
                  "artifacts_page": w.tabs.widget(1) is w.tabs.artifacts,
                  "dataset_pages_at_show": pages_at_show, "dataset_pages": w.dataset.count()}))
w.close()
"""


def test_first_paint_imports_only_what_it_shows(tmp_path: Path) -> None:
    env_file = tmp_path / "settings.ini"
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "TINYFORGE_SETTINGS_FILE": str(env_file), "TINYFORGE_LOG_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    before = result["before_show"]
    # pydantic (through core.runs / core.options) costs ~100 ms: not before the window shows.
    assert not [m for m in before if m.startswith("pydantic")
                or m in ("core.runs", "core.options", "core.training.config")], before
    # The hidden tabs' panels are built after the first paint.
    for module in ("tinyforge_gui.panels.artifacts_panel", "tinyforge_gui.panels.evaluation_panel", "tinyforge_gui.panels.export_panel",
                   "tinyforge_gui.panels.playground_panel"):
        assert module not in before
    assert result["built_after_show"] and result["artifacts_page"]
    assert result["tabs"] == ["Dataset", "Artifacts", "Evaluation", "Export", "Playground"]
    # The dataset page (hidden behind the welcome page) joins its stack after the first paint.
    assert result["dataset_pages_at_show"] == 1 and result["dataset_pages"] == 2


def test_a_hidden_tab_chosen_early_gets_its_panel(qtbot, output_root: Path) -> None:  # noqa: ANN001
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.main_window import MainWindow

    create_app([])
    win = MainWindow()
    qtbot.addWidget(win)
    win.options.output_dir.setText(str(output_root))
    assert not win.tabs.built and win.findChild(QTreeView, "artifactTree") is None
    win.tabs.setCurrentIndex(3)  # the user clicks Export before the deferred start ran
    qtbot.waitUntil(lambda: win.tabs.built, timeout=5000)
    assert win.tabs.currentIndex() == 3 and win.tabs.currentWidget() is win.tabs.export_panel
    assert win.findChild(QTreeView, "artifactTree") is not None
    # Asking for a panel builds it at once, too (tests, selftest and controllers rely on it).
    other = MainWindow()
    qtbot.addWidget(other)
    assert other.tabs.playground is other.tabs.widget(4)
    assert other.tabs.evaluation is other.tabs.widget(2)
    win.close()
    other.close()


def test_log_file_opens_after_start_up_with_the_early_records(tmp_path: Path) -> None:
    code = (
        "import logging, sys\n"
        "from tinyforge_gui.__main__ import open_log_file, setup_logging\n"
        "setup_logging(defer_file=True)\n"
        "logging.getLogger('tinyforge_gui.x').info('early record')\n"
        "print('logging.handlers' in sys.modules)\n"
        "open_log_file(); open_log_file()\n"
        "logging.getLogger('tinyforge_gui.x').info('late record')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "TINYFORGE_LOG_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # not imported before the window's first paint
    lines = (tmp_path / "studio.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and "early record" in lines[0] and "late record" in lines[1]


def test_sigterm_closes_the_window_as_quit_does(tmp_path: Path) -> None:
    """SIGTERM (a logout, systemd, `kill`) closes the app cleanly: exit 0, settings saved."""
    import signal
    import time

    settings = tmp_path / "settings.ini"
    env = {**os.environ, "TINYFORGE_SETTINGS_FILE": str(settings), "TINYFORGE_LOG_DIR": str(tmp_path),
           "QT_QPA_PLATFORM": "offscreen"}
    app = subprocess.Popen([sys.executable, "-m", "tinyforge_gui"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*.log")) and time.monotonic() < deadline:  # the log opens after the first paint
            time.sleep(0.1)
        app.send_signal(signal.SIGTERM)
        _, stderr = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0, stderr
    assert settings.is_file() and "geometry" in settings.read_text(encoding="utf-8").lower()
