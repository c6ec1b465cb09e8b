"""The window's process stays light: a normal session (dataset, base model, LoRA targets, dry
run) never imports torch or transformers; training and its model live in the child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: this test process has long imported torch. The session is driven from
# the event loop (a timer steps through it), not from processEvents() calls.
PROBE = r"""
import json, sys
from PySide6.QtCore import QTimer
from tinyforge_gui.__main__ import create_app
from tinyforge_gui.main_window import MainWindow

app = create_app([])
w = MainWindow()
w.confirm_close = lambda: True
w.options.output_dir.setText(sys.argv[2])
w.show()
heavy = ("torch", "transformers", "peft", "accelerate", "onnxruntime", "huggingface_hub")
seen = {}
opts = w.options

def idle():
    return not any(w.tasks.is_busy(t) for t in ("index", "validate", "preview", "token-stats", "lora-targets", "table"))

def session():
    yield lambda: w.tabs.built
    w.dataset_controller.load(sys.argv[1])
    yield lambda: w.state.dataset_report is not None and idle()
    seen["dataset"] = [m for m in heavy if m in sys.modules]
    opts.dry_run.setChecked(False)  # the module names are listed for real LoRA training
    opts.lora.setChecked(True)
    for name, module in (("tiny-seq2seq", "wi"), ("tiny-causal", "q_proj")):
        opts.base_model.setCurrentText(name)
        yield lambda: module in opts.suggested_modules() and idle()
    seen["targets"] = opts.suggested_modules()
    seen["hint"] = opts.lora_hint.text()
    seen["recipe"] = opts.recipe_label.text()
    opts.dry_run.setChecked(True)
    w.run_controller.start_train_export()
    yield lambda: w.state.run_status not in ("", "running") and not w.tasks.is_busy("run") and opts.isEnabled()
    seen["status"] = str(w.state.run_status)

steps = session()
condition = next(steps)

def poll():
    global condition
    if condition():
        try:
            condition = next(steps)
        except StopIteration:
            app.quit()

timer = QTimer(); timer.timeout.connect(poll); timer.start(50)
QTimer.singleShot(150000, app.quit)
app.exec()
seen["heavy"] = [m for m in heavy if m in sys.modules]
print(json.dumps(seen))
w.close()
"""


def test_dataset_targets_and_dry_run_import_no_torch(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "examples" / "customer_support.jsonl"), str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "TINYFORGE_SETTINGS_FILE": str(tmp_path / "settings.ini"),
             "TINYFORGE_LOG_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen.get("status") == "completed", seen
    assert {"q_proj", "v_proj", "down_proj", "lm_head"} <= set(seen["targets"])
    assert "auto trains q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj" in seen["hint"]
    assert seen["recipe"].startswith("Recipe for"), seen["recipe"]
    assert seen["dataset"] == [] and seen["heavy"] == [], seen


def test_a_model_type_outside_the_table_is_unknown_until_training(window, qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "rwkv-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "rwkv", "architectures": ["RwkvForCausalLM"]}),
                                        encoding="utf-8")
    opts = window.options
    opts.dry_run.setChecked(False)
    opts.lora.setChecked(True)
    opts.base_model.setCurrentText(str(folder))
    qtbot.waitUntil(lambda: getattr(opts.lora_suggestions, "base_model", None) == str(folder), timeout=10000)
    assert opts.suggested_modules() == []
    assert "unknown until training (model_type 'rwkv' is not in the table)" in opts.lora_hint.text()
    assert opts.lora_modules.placeholderText() == "auto: every linear projection"
    opts._fill_lora_menu()
    assert [a.text() for a in opts.lora_menu.actions()] == ["Module names unknown until training"]
