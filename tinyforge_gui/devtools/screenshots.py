"""Save PNGs of the main window's main states: ``python -m tinyforge_gui.devtools.screenshots OUT_DIR``.

States: welcome (a first run's defaults), a dataset with problems, a finished dry run (train →
export) with an artifact open, and (when real training is available) what a user came for: the
starter model fine-tuned with the default recipe (LoRA) on examples/customer_support.jsonl, then
exported: its loss curves, the evaluation (learned answers beside the base model's), the export
report with the served precision, and the playground with the service running. The real part
trains for real (several minutes on a laptop CPU). Runs offscreen unless a display is set;
settings and runs live in a temp folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

SIZE = (1280, 820)


def _problem_dataset(folder: Path) -> Path:
    """examples/with_problems.jsonl when present, else a small file with typical mistakes."""
    from tinyforge_gui.resources import example_path

    bundled = example_path("with_problems.jsonl")
    if bundled is not None:
        return bundled
    path = folder / "with_problems.jsonl"
    lines = [
        json.dumps({"input": f"How do I change setting {i}?", "output": f"Open Preferences and edit setting {i}.",
                    "metadata": {"source": "faq", "id": i}})
        for i in range(40)
    ]
    lines[3] = '{"input": "What is the refund window?", "output": "30 days"'  # truncated JSON
    lines[9] = json.dumps({"input": "Where is my invoice?"})  # no output
    lines[17] = json.dumps({"input": "", "output": "An answer without a question."})
    lines[26] = json.dumps(["not", "an", "object"])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        loop = QEventLoop()
        QTimer.singleShot(20, loop.quit)
        loop.exec()
    return condition()


def _settle(seconds: float = 0.3) -> None:
    _wait(lambda: False, seconds)


def _save(window, path: Path) -> Path:  # noqa: ANN001
    _settle()
    window.run_panel.log.flush()
    pixmap = window.grab()
    if not pixmap.save(str(path)):
        raise OSError(f"could not save {path}")
    print(f"saved {path} ({pixmap.width()}x{pixmap.height()})")
    return path


def _run_done(window) -> bool:  # noqa: ANN001
    from tinyforge_gui.state import Task

    return window.state.run_status.finished and not window.tasks.is_busy(Task.RUN)


def take(out_dir: Path, real: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tinyforge-shots-"))
    os.environ["TINYFORGE_SETTINGS_FILE"] = str(work / "settings.ini")
    os.environ.setdefault("TINYFORGE_LOG_DIR", str(work))
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.main_window import MainWindow

    create_app([sys.argv[0]])
    window = MainWindow()
    window.options.output_dir.setText(str(work / "runs"))
    window.resize(*SIZE)
    window.show()
    saved = [_save(window, out_dir / "01-welcome.png")]

    window.dataset_controller.load(str(_problem_dataset(work)))
    _wait(lambda: window.state.dataset_report is not None, 60)
    window.dataset.problems.setCurrentRow(1)
    saved.append(_save(window, out_dir / "02-dataset-problems.png"))

    window.dataset_controller.open_example()
    _wait(lambda: window.state.dataset_report is not None and window.state.dataset_report.valid, 60)
    window.options.dry_run.setChecked(True)
    window.options.lora.setChecked(True)
    window.options.export_onnx.setChecked(True)
    window.run_controller.start_train_export()
    _wait(lambda: _run_done(window), 120)
    _settle(0.5)
    from core.run_layout import MODEL_DIR, MODEL_STUB_FILE

    stub = Path(window.state.last_run) / MODEL_DIR / MODEL_STUB_FILE
    window.tabs.artifacts.show_path(str(stub))
    saved.append(_save(window, out_dir / "03-run-finished-artifact.png"))

    if real:
        saved += _real_states(window, work, out_dir)

    window.close()
    return saved


def _real_states(window, work: Path, out_dir: Path) -> list[Path]:  # noqa: ANN001
    """The starter model, the default recipe (LoRA) and an ONNX export: loss, evaluation, export
    report, playground with the service."""
    from tinyforge_gui.resources import example_path

    support = example_path("customer_support.jsonl")
    if support is not None:  # enough records for an eval split: both loss curves show
        window.dataset_controller.load(str(support))
        _wait(lambda: window.state.dataset_report is not None and window.state.dataset_report.valid, 60)
    opts = window.options
    opts.dry_run.setChecked(False)
    opts.base_model.setCurrentText("smollm2-135m-instruct")
    for box in (opts.lora_rank, opts.lora_alpha, opts.epochs, opts.learning_rate):
        box.setValue(box.minimum())  # "auto": the recipe decides
    opts.lora_modules.setText("")
    opts.lora.setChecked(True)
    opts.export_onnx.setChecked(True)
    window.run_controller.start_train_export()
    _wait(lambda: _run_done(window), 3600)
    _settle(0.5)
    saved = []
    window.tabs.setCurrentWidget(window.dataset)
    window.run_panel.tabs.setCurrentWidget(window.run_panel.chart)
    saved.append(_save(window, out_dir / "04-real-training-loss.png"))
    window.tabs.evaluation.show_run(window.state.last_run)
    window.tabs.setCurrentWidget(window.tabs.evaluation)
    saved.append(_save(window, out_dir / "05-evaluation.png"))
    window.tabs.setCurrentWidget(window.tabs.export_panel)
    window.run_panel.tabs.setCurrentIndex(0)
    saved.append(_save(window, out_dir / "06-export-report.png"))
    window.tabs.setCurrentWidget(window.tabs.playground)
    window.tabs.playground.input.setText("How do I reset my password?")
    window.tabs.playground.run_button.click()
    from tinyforge_gui.state import Task

    _wait(lambda: len(window.tabs.playground.answers()) == 3 and not window.tasks.is_busy(Task.PLAYGROUND), 300)
    window.tabs.export_panel.service_button.click()
    _wait(lambda: window.state.service_state == "running", 60)
    saved.append(_save(window, out_dir / "07-playground-service.png"))
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Save screenshots of TinyForge Studio's main states.")
    parser.add_argument("out_dir", nargs="?", default="docs/screenshots")
    parser.add_argument("--no-real", action="store_true", help="skip the real-training screenshot")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    take(Path(args.out_dir), real=not args.no_real)
    return 0


if __name__ == "__main__":
    sys.exit(main())
