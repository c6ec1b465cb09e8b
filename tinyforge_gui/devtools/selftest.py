"""``--self-test``: drive the real window end to end and exit 0 only when everything worked.

Used by CI on the packaged app (``TinyForgeStudio --self-test``) and runnable from a checkout
(``python -m tinyforge_gui.devtools.selftest``). Steps: open the window offscreen, load the bundled
example, one-click dry-run Train → Export, then a real LoRA step on the tiny model (in the
training child process) followed by a real ONNX export with its parity check and service
self-test. Prints one line per step and a JSON summary.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEP_TIMEOUT_S = 600.0


class SelfTestFailure(RuntimeError):
    pass


def _say(text: str) -> None:
    stream = sys.stdout or sys.__stdout__
    if stream is not None:
        stream.write(text + "\n")
        stream.flush()


def _wait(app: Any, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Run the event loop until ``condition()`` holds (the window keeps working meanwhile).

    A nested QEventLoop polled by a timer, not processEvents() in a Python loop: PySide6 6.12
    loses a reference to None on every Python-level processEvents() call, and a few thousand
    calls crash the process."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout
    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
    poll.start(50)
    if not condition():
        loop.exec()
    poll.stop()
    if not condition():
        raise SelfTestFailure(f"timed out after {timeout:.0f} s waiting for {what}")


def _run_once(app: Any, window: Any, options: dict[str, Any], what: str) -> Path:
    """Load ``options`` into the form, press Train → Export and wait for the run to end."""
    window.options.load_dict(options)
    from core.run_layout import read_run
    from tinyforge_gui.state import RunStatus, Task

    window.state.update(run_status=RunStatus.NONE)
    window.run_controller.start_train_export()
    _wait(app, lambda: window.state.run_status.finished and not window.tasks.is_busy(Task.RUN), STEP_TIMEOUT_S, what)
    if window.state.run_status != "completed":
        error = ""
        try:
            record = read_run(window.state.last_run)
            error = record.error.message if record.error is not None else ""
        except (OSError, ValueError, AttributeError):
            pass
        raise SelfTestFailure(f"{what} ended {window.state.run_status}" + (f": {error}" if error else ""))
    return Path(window.state.last_run)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SelfTestFailure(message)


def run_self_test(workdir: Path, real: bool = True) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("TINYFORGE_SETTINGS_FILE", str(workdir / "settings.ini"))
    from tinyforge_gui.__main__ import create_app, setup_logging

    setup_logging()
    app = create_app([sys.argv[0] if sys.argv else "tinyforge-studio", "-platform", os.environ["QT_QPA_PLATFORM"]])
    from tinyforge_gui.main_window import MainWindow

    summary: dict[str, Any] = {"steps": {}}
    started = time.monotonic()
    window = MainWindow()
    window.show()
    app.processEvents()
    summary["steps"]["window"] = {"title": window.windowTitle(), "shown": window.isVisible()}
    _say(f"ok   window shown: {window.windowTitle()!r}")
    # After the first paint, as the window itself imports it (pydantic).
    from core.run_layout import (
        MODEL_DIR,
        MODEL_STUB_FILE,
        ONNX_DIR,
        ONNX_GRAPH_FILE,
        SERVICE_DIR,
        ParityResult,
        SelfTest,
        read_export_report,
        read_training_report,
    )

    window.dataset_controller.open_example()
    _wait(app, lambda: window.state.dataset_report is not None, 60, "the example dataset scan")
    scan = window.state.dataset_report
    _check(scan.valid, f"the bundled example is invalid: {scan}")
    summary["steps"]["dataset"] = {"path": window.state.dataset_path, "n_records": scan.n_records}
    _say(f"ok   example loaded: {scan.n_records} records")

    output_root = workdir / "runs"
    base = window.options.to_dict()
    dry = {
        **base,
        "train": {**base["train"], "dry_run": True, "lora": {"enabled": True, "r": 8, "alpha": 16, "target_modules": ["q", "v"]}},
        "export": {"export_onnx": True, "quantize": "int8", "overwrite": True},
        "output_root": str(output_root),
    }
    run = _run_once(app, window, dry, "the dry-run Train → Export")
    stub = json.loads((run / MODEL_DIR / MODEL_STUB_FILE).read_text(encoding="utf-8"))
    _check(stub.get("notes") == "dry-run artifact" and stub.get("lora_applied") is True, f"unexpected stub {stub}")
    placeholder = (run / SERVICE_DIR / ONNX_DIR / ONNX_GRAPH_FILE).read_text(encoding="utf-8").splitlines()[0]
    _check(placeholder == "# TinyForgeAI ONNX placeholder", "the ONNX placeholder is missing")
    summary["steps"]["dry_run"] = {"run": str(run), "n_records": stub.get("n_records")}
    _say(f"ok   dry-run train → export: {run.name}")

    if real:
        real_options = {
            **dry,
            "train": {
                **base["train"], "dry_run": False, "base_model": "tiny-causal", "epochs": 1.0,
                "learning_rate": 1e-3, "batch_size": 4, "eval_split": None,
                "lora": {"enabled": True, "r": 4, "alpha": 8, "target_modules": None},
            },
        }
        run = _run_once(app, window, real_options, "the real LoRA train → ONNX export")
        report = read_training_report(run)
        _check(report.status == "completed" and report.lora_applied is True, f"training report: {report.status}")
        _check(any("loss" in entry for entry in report.log_history), "no loss was logged")
        export = read_export_report(run)
        onnx_path = Path(export.onnx_path or "")
        _check(onnx_path.is_file() and onnx_path.stat().st_size > 1000, "no real ONNX graph was written")
        _check(Path(export.quantized_path or "").is_file(), "no int8 graph was written")
        parity = export.parity_of("fp32") or ParityResult()
        _check(parity.generation_match_rate == 1.0, f"fp32 parity failed: {parity.to_json()}")
        self_test = export.self_test or SelfTest()
        _check(bool(self_test.passed), f"the service self-test failed: {self_test.to_json()}")
        summary["steps"]["real"] = {
            "run": str(run),
            "train_loss": next((e["loss"] for e in report.log_history if "loss" in e), None),
            "onnx_bytes": onnx_path.stat().st_size,
            "max_abs_logit_diff": parity.max_abs_logit_diff,
            "service_self_test": self_test.passed,
        }
        _say(f"ok   real LoRA step + ONNX export: parity {parity.max_abs_logit_diff}, service answered")

    window.close()
    app.processEvents()
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["frozen"] = bool(getattr(sys, "frozen", False))
    summary["passed"] = True
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    keep = "--keep" in argv
    workdir = Path(tempfile.mkdtemp(prefix="tinyforge-selftest-"))
    try:
        summary = run_self_test(workdir, real="--dry-only" not in argv)
    except Exception as exc:  # noqa: BLE001 - the self-test reports every failure and exits 1
        import traceback

        _say(f"FAIL {exc}")
        _say(traceback.format_exc())
        _say(json.dumps({"passed": False, "error": str(exc), "workdir": str(workdir)}))
        return 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    _say(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
