"""The main window end to end: drop, preview, one-click dry run, cancel, errors, settings."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QPlainTextEdit, QProgressBar, QPushButton, QTableView, QTreeView

from core import runs
from core.events import Progress
from tests.gui.window_helpers import ROOT, SAMPLE, wait_report, wait_run
from tinyforge_gui.widgets.dataset_model import METADATA_COLUMN

pytestmark = pytest.mark.gui


def drop_file(win, path: Path) -> None:  # noqa: ANN001
    """Drag the file URL over the window, then drop it (as a file manager would)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(
        QPoint(200, 200), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(win, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(200, 200), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(win, event)


def test_window_imports_no_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from tinyforge_gui.__main__ import create_app\n"
        "app = create_app([])\n"
        "from tinyforge_gui.main_window import MainWindow\n"
        "w = MainWindow(); w.show(); app.processEvents()\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'onnx', 'onnxruntime', 'pyqtgraph') if m in sys.modules]\n"
        "print(heavy); w.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_contract_object_names(window) -> None:  # noqa: ANN001
    names = {
        "datasetTable": QTableView, "progressBar": QProgressBar, "logView": QPlainTextEdit,
        "artifactTree": QTreeView, "trainButton": QPushButton, "exportButton": QPushButton,
        "trainExportButton": QPushButton, "cancelButton": QPushButton,
    }
    for name, cls in names.items():
        assert window.findChild(cls, name) is not None, name
    for name in ("dryRunCheck", "loraCheck", "loraRankSpin", "loraAlphaSpin", "loraModulesEdit", "outputDirEdit",
                 "exportOnnxCheck", "artifactViewer"):
        assert window.findChild(object, name) is not None, name
    assert window.windowTitle() == "TinyForge Studio"
    assert not window.windowIcon().isNull()
    # Rank, alpha and targets default to the recipe ("auto"); a dry run records the seed's 8/16/q,v.
    assert window.options.lora_rank.text() == "auto" and window.options.lora_alpha.text() == "auto"
    assert window.options.lora_modules.text() == ""
    assert not window.run_panel.train.isEnabled()
    assert "dataset" in window.run_panel.train.toolTip().lower()


def test_drop_jsonl_loads_and_validates(window, qtbot) -> None:  # noqa: ANN001
    drop_file(window, SAMPLE)
    assert window.state.dataset_path == str(SAMPLE.resolve())
    table = window.findChild(QTableView, "datasetTable")
    assert table.model().rowCount() == 3
    report = wait_report(qtbot, window)
    assert report.valid and report.n_records == 3
    assert window.run_panel.train_export.isEnabled()
    assert window.dataset.cards["records"].value.text() == "3"
    assert window.dataset.cards["sha"].value.text() == report.sha256[:12]
    model = table.model()
    assert model.data(model.index(0, 0)) == "How do I reset my password?"
    assert str(SAMPLE.resolve()) in window.settings.recent_datasets()


@pytest.mark.parametrize("kind", ["folder", "image", "text"])
def test_drop_non_dataset_shows_message(window, qtbot, tmp_path: Path, kind: str) -> None:  # noqa: ANN001
    target = {"folder": tmp_path / "adir", "image": tmp_path / "cat.png", "text": tmp_path / "notes.txt"}[kind]
    if kind == "folder":
        target.mkdir()
    else:
        target.write_bytes(b"\x89PNG\r\n\x1a\n" if kind == "image" else b"a,b\n1,2\n")
    drop_file(window, target)
    assert window.message.isVisible()
    text = window.message.text.text()
    assert target.name in text
    assert {"folder": "folder", "image": "image", "text": ".jsonl"}[kind] in text
    assert window.state.dataset_path == ""
    assert window.dataset.currentIndex() == 0  # still the welcome page
    window.dataset_controller.open_example()
    assert wait_report(qtbot, window).valid


def test_invalid_dataset_disables_training_and_shows_problem_line(window, qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"input": f"q{i}", "output": f"a{i}"}) for i in range(30)]
    lines[5] = "{not json"
    lines[20] = json.dumps({"input": "missing output"})
    bad.write_text("\n".join(lines) + "\n")
    window.dataset_controller.load(str(bad))
    report = wait_report(qtbot, window)
    assert not report.valid and report.n_problems >= 2
    assert not window.run_panel.train.isEnabled() and not window.run_panel.train_export.isEnabled()
    assert "problem" in window.run_panel.train.toolTip()
    problems = window.dataset.problems
    assert problems.count() >= 2
    qtbot.waitUntil(lambda: window.dataset.model.has_index, timeout=10000)
    problems.setCurrentRow(1)  # line 21
    line = problems.currentItem().data(Qt.ItemDataRole.UserRole)
    selected = window.dataset.table.selectionModel().selectedRows()
    assert selected and window.dataset.model.row_at(selected[0].row()).line == line
    assert f"line {line}" in window.dataset.detail.toPlainText()


def test_one_click_dry_run_with_lora_and_onnx(window, qtbot, output_root: Path) -> None:  # noqa: ANN001
    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    opts = window.options
    assert opts.dry_run.isChecked()
    qtbot.mouseClick(opts.lora, Qt.MouseButton.LeftButton, pos=QPoint(8, opts.lora.height() // 2))
    assert opts.lora.isChecked()
    opts.lora_rank.clear()
    qtbot.keyClicks(opts.lora_rank, "4")
    opts.lora_alpha.clear()
    qtbot.keyClicks(opts.lora_alpha, "32")
    opts.export_onnx.setChecked(True)
    qtbot.mouseClick(window.run_panel.train_export, Qt.MouseButton.LeftButton)
    assert wait_run(qtbot, window) == "completed"

    run_dir = Path(window.state.last_run)
    assert run_dir.parent == output_root.resolve()
    stub = json.loads((run_dir / "model" / "model_stub.json").read_text())
    assert stub["model_type"] == "tinyforge_stub" and stub["notes"] == "dry-run artifact"
    assert stub["lora_applied"] is True
    assert stub["lora_config"] == {"r": 4, "alpha": 32, "target_modules": ["q", "v"]}
    assert json.loads((run_dir / "service" / "model_metadata.json").read_text())["model_stub"] is True
    assert "placeholder" in (run_dir / "service" / "onnx" / "model.onnx").read_text()
    assert (run_dir / "service" / "onnx" / "quant" / "quantized.onnx").is_file()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["dataset"]["sha256"] == window.state.dataset_report.sha256
    assert (run_dir / "events.jsonl").read_text().count("\n") > 3

    bar = window.run_panel.progress
    assert bar.value() == bar.maximum()
    tree = window.findChild(QTreeView, "artifactTree")
    qtbot.waitUntil(lambda: tree.model().index(str(run_dir / "model" / "model_stub.json")).isValid())
    viewer = window.tabs.artifacts.viewer
    qtbot.waitUntil(lambda: viewer.current_path.endswith(".json"), timeout=5000)
    assert window.tabs.artifacts.show_path(str(run_dir / "model" / "model_stub.json"))
    assert '"lora_config"' in viewer.content() and viewer.tree.topLevelItemCount() >= 4
    assert window.tabs.artifacts.run_status(str(run_dir)) == "completed"
    window.run_panel.log.flush()
    assert "run completed" in window.run_panel.log.toPlainText()


def _slow_stage(seconds: float = 20.0, fail: bool = False) -> runs.Stage:
    def stage(run, out, on_event, cancel):  # noqa: ANN001
        out.mkdir(parents=True, exist_ok=True)
        (out / "half.json").write_text("{")
        end = time.monotonic() + seconds
        step = 0
        while time.monotonic() < end:
            cancel.raise_if_cancelled()
            if fail and step == 3:
                raise RuntimeError("the GPU caught fire (simulated)")
            step += 1
            on_event(Progress("train", step, 1000))
            time.sleep(0.01)
        return {}

    return runs.Stage("train", "model", stage, staged=False)


def test_cancel_marks_run_cancelled_and_leaves_no_artifact(window, qtbot, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(runs.STANDARD_STAGES, "train", _slow_stage())
    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    qtbot.mouseClick(window.run_panel.train, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.state.current_run != "" and (Path(window.state.current_run) / "model").exists(), timeout=10000)
    assert window.run_panel.cancel.isEnabled()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert wait_run(qtbot, window, timeout=10000) == "cancelled"
    run_dir = Path(window.state.last_run)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "cancelled"
    assert not (run_dir / "model").exists()
    assert window.run_panel.train.isEnabled() and not window.run_panel.cancel.isEnabled()
    assert window.run_panel.progress.value() == window.run_panel.progress.maximum()


def test_failure_shows_readable_message_and_window_stays_usable(window, qtbot, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(runs.STANDARD_STAGES, "train", _slow_stage(fail=True))
    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    window.run_controller.start_train()
    assert wait_run(qtbot, window) == "failed"
    assert window.message.isVisible() and "GPU caught fire" in window.message.text.text()
    assert window.message.details_button.isVisible()
    assert not window.message.details.isVisible()
    window.message.details_button.click()
    assert window.message.details.isVisible() and "Traceback" in window.message.details.toPlainText()
    run_dir = Path(window.state.last_run)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert not (run_dir / "model").exists()
    monkeypatch.undo()
    assert window.run_panel.train.isEnabled()
    window.run_controller.start_train()
    assert wait_run(qtbot, window) == "completed"


def test_export_reuses_run_and_needs_overwrite(window, qtbot) -> None:  # noqa: ANN001
    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    assert not window.run_panel.export.isEnabled()
    window.run_controller.start_train_export()
    assert wait_run(qtbot, window) == "completed"
    assert window.run_panel.export.isEnabled()
    window.run_controller.start_export()
    assert wait_run(qtbot, window) == "failed"
    assert "overwrite" in window.message.text.text().lower()
    window.options.overwrite.setChecked(True)
    window.options.export_onnx.setChecked(True)
    window.run_controller.start_export()
    assert wait_run(qtbot, window) == "completed"
    assert (Path(window.state.last_run) / "service" / "onnx" / "model.onnx").is_file()


def test_large_file_preview_is_lazy(window, qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    big = tmp_path / "big.jsonl"
    row = {"input": "question " * 20, "output": "answer " * 30, "metadata": {"source": "gen"}}
    n = 120_000
    with big.open("w") as handle:
        for i in range(n):
            row["input"] = f"q{i} " + "question " * 20
            handle.write(json.dumps(row) + "\n")
    t0 = time.perf_counter()
    assert window.dataset_controller.load(str(big))
    elapsed = time.perf_counter() - t0
    model = window.dataset.model
    assert model.rowCount() > 0 and elapsed < 0.2
    assert model.data(model.index(0, 0)).startswith("q0 ")
    qtbot.waitUntil(lambda: model.has_index, timeout=60000)
    assert model.rowCount() == n
    window.dataset.show_line(n)
    assert model.data(model.index(n - 1, 0)).startswith(f"q{n - 1} ")
    assert model.data(model.index(n - 1, METADATA_COLUMN)) == '{"source": "gen"}'
    assert len(model._cache) < 5000  # never the whole file
    assert wait_report(qtbot, window, timeout=60000).n_records == n


def test_settings_and_options_restored(qtbot, output_root: Path) -> None:  # noqa: ANN001
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.main_window import MainWindow

    create_app([])
    first = MainWindow()
    qtbot.addWidget(first)
    first.options.output_dir.setText(str(output_root))
    first.options.lora.setChecked(True)
    first.options.lora_rank.setValue(12)
    first.options.lora_modules.setText("q_proj,v_proj")
    first.resize(700, 500)  # the offscreen screen is 800x600
    first.dataset_controller.load(str(SAMPLE))
    wait_report(qtbot, first)
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    assert second.options.lora.isChecked() and second.options.lora_rank.value() == 12
    assert second.options.lora_targets() == ["q_proj", "v_proj"]
    assert second.options.output_root() == str(output_root)
    assert (second.width(), second.height()) == (700, 500)
    assert second.settings.recent_datasets()[0] == str(SAMPLE.resolve())
    assert second.recent_menu.actions()[0].data() == str(SAMPLE.resolve())
    second.close()


def test_past_run_options_load_back(window, qtbot) -> None:  # noqa: ANN001
    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    window.options.lora.setChecked(True)
    window.options.lora_rank.setValue(6)
    window.run_controller.start_train()
    assert wait_run(qtbot, window) == "completed"
    window.options.lora.setChecked(False)
    window.options.lora_rank.setValue(8)
    window.tabs.artifacts.select_run(window.state.last_run)
    window.tabs.artifacts.load_button.click()
    assert window.options.lora.isChecked() and window.options.lora_rank.value() == 6


def test_close_during_run_cancels_and_waits(qtbot, monkeypatch, output_root: Path) -> None:  # noqa: ANN001
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.main_window import MainWindow

    monkeypatch.setitem(runs.STANDARD_STAGES, "train", _slow_stage())
    create_app([])
    win = MainWindow()
    qtbot.addWidget(win)
    win.options.output_dir.setText(str(output_root))
    win.options.dry_run.setChecked(True)
    asked: list[bool] = []
    monkeypatch.setattr(win, "confirm_close", lambda: asked.append(True) or False)
    win.show()
    win.dataset_controller.open_example()
    wait_report(qtbot, win)
    win.run_controller.start_train()
    qtbot.waitUntil(lambda: win.state.current_run != "", timeout=10000)
    assert not win.close()  # the user said no: still running
    assert asked and win.tasks.is_busy("run")
    monkeypatch.setattr(win, "confirm_close", lambda: True)
    t0 = time.monotonic()
    assert win.close()
    assert time.monotonic() - t0 < 10
    assert not win.tasks.is_busy()
    assert json.loads((Path(win.state.current_run) / "run.json").read_text())["status"] == "cancelled"


def test_log_view_batches_and_limits(qtbot) -> None:  # noqa: ANN001
    from tinyforge_gui.widgets.log_view import MAX_BLOCKS, LogView

    view = LogView()
    qtbot.addWidget(view)
    for i in range(MAX_BLOCKS + 500):
        view.append("warning" if i % 2 else "info", f"line {i}")
    assert view.document().isEmpty()  # nothing written until the timer fires
    qtbot.waitUntil(lambda: not view.document().isEmpty(), timeout=2000)
    assert view.document().blockCount() <= MAX_BLOCKS
    assert view.toPlainText().rstrip().endswith(f"line {MAX_BLOCKS + 499}")
