"""The window process's memory (RSS) through a normal session, against the meta-device baseline.

A window is launched as a child process (offscreen unless a display is set) and walks through a
session: idle after start-up (a first run lists the starter's LoRA modules), the example
``customer_support.jsonl`` loaded, ``tiny-causal`` chosen for real LoRA training (its module
names listed), a real training run (it trains in its own child process), and idle after it. This
script samples the window's RSS with psutil every 50 ms and its children's (the training process)
apart. Baseline: the same session with the LoRA module names read as the window read them before
``core.models.lora_modules`` (torch and transformers, the model built on the meta device, in the
window's process). Prints JSON with both, in MB; goal: the window under 250 MB at every phase.

    python benchmarks/window_memory.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "examples" / "customer_support.jsonl"
GOAL_MB = 250.0
MARKER = "@@window-memory@@ "
PHASES = ("idle", "dataset", "targets", "run", "after_run")


def window_session(out_dir: str, epochs: float, meta_device_targets: bool) -> int:
    """The window side: walk the session from the event loop, print a marker as each phase ends."""
    # PySide6 6.12 drops references to None (tens of thousands during a training run's redraws);
    # with None's count at zero the interpreter aborts. Extra references keep this session alive.
    none_guard = [None] * 2_000_000  # noqa: F841 - held for the whole session
    from PySide6.QtCore import QTimer  # noqa: TID251 - a GUI benchmark

    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.main_window import MainWindow

    if meta_device_targets:
        _use_meta_device_targets()
    app = create_app([])
    win = MainWindow()
    win.confirm_close = lambda: True  # type: ignore[method-assign]
    win.options.output_dir.setText(out_dir)
    win.show()
    opts = win.options
    light = ("index", "validate", "preview", "token-stats", "lora-targets", "table", "warmup")

    def idle() -> bool:
        return not any(win.tasks.is_busy(task) for task in light)

    def mark(phase: str, **extra: Any) -> None:
        heavy = [m for m in ("torch", "transformers") if m in sys.modules]
        print(MARKER + json.dumps({"phase": phase, "heavy_modules": heavy, **extra}), flush=True)

    def settle(seconds: float = 2.0) -> Any:
        until = time.monotonic() + seconds
        return lambda: time.monotonic() > until

    def session() -> Any:
        yield lambda: win.tabs.built and idle()
        yield settle()
        mark("idle", base_model=opts.base_model.currentText(), listed=len(opts.suggested_modules()))
        win.dataset_controller.load(str(DATASET))
        yield lambda: win.state.dataset_report is not None and idle()
        yield settle()
        mark("dataset", records=win.state.dataset_report.n_records if win.state.dataset_report else None)
        opts.dry_run.setChecked(False)
        opts.lora.setChecked(True)
        opts.base_model.setCurrentText("tiny-causal")
        yield lambda: "q_proj" in opts.suggested_modules() and idle()
        yield settle()
        mark("targets", listed=len(opts.suggested_modules()))
        print(MARKER + json.dumps({"phase": "run_started"}), flush=True)
        opts.epochs.setValue(epochs)
        opts.batch_size.setValue(1)
        opts.device.setCurrentText("cpu")
        opts.variants.setValue(0)
        opts.export_onnx.setChecked(False)
        opts.gguf.setChecked(False)
        win.run_controller.start_train()
        yield lambda: win.state.run_status not in ("", "running") and not win.tasks.is_busy("run") and opts.isEnabled()
        mark("run", status=str(win.state.run_status))
        yield settle()
        mark("after_run")

    steps = session()
    state = {"condition": next(steps)}

    def poll() -> None:
        if state["condition"]():
            try:
                state["condition"] = next(steps)
            except StopIteration:
                app.quit()

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(50)
    QTimer.singleShot(600_000, app.quit)
    app.exec()
    win.close()
    return 0


def _use_meta_device_targets() -> None:
    """The baseline: LoRA module names read as the window read them before (torch, meta device)."""
    from tinyforge_gui.workers import studio_tasks

    def work(self: Any) -> Any:
        from core.models.lora_modules import LoraModules
        from core.models.registry import (
            linear_projection_modules,
            load_model_config,
            lora_candidate_modules,
            resolve_base_model,
        )

        with studio_tasks.TRANSFORMERS_LOCK:
            spec = resolve_base_model(self.base_model)
            config = load_model_config(spec)
            modules = lora_candidate_modules(config, spec.architecture)
            default = linear_projection_modules(config, spec.architecture)
        return LoraModules(self.base_model, spec.architecture, spec.model_type, tuple(modules), tuple(default))

    studio_tasks.LoraTargetsWorker.work = work  # type: ignore[method-assign]


def measure(meta_device_targets: bool, epochs: float) -> dict[str, Any]:
    """Launch one window session; sample its RSS (and its children's) per phase."""
    import psutil

    with tempfile.TemporaryDirectory(prefix="tinyforge-window-memory-") as tmp:
        env = dict(os.environ)
        if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
            env.setdefault("QT_QPA_PLATFORM", "offscreen")
        env.update(TINYFORGE_SETTINGS_FILE=str(Path(tmp) / "settings.ini"), TINYFORGE_LOG_DIR=tmp,
                   PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p))
        args = [sys.executable, str(Path(__file__).resolve()), "--window", str(Path(tmp) / "runs"), "--epochs", str(epochs)]
        if meta_device_targets:
            args.append("--meta-device-targets")
        stderr_file = Path(tmp) / "stderr.txt"
        with stderr_file.open("w", encoding="utf-8") as err:
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        window = psutil.Process(proc.pid)
        phases: dict[str, Any] = {}
        current, peak_window, peak_children = "idle", 0, 0
        started = time.monotonic()
        while proc.poll() is None:
            try:
                rss = window.memory_info().rss
                children = 0
                for child in window.children(recursive=True):
                    try:
                        children += child.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            peak_window, peak_children = max(peak_window, rss), max(peak_children, children)
            while not lines.empty():
                line = lines.get()
                if not line.startswith(MARKER):
                    continue
                marker = json.loads(line[len(MARKER):])
                if marker["phase"] == "run_started":
                    peak_window, peak_children = rss, children
                    current = "run"
                    continue
                phase = marker.pop("phase")
                phases[phase] = {"window_rss_mb": round(rss / 2**20, 1), "window_peak_mb": round(peak_window / 2**20, 1),
                                 **({"children_peak_mb": round(peak_children / 2**20, 1)} if phase == "run" else {}),
                                 "seconds": round(time.monotonic() - started, 1), **marker}
                peak_window, peak_children = rss, children
                current = phase
            time.sleep(0.05)
        proc.wait(timeout=60)
        stderr = stderr_file.read_text(encoding="utf-8", errors="replace")
        return {"phases": phases, "last_phase": current, "exit_code": proc.returncode,
                **({"stderr_tail": stderr[-2000:]} if proc.returncode or len(phases) < len(PHASES) else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--window", metavar="OUT_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--meta-device-targets", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.window:
        return window_session(args.window, args.epochs, args.meta_device_targets)
    baseline = measure(True, args.epochs)
    ours = measure(False, args.epochs)
    worst = max((p["window_peak_mb"] for p in ours["phases"].values()), default=0.0)
    complete = all(len(r["phases"]) == len(PHASES) and r["exit_code"] == 0 for r in (baseline, ours))
    result = {
        "benchmark": "window_process_rss",
        "platform": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
        "dataset": DATASET.name,
        "run": f"tiny-causal, LoRA, {args.epochs:g} epochs, cpu, in a child process",
        "baseline_meta_device_targets": baseline,
        "ours_config_json_targets": ours,
        "window_rss_mb": {phase: {"baseline": baseline["phases"].get(phase, {}).get("window_rss_mb"),
                                  "ours": ours["phases"].get(phase, {}).get("window_rss_mb")} for phase in PHASES},
        "goal_window_peak_mb": GOAL_MB,
        "within_goal": complete and worst < GOAL_MB,
    }
    print(json.dumps(result, indent=2))
    return 0 if result["within_goal"] else 1


if __name__ == "__main__":
    sys.exit(main())
